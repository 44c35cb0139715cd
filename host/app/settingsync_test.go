package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/internal/plugintest"
)

// TestSettingsReachEveryNode: provider settings saved through one node
// are applied by another node's running plugin within 2 s (the issue's
// bound), and that node's next offload uses them.
func TestSettingsReachEveryNode(t *testing.T) {
	ctx := context.Background()
	a := newHost(t, dbmigrate.Postgres)
	a.configure()
	b := &host{t: t, s3: a.s3, dsn: a.dsn, dataDir: t.TempDir(), logs: &plugintest.Logs{}}
	// Node B holds the same plugin files (until installs reach every
	// node by themselves).
	if err := os.CopyFS(filepath.Join(b.dataDir, "plugins"), os.DirFS(filepath.Join(a.dataDir, "plugins"))); err != nil {
		t.Fatal(err)
	}
	b.start(a.key)
	b.waitRunning()
	inSync := func(h *host) bool {
		ap, err := h.app.Providers.AppliedSettings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		x := ap[pluginID]
		return x.Stamp != "" && x.InSync()
	}
	waitFor(t, 20*time.Second, "node B to configure its plugin at start", func() bool { return inSync(b) })

	saved := time.Now()
	if code := a.do("PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", map[string]any{"values": a.settings("key_prefix", "moved")}, nil); code != 200 {
		t.Fatalf("saving settings on node A: %d\n%s", code, a.logs)
	}
	if !inSync(a) {
		t.Fatal("node A did not apply its own save")
	}
	deadline := saved.Add(2 * time.Second)
	for !inSync(b) {
		if time.Now().After(deadline) {
			t.Fatalf("node B still runs the old settings 2 s after node A saved new ones\n%s", b.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("node B applied the settings %v after node A saved them", time.Since(saved).Round(time.Millisecond))
	// The cluster view says so for both nodes, from either.
	waitFor(t, 10*time.Second, "the cluster view to show the settings applied on both nodes", func() bool {
		var v clusterJSON
		if code := b.do("GET", "/api/v1/admin/cluster", nil, &v); code != 200 || len(v.Nodes) != 2 {
			return false
		}
		for _, n := range v.Nodes {
			if len(n.Plugins) != 1 || n.Plugins[0].SettingsApplied == nil || !*n.Plugins[0].SettingsApplied {
				return false
			}
		}
		return true
	})

	// Without a notification (settings written straight into the
	// database), polling still brings them to both nodes within 2 s.
	saved = time.Now()
	if err := a.app.Settings.Save(ctx, providers.EntryName(pluginID), pluginID, a.settings("key_prefix", "moved")); err != nil {
		t.Fatal(err)
	}
	deadline = saved.Add(2 * time.Second)
	for !inSync(a) || !inSync(b) {
		if time.Now().After(deadline) {
			t.Fatalf("settings written without a notification: not applied on both nodes within 2 s (node A %v, node B %v)", inSync(a), inSync(b))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("settings written without a notification applied on both nodes after %v", time.Since(saved).Round(time.Millisecond))

	r := b.upload(pngBytes(2048), "after.png")
	waitFor(t, 20*time.Second, "the result to be offloaded through node B", func() bool { return b.result(r.ID).Storage == pluginID })
	found := false
	for _, k := range b.objects() {
		if strings.HasPrefix(k, "moved/") && strings.HasSuffix(k, r.Path) {
			found = true
		}
	}
	if !found {
		t.Fatalf("node B stored %s outside the new key prefix moved/: %v", r.Path, b.objects())
	}
}
