package marketplace_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/internal/testdb"
)

// waitUntil polls cond until it holds, failing the test after d.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runs reports whether h runs plugin version v (its record and the
// running process both say so).
func runs(h *host, v string) bool {
	inst, ok := h.app.Providers.Installed(pluginID)
	if !ok || inst.Version != v {
		return false
	}
	st, ok := h.app.Runtime.Status(pluginID)
	if !ok || st.State != pluginrt.StateRunning {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := h.app.Runtime.Provider(pluginID).Describe(ctx)
	return err == nil && info.Version == v
}

// TestInstallsSerialisedAcrossNodes (PostgreSQL): an install through one
// node waits while another node holds the plugin's cluster-wide lock (and
// gives up naming the cause when its ctx ends first), then proceeds; two
// installs started at once through two nodes both succeed and leave one
// record, one stored bundle and one download, every node running it.
func TestInstallsSerialisedAcrossNodes(t *testing.T) {
	ctx := context.Background()
	m := newMarket(t)
	m.publish(free, version("1.0.0", goodArchive(t, m, "1.0.0", &bin100)))
	db := testdb.Open(t, dbmigrate.Postgres)
	a := startHost(t, db, t.TempDir(), m, marketplace.LicenseRegular)
	b := startHost(t, db, t.TempDir(), m, marketplace.LicenseRegular)

	// Node A holds the plugin's lock, as its own install would.
	release, err := a.app.Market.ClusterLock(ctx, pluginID)
	if err != nil {
		t.Fatalf("taking the lock through node A: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = b.app.Market.Install(short, pluginID)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "through another node is still running; try again when it finishes") {
		t.Fatalf("install through node B while node A holds the lock, bounded by 2 s: %v; want an error naming the install through another node and the fix", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.app.Market.Install(ctx, pluginID)
		done <- err
	}()
	// Long enough for an install that did not wait to have downloaded.
	time.Sleep(1500 * time.Millisecond)
	if n := m.downloads(); n != 0 {
		t.Fatalf("node B downloaded the archive %d times while node A held the lock", n)
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("install through node B after node A released the lock: %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the install through node B did not proceed after node A released the lock")
	}
	waitUntil(t, 20*time.Second, "both nodes to run 1.0.0", func() bool { return runs(a, "1.0.0") && runs(b, "1.0.0") })

	// Uninstall through node A (which learns of B's install at once).
	if err := a.app.Market.Uninstall(ctx, pluginID); err != nil {
		t.Fatalf("uninstall through node A right after the install through node B: %v", err)
	}
	waitUntil(t, 20*time.Second, "node B to drop the uninstalled plugin", func() bool {
		_, ok := b.app.Providers.Installed(pluginID)
		return !ok
	})

	// Two installs at once, through both nodes.
	before := m.downloads()
	errs := make(chan error, 2)
	for _, h := range []*host{a, b} {
		go func() {
			v, err := h.app.Market.Install(ctx, pluginID)
			if err == nil && v != "1.0.0" {
				err = &marketplace.InstallError{PluginID: pluginID, Step: "version", Err: context.Canceled}
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("one of two installs started at once through two nodes: %v", err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if n := m.downloads() - before; n != 1 {
		t.Errorf("two installs of the same version at once downloaded the archive %d times, want once (the second finds it installed)", n)
	}
	if rows := a.queryRows(`SELECT id, version FROM plugins`); len(rows) != 1 || rows[0] != pluginID+"|1.0.0" {
		t.Errorf("plugins table after two installs at once: %v, want one record of 1.0.0", rows)
	}
	if rows := a.queryRows(`SELECT id, version FROM plugin_bundles`); len(rows) != 1 || rows[0] != pluginID+"|1.0.0" {
		t.Errorf("stored bundles after two installs at once: %v, want the one of 1.0.0", rows)
	}
	waitUntil(t, 20*time.Second, "both nodes to run 1.0.0", func() bool { return runs(a, "1.0.0") && runs(b, "1.0.0") })
	ia, _ := a.app.Providers.Installed(pluginID)
	ib, _ := b.app.Providers.Installed(pluginID)
	if string(ia.SHA256) != string(ib.SHA256) {
		t.Errorf("the nodes run different binaries: %x and %x", ia.SHA256, ib.SHA256)
	}
}
