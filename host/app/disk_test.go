package app_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/magicads/r2storage/host/dbmigrate"
)

// smallDisk mounts a 1 MiB tmpfs over dir (root, or CAP_SYS_ADMIN, is
// needed: the test machines and CI run as root) and unmounts it at cleanup.
func smallDisk(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Fatalf("mounting a 1 MiB tmpfs on %s to fill (needs root or CAP_SYS_ADMIN): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
}

// readOnly remounts the tmpfs at dir read-only.
func readOnly(t *testing.T, dir string) {
	t.Helper()
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remounting %s read-only: %v", dir, err)
	}
}

// TestDiskFullOrReadOnly: finding 7 and 8 — /healthz stayed 200 with the
// results disk full, and a full or read-only disk made POST answer 500.
// Now /healthz is 503 naming the disk, a full disk is 507 and a read-only
// one 503 with Retry-After.
func TestDiskFullOrReadOnly(t *testing.T) {
	for _, d := range []dbmigrate.Dialect{dbmigrate.SQLite, dbmigrate.Postgres} {
		t.Run(string(d), func(t *testing.T) {
			h := startTrustHost(t, d, nil)
			if a := h.send("GET", "/healthz", "", nil); a.code != http.StatusOK {
				t.Fatalf("/healthz before the fault: %v", a)
			}
			results := filepath.Join(h.dataDir, "results")
			smallDisk(t, results)
			if a := h.send("GET", "/healthz", "", nil); a.code != http.StatusServiceUnavailable || !strings.Contains(a.body, "results disk") || !strings.Contains(a.body, "full") {
				t.Errorf("/healthz with 1 MiB free on the results disk: %v; want 503 naming the full results disk", a)
			}
			ct, body := multipartBody(field("kind", "images"), field("generator", "gemini"), file("big.png", "image/png", pngBytes(2<<20)))
			if a := h.send("POST", "/api/v1/results", ct, body); a.code != http.StatusInsufficientStorage || !strings.Contains(a.body, "full") {
				t.Errorf("a 2 MiB result on a 1 MiB results disk: %v; want 507 naming the full disk", a)
			}
			if left := findFiles(t, results, ""); len(left) > 0 {
				t.Errorf("a refused upload left files on the results disk: %v", left)
			}
			// A file sent before its fields is spooled in DATA_DIR/tmp/uploads.
			spool := filepath.Join(h.dataDir, "tmp", "uploads")
			smallDisk(t, spool)
			ct, body = multipartBody(file("big.png", "image/png", pngBytes(2<<20)), field("kind", "images"), field("generator", "gemini"))
			if a := h.send("POST", "/api/v1/results", ct, body); a.code != http.StatusInsufficientStorage || !strings.Contains(a.body, "full") {
				t.Errorf("a 2 MiB file-first upload with a 1 MiB spool disk: %v; want 507 naming the full disk", a)
			}

			readOnly(t, results)
			if a := h.send("GET", "/healthz", "", nil); a.code != http.StatusServiceUnavailable || !strings.Contains(a.body, "read-only") {
				t.Errorf("/healthz with a read-only results disk: %v; want 503 naming the read-only disk", a)
			}
			if a := h.postPNG(); a.code != http.StatusServiceUnavailable || a.retryAfter == "" || !strings.Contains(a.body, "read-only") {
				t.Errorf("POST on a read-only results disk: %v; want 503 with Retry-After naming the read-only disk", a)
			}
		})
	}
}
