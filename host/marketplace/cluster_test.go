package marketplace_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/host/cluster"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/providers"
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
	if !errors.Is(err, marketplace.ErrBusyElsewhere) || !strings.Contains(err.Error(), "through another node is still running; try again when it finishes") {
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

// startNode starts a host node named id on db (PostgreSQL), with adjust
// applied to its configuration.
func startNode(t testing.TB, db *testdb.DB, m *market, id string, adjust func(*app.Config)) *host {
	t.Helper()
	h := &host{t: t, dataDir: t.TempDir(), db: db, m: m, license: marketplace.LicenseRegular, key: testAppKey, nodeID: id, cfg: adjust}
	h.open()
	return h
}

// liveNodes waits until h's cluster view shows every node of ids live.
func liveNodes(t testing.TB, h *host, ids ...string) {
	t.Helper()
	waitUntil(t, 20*time.Second, "the nodes to show live", func() bool {
		v, err := h.app.Cluster.View(context.Background())
		if err != nil {
			return false
		}
		live := 0
		for _, n := range v.Nodes {
			if n.Live && slices.Contains(ids, n.ID) {
				live++
			}
		}
		return live == len(ids)
	})
}

// clusterVersions is, per node id, the plugin's version as GET
// /api/v1/admin/cluster through h shows it ("" when it shows none).
func clusterVersions(t testing.TB, h *host) map[string]string {
	t.Helper()
	srv := httptest.NewServer(h.app.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/admin/cluster", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v cluster.View
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil {
		t.Fatalf("GET /api/v1/admin/cluster: %d", resp.StatusCode)
	}
	out := map[string]string{}
	for _, n := range v.Nodes {
		out[n.ID] = ""
		for _, p := range n.Plugins {
			if p.ID == pluginID {
				out[n.ID] = p.Version
			}
		}
	}
	return out
}

// installOn installs the catalog's newest version through h and waits
// until every node of all runs it.
func installOn(t testing.TB, h *host, want string, all ...*host) {
	t.Helper()
	if v, err := h.app.Market.Install(context.Background(), pluginID); err != nil || v != want {
		t.Fatalf("install through node %s: %q %v, want %s", h.nodeID, v, err, want)
	}
	waitUntil(t, 30*time.Second, "every node to run "+want, func() bool {
		for _, n := range all {
			if !runs(n, want) {
				return false
			}
		}
		return true
	})
}

// TestUpdateWaitsForEveryLiveNode (PostgreSQL): an update through node A
// with node B live switches the record only once B checked the new
// version (B's check is held here: meanwhile the record stays 1.0.0 and
// the install waits), then both nodes run 1.1.0 and the rollout is gone.
func TestUpdateWaitsForEveryLiveNode(t *testing.T) {
	ctx := context.Background()
	m := newMarket(t)
	v100 := version("1.0.0", goodArchive(t, m, "1.0.0", &bin100))
	m.publish(free, v100)
	db := testdb.Open(t, dbmigrate.Postgres)
	staged, proceed := make(chan string, 1), make(chan struct{})
	a := startNode(t, db, m, "node-a", nil)
	b := startNode(t, db, m, "node-b", func(c *app.Config) {
		c.Providers.RolloutStaged = func(ctx context.Context, id, v, dir string) {
			if v != "1.1.0" {
				return
			}
			staged <- dir
			select {
			case <-proceed:
			case <-ctx.Done():
			}
		}
	})
	liveNodes(t, a, "node-a", "node-b")
	installOn(t, a, "1.0.0", a, b)

	m.publish(free, v100, version("1.1.0", goodArchive(t, m, "1.1.0", &bin110)))
	done := make(chan error, 1)
	go func() {
		v, err := a.app.Market.Install(ctx, pluginID)
		if err == nil && v != "1.1.0" {
			err = errors.New("installed " + v)
		}
		done <- err
	}()
	var dir string
	select {
	case dir = <-staged:
	case err := <-done:
		t.Fatalf("the update through node A returned before node B checked the new version: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("node B never staged the new version for its check")
	}
	if !strings.HasPrefix(dir, filepath.Join(b.dataDir, "plugins", ".staging")+string(filepath.Separator)) {
		t.Errorf("node B staged the new version at %s, want under its plugins dir's .staging", dir)
	}
	if rows := a.queryRows(`SELECT version FROM plugins`); len(rows) != 1 || rows[0] != "1.0.0" {
		t.Errorf("the record while node B checks the new version: %v, want still 1.0.0", rows)
	}
	if rows := a.queryRows(`SELECT plugin_id, version, node_id FROM plugin_rollouts`); len(rows) != 1 || rows[0] != pluginID+"|1.1.0|node-a" {
		t.Errorf("rollouts while node B checks: %v, want the one of 1.1.0 by node-a", rows)
	}
	if rows := a.queryRows(`SELECT version FROM plugin_bundles ORDER BY version`); !slices.Equal(rows, []string{"1.0.0", "1.1.0"}) {
		t.Errorf("stored bundles while node B checks: %v, want 1.0.0 and the new 1.1.0", rows)
	}
	select {
	case err := <-done:
		t.Fatalf("the update through node A returned while node B was still checking: %v", err)
	default:
	}
	if !runs(a, "1.0.0") || !runs(b, "1.0.0") {
		t.Errorf("a node left 1.0.0 before every node checked 1.1.0")
	}
	close(proceed)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the update through node A after node B's check: %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the update through node A did not finish after node B's check")
	}
	waitUntil(t, 30*time.Second, "both nodes to run 1.1.0", func() bool { return runs(a, "1.1.0") && runs(b, "1.1.0") })
	if rows := a.queryRows(`SELECT token FROM plugin_rollouts UNION ALL SELECT token FROM plugin_rollout_nodes`); len(rows) != 0 {
		t.Errorf("rollout rows left after the update: %v", rows)
	}
	if rows := a.queryRows(`SELECT version FROM plugin_bundles`); !slices.Equal(rows, []string{"1.1.0"}) {
		t.Errorf("stored bundles after the update: %v, want 1.1.0's", rows)
	}

	// A rollout written outside the host (its MAC is not APP_KEY's) is
	// refused by every node without running anything.
	sum := hex.EncodeToString(mustInstalled(t, a).SHA256)
	if _, err := db.ExecContext(ctx, `INSERT INTO plugin_rollouts (token, plugin_id, version, sha256, mac, node_id, created_ms) VALUES ('forged', $1, '1.1.0', $2, $3, 'node-x', 0)`,
		pluginID, sum, hex.EncodeToString(randBytes(32))); err != nil {
		t.Fatal(err)
	}
	want := []string{"node-a|failed|true", "node-b|failed|true"}
	var rows []string
	waitUntil(t, 30*time.Second, "both nodes to refuse the forged rollout", func() bool {
		rows = a.queryRows(`SELECT node_id, state, error LIKE '%does not verify against this node''s APP_KEY%' FROM plugin_rollout_nodes WHERE token = 'forged' ORDER BY node_id`)
		return len(rows) == 2
	})
	if !slices.Equal(rows, want) {
		t.Errorf("answers to a forged rollout: %v, want %v", rows, want)
	}
}

// mustInstalled returns h's install of the plugin.
func mustInstalled(t testing.TB, h *host) providers.Installed {
	t.Helper()
	inst, ok := h.app.Providers.Installed(pluginID)
	if !ok {
		t.Fatal("the plugin is not installed")
	}
	return inst
}

// TestUpdateRefusedByOneNode (PostgreSQL): node B's copy of 1.1.0 is
// damaged, so its check fails: the update through node A fails naming
// node B and why, and both nodes keep running 1.0.0, as the cluster view
// shows; nothing of 1.1.0 is left.
func TestUpdateRefusedByOneNode(t *testing.T) {
	ctx := context.Background()
	m := newMarket(t)
	v100 := version("1.0.0", goodArchive(t, m, "1.0.0", &bin100))
	m.publish(free, v100)
	db := testdb.Open(t, dbmigrate.Postgres)
	a := startNode(t, db, m, "node-a", nil)
	b := startNode(t, db, m, "node-b", func(c *app.Config) {
		c.Providers.RolloutStaged = func(_ context.Context, _, v, dir string) {
			if v != "1.1.0" {
				return
			}
			// Damage every executable of the staged copy.
			filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if fi, ierr := d.Info(); err == nil && ierr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
					f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
					f.Write([]byte("damaged"))
					f.Close()
				}
				return nil
			})
		}
	})
	liveNodes(t, a, "node-a", "node-b")
	installOn(t, a, "1.0.0", a, b)

	m.publish(free, v100, version("1.1.0", goodArchive(t, m, "1.1.0", &bin110)))
	_, err := a.app.Market.Install(ctx, pluginID)
	var ie *marketplace.InstallError
	if !errors.As(err, &ie) || ie.Step != "canary on node node-b" || !strings.Contains(err.Error(), "node node-b: the executable unpacked on this node has sha256") {
		t.Fatalf("update with node B's copy damaged: %v; want an install error at step \"canary on node node-b\" naming the sha256 mismatch", err)
	}
	for name, h := range map[string]*host{"A": a, "B": b} {
		if !runs(h, "1.0.0") {
			inst, _ := h.app.Providers.Installed(pluginID)
			t.Errorf("node %s after the refused update: %+v, want it running 1.0.0", name, inst)
		}
	}
	waitUntil(t, 20*time.Second, "the cluster view to show 1.0.0 on both nodes", func() bool {
		v := clusterVersions(t, a)
		return v["node-a"] == "1.0.0" && v["node-b"] == "1.0.0"
	})
	if rows := a.queryRows(`SELECT version FROM plugins`); !slices.Equal(rows, []string{"1.0.0"}) {
		t.Errorf("the record after the refused update: %v, want 1.0.0", rows)
	}
	if rows := a.queryRows(`SELECT version FROM plugin_bundles`); !slices.Equal(rows, []string{"1.0.0"}) {
		t.Errorf("stored bundles after the refused update: %v, want only 1.0.0's", rows)
	}
	if rows := a.queryRows(`SELECT token FROM plugin_rollouts UNION ALL SELECT token FROM plugin_rollout_nodes`); len(rows) != 0 {
		t.Errorf("rollout rows left after the refused update: %v", rows)
	}
	for name, h := range map[string]*host{"A": a, "B": b} {
		if e := h.pluginsDirEntries(); slices.ContainsFunc(e, func(s string) bool { return strings.Contains(s, "1.1.0") }) {
			t.Errorf("node %s kept files of the refused 1.1.0: %v", name, e)
		}
	}
	// Both nodes' copies are fine again: the update goes through.
	b.app.Close(ctx)
	waitUntil(t, 20*time.Second, "node B to show stopped", func() bool {
		v, err := a.app.Cluster.View(ctx)
		return err == nil && !slices.ContainsFunc(v.Nodes, func(n cluster.Node) bool { return n.ID == "node-b" && n.Live })
	})
	installOn(t, a, "1.1.0", a)
}

// TestUpdateWaitsForSilentNode (PostgreSQL): a node that heartbeats but
// never answers (a row kept live, no host behind it) fails the update
// after the configured deadline, naming it; node A keeps 1.0.0.
func TestUpdateWaitsForSilentNode(t *testing.T) {
	ctx := context.Background()
	m := newMarket(t)
	v100 := version("1.0.0", goodArchive(t, m, "1.0.0", &bin100))
	m.publish(free, v100)
	db := testdb.Open(t, dbmigrate.Postgres)
	a := startNode(t, db, m, "node-a", func(c *app.Config) { c.Marketplace.RolloutTimeout = 3 * time.Second })
	installOn(t, a, "1.0.0", a)

	beat, stop := context.WithCancel(ctx)
	defer stop()
	if _, err := db.ExecContext(ctx, `INSERT INTO nodes (id, started_at, last_seen) VALUES ('node-ghost', now(), now())`); err != nil {
		t.Fatal(err)
	}
	go func() {
		for beat.Err() == nil {
			db.ExecContext(beat, `UPDATE nodes SET last_seen = now() WHERE id = 'node-ghost'`)
			select {
			case <-beat.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	liveNodes(t, a, "node-a", "node-ghost")
	m.publish(free, v100, version("1.1.0", goodArchive(t, m, "1.1.0", &bin110)))
	_, err := a.app.Market.Install(ctx, pluginID)
	var ie *marketplace.InstallError
	if !errors.As(err, &ie) || ie.Step != "canary on node node-ghost" || !strings.Contains(err.Error(), "node node-ghost did not answer within 3s") {
		t.Fatalf("update with a silent live node: %v; want an install error at step \"canary on node node-ghost\" saying it did not answer within 3s", err)
	}
	if !runs(a, "1.0.0") {
		t.Errorf("node A left 1.0.0 after the refused update")
	}
	if rows := a.queryRows(`SELECT version FROM plugin_bundles`); !slices.Equal(rows, []string{"1.0.0"}) {
		t.Errorf("stored bundles after the refused update: %v, want only 1.0.0's", rows)
	}
}
