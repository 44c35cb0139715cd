package app_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/internal/testdb"
)

// plant writes a file under the data dir, dated an hour ago: a leftover of
// a host process that was killed.
func plant(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	age(t, path)
}

// age dates a file an hour ago.
func age(t *testing.T, path string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// TestStartupRecovery: what a killed host left on its disks is cleaned up
// when the host starts again, in the background: interrupted temp files on
// the results disk (a result's and the health probe's), upload spool files,
// a result file whose row never committed, and the local copy of an
// offloaded result whose removal was interrupted. Results' files and names
// that are not result files stay.
func TestStartupRecovery(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)
			h.configure("delete_local", true)
			offData := pngBytes(4000)
			off := h.upload(offData, "off.png")
			if off.Storage != pluginID {
				t.Fatalf("not offloaded: %+v", off)
			}
			if code := h.do("PUT", "/api/v1/admin/storage", map[string]string{"default": "local"}, nil); code != 200 {
				t.Fatalf("default local: %d", code)
			}
			localData := pngBytes(3000)
			local := h.upload(localData, "local.png")
			if local.Storage != "local" {
				t.Fatalf("default local but stored in %s", local.Storage)
			}
			h.stop()

			results := filepath.Join(h.dataDir, "results")
			gone := map[string]string{
				"an interrupted result write":        filepath.Join(results, "images", "gemini", ".magicads-tmp-1234567"),
				"an interrupted health probe":        filepath.Join(results, ".magicads-tmp-health-42"),
				"a file-first upload's spool":        filepath.Join(h.dataDir, "tmp", "uploads", "upload-99"),
				"a result whose row never committed": filepath.Join(results, "images", "gemini", "0f0e0d0c-0b0a-4908-8706-050403020100.png"),
				// The host recorded the result as offloaded without a local
				// copy and was killed before it removed the file.
				"an offloaded result's local copy": filepath.Join(results, filepath.FromSlash(off.Path)),
			}
			for _, p := range gone {
				plant(t, p, pngBytes(64<<10))
			}
			kept := map[string]string{
				"a local result's file":    filepath.Join(results, filepath.FromSlash(local.Path)),
				"a file that is no result": filepath.Join(results, "images", "gemini", "notes.txt"),
			}
			plant(t, kept["a file that is no result"], []byte("the admin's notes"))
			age(t, kept["a local result's file"])

			h.start(h.key)
			left := func() []string {
				var out []string
				for what, p := range gone {
					if _, err := os.Lstat(p); err == nil {
						out = append(out, what)
					}
				}
				return out
			}
			for deadline := time.Now().Add(30 * time.Second); len(left()) > 0; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("30 s after the restart these leftovers of the killed host are still there: %s", strings.Join(left(), "; "))
				}
			}
			// The first start logged a summary too (of an empty disk).
			waitFor(t, 30*time.Second, "the restarted host's startup recovery summary", func() bool {
				return strings.Count(h.logs.String(), "results: startup recovery finished") == 2
			})
			for what, p := range kept {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("%s was not kept: %v", what, err)
				}
			}
			if code, body, _ := h.content(local.ID); code != http.StatusOK || !bytes.Equal(body, localData) {
				t.Fatalf("the local result no longer serves its bytes: %d", code)
			}
			if r := h.result(off.ID); r.Storage != pluginID {
				t.Fatalf("the offloaded result moved: %+v", r)
			}
			if code, _, loc := h.content(off.ID); code != http.StatusFound || loc != off.URL {
				t.Fatalf("the offloaded result no longer redirects to its URL: %d %q", code, loc)
			}
			for _, want := range []string{
				`msg="startup recovery: removed interrupted temp and upload spool files" temp_files=2 temp_bytes=131072 spool_files=1 spool_bytes=65536`,
				`msg="results: startup recovery finished" removed.files=1 removed.bytes=65536 finished.files=1 finished.bytes=65536 adopted.files=0 adopted.bytes=0 kept.files=1 kept.bytes=3000`,
				`msg="results: startup recovery leaves alone a name that is not a result file" path=images/gemini/notes.txt`,
			} {
				if !strings.Contains(h.logs.String(), want) {
					t.Errorf("the log lacks %s", want)
				}
			}
		})
	}
}
