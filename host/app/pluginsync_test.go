package app_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/testdb"
)

// TestPluginInstallReachesEveryNode: a plugin installed through one node
// runs on a node that was already up (within seconds) and on a node that
// starts later, each from its own data dir, unpacked from the bundle the
// installing node stored in the database; an uninstall through the first
// node stops it everywhere and removes the other nodes' files.
func TestPluginInstallReachesEveryNode(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, dbmigrate.Postgres)
	key := appKey()
	a := &host{t: t, dsn: db.DSN, dataDir: t.TempDir(), logs: &plugintest.Logs{}}
	a.start(key)
	b := &host{t: t, dsn: db.DSN, dataDir: t.TempDir(), logs: &plugintest.Logs{}}
	b.start(key)
	running := func(h *host) bool {
		st, ok := h.app.Runtime.Status(pluginID)
		return ok && st.State == pluginrt.StateRunning
	}

	bin := pluginBin.Build(t, "./plugin/cmd/cloudflare-r2")
	installed := time.Now()
	if err := a.app.Providers.Register(ctx, providers.Installed{ID: pluginID, Version: "1.0.0", Dir: plugintest.ModuleRoot(t), BinaryPath: bin, SHA256: fileSHA256(t, bin)}); err != nil {
		t.Fatalf("installing on node A: %v", err)
	}
	waitFor(t, 10*time.Second, "the plugin installed through node A to run on node B", func() bool { return running(b) })
	t.Logf("running on node B %v after the install on node A", time.Since(installed).Round(time.Millisecond))
	if inst, ok := b.app.Providers.Installed(pluginID); !ok || inst.Version != "1.0.0" || filepath.Dir(filepath.Dir(inst.Dir)) != filepath.Join(b.dataDir, "plugins") {
		t.Fatalf("node B's install: %+v, %v; want version 1.0.0 under its own plugins dir", inst, ok)
	}

	c := &host{t: t, dsn: db.DSN, dataDir: t.TempDir(), logs: &plugintest.Logs{}}
	c.start(key)
	waitFor(t, 20*time.Second, "the plugin to run on node C, started after the install", func() bool { return running(c) })

	if code := a.uninstall(); code != 200 && code != 204 {
		t.Fatalf("uninstall through node A: %d\n%s", code, a.logs)
	}
	for name, h := range map[string]*host{"B": b, "C": c} {
		waitFor(t, 10*time.Second, "node "+name+" to stop the uninstalled plugin", func() bool {
			_, ok := h.app.Providers.Installed(pluginID)
			return !ok && !running(h)
		})
		if _, err := os.Stat(filepath.Join(h.dataDir, "plugins", pluginID)); !os.IsNotExist(err) {
			t.Errorf("node %s still holds the uninstalled plugin's files: %v", name, err)
		}
	}
}
