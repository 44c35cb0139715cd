package marketplace_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/internal/testdb"
)

// markerScript writes, outside the plugins dir, an executable that leaves
// a marker file when it runs, and returns its path, sha256 and the marker.
func markerScript(t testing.TB) (path, sum, marker string) {
	t.Helper()
	dir := t.TempDir()
	marker = filepath.Join(dir, "ran")
	data := []byte("#!/bin/sh\necho ran > '" + marker + "'\nexit 1\n")
	path = filepath.Join(dir, "evil")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return path, hex.EncodeToString(s[:]), marker
}

// waitRunning waits until the installed plugin runs.
func (h *host) waitRunning() {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if st, ok := h.app.Runtime.Status(pluginID); ok && st.State == pluginrt.StateRunning {
			return
		}
		if time.Now().After(deadline) {
			st, _ := h.app.Runtime.Status(pluginID)
			h.t.Fatalf("the plugin does not run: %+v; card %+v", st, card(h.t, h))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertRefused checks, after a restart, that nothing was launched for the
// plugin and its card says failed, naming the cause (want) and the fix.
func assertRefused(t testing.TB, h *host, marker, want string) {
	t.Helper()
	// Long enough for a launch and a couple of restarts with backoff.
	time.Sleep(2 * time.Second)
	if marker != "" {
		if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the host executed the binary the tampered record points at (marker %s: %v)", marker, err)
		}
	}
	if st, ok := h.app.Runtime.Status(pluginID); ok && st.State != pluginrt.StateStopped {
		t.Fatalf("the runtime launched the plugin of a refused record: %+v", st)
	}
	c := card(t, h)
	if c.State != "failed" || !strings.Contains(c.Message, want) || !strings.Contains(c.Message, "reinstall") {
		t.Fatalf("card of a refused record: %+v; want state failed and a message naming %q and the fix (reinstall)", c, want)
	}
}

// TestTamperedPluginRecord: whoever can write the plugins table cannot
// choose what the host runs. After the record is pointed at another
// executable (path and sha256) or another version, a restarted host
// launches nothing for it and reports the plugin failed, saying why and
// that a reinstall fixes it; the reinstall does.
func TestTamperedPluginRecord(t *testing.T) {
	tampers := []struct {
		name string
		do   func(t testing.TB, h *host, script, sum string)
	}{
		{"binary path and sha256", func(t testing.TB, h *host, script, sum string) {
			if _, err := h.db.Exec(`UPDATE plugins SET binary_path = $1, sha256 = $2 WHERE id = $3`, script, sum, pluginID); err != nil {
				t.Fatal(err)
			}
		}},
		{"version", func(t testing.TB, h *host, script, sum string) {
			// Another version's folder in the plugins dir, with the script
			// as its binary, and the record pointed at it.
			dir := filepath.Join(h.dataDir, "plugins", pluginID, "9.9.9")
			for _, f := range bundle(t, "9.9.9", readFile(t, script), nil) {
				p := filepath.Join(dir, filepath.FromSlash(f.Name))
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, f.Data, os.FileMode(f.Mode)); err != nil {
					t.Fatal(err)
				}
			}
			bin := filepath.Join(dir, "bin", "cloudflare-r2")
			if _, err := h.db.Exec(`UPDATE plugins SET version = '9.9.9', dir = $1, binary_path = $2, sha256 = $3 WHERE id = $4`, dir, bin, sum, pluginID); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, d := range testdb.Dialects() {
		for _, tc := range tampers {
			t.Run(string(d)+"/"+tc.name, func(t *testing.T) {
				ctx := context.Background()
				m := newMarket(t)
				m.publish(free, version("1.0.0", goodArchive(t, m, "1.0.0", &bin100)))
				h := newHost(t, d, m, marketplace.LicenseRegular)
				if _, err := h.app.Market.Install(ctx, pluginID); err != nil {
					t.Fatal(err)
				}
				h.waitRunning()
				script, sum, marker := markerScript(t)
				tc.do(t, h, script, sum)

				h.restart()
				assertRefused(t, h, marker, "install record")
				// The card offers the catalog's version to install again.
				if c := card(t, h); !c.Reinstall || c.Version != "1.0.0" || c.CTA != "uninstall" {
					t.Fatalf("the card of a refused record: %+v (want Reinstall, catalog version 1.0.0)", c)
				}

				if tc.name == "binary path and sha256" {
					if v, err := h.app.Market.Install(ctx, pluginID); err != nil || v != "1.0.0" {
						t.Fatalf("reinstall over a refused record: %q %v", v, err)
					}
					h.waitRunning()
					if c := card(t, h); c.Reinstall {
						t.Fatalf("the card still offers Reinstall after a reinstall: %+v", c)
					}
					h.restart()
					h.waitRunning()
				}
			})
		}
	}
}

// TestInstallRecordKeyRotation: the install record's authentication follows
// APP_KEY rotation. With the old key in APP_KEY_PREVIOUS the plugin starts
// and its record is re-authenticated with the new key, so it still starts
// once the old key is dropped; under a key that never authenticated it, it
// is refused with a message naming APP_KEY.
func TestInstallRecordKeyRotation(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			m := newMarket(t)
			m.publish(free, version("1.0.0", goodArchive(t, m, "1.0.0", &bin100)))
			h := newHost(t, d, m, marketplace.LicenseRegular)
			if _, err := h.app.Market.Install(context.Background(), pluginID); err != nil {
				t.Fatal(err)
			}
			h.waitRunning()

			h.key, h.prevKeys = newAppKey(), h.key
			h.restart()
			h.waitRunning()
			h.prevKeys = ""
			h.restart()
			h.waitRunning()

			h.key = newAppKey()
			h.restart()
			assertRefused(t, h, "", "APP_KEY")
		})
	}
}

// TestBinaryOutsidePluginsDir: the binary launched must be a regular file
// at its place in the plugins dir. An installed binary swapped for a
// symbolic link to an identical copy elsewhere (same sha256, so the
// checksum check alone would pass), or a version folder swapped for a link
// to a copy elsewhere, is not launched after a restart, and the plugin says
// why and that a reinstall fixes it.
func TestBinaryOutsidePluginsDir(t *testing.T) {
	swaps := []struct {
		name string
		path func(h *host) string // what is moved out and linked back
	}{
		{"binary", func(h *host) string {
			return filepath.Join(h.dataDir, "plugins", pluginID, "1.0.0", "bin", "cloudflare-r2")
		}},
		{"version folder", func(h *host) string { return filepath.Join(h.dataDir, "plugins", pluginID, "1.0.0") }},
	}
	for _, sw := range swaps {
		t.Run(sw.name, func(t *testing.T) {
			m := newMarket(t)
			m.publish(free, version("1.0.0", goodArchive(t, m, "1.0.0", &bin100)))
			h := newHost(t, "sqlite", m, marketplace.LicenseRegular)
			if _, err := h.app.Market.Install(context.Background(), pluginID); err != nil {
				t.Fatal(err)
			}
			h.waitRunning()
			h.closeApp(h.app)
			p := sw.path(h)
			outside := filepath.Join(t.TempDir(), "moved")
			if err := os.Rename(p, outside); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, p); err != nil {
				t.Fatal(err)
			}
			h.open()
			assertRefused(t, h, "", "symbolic link")
		})
	}
}
