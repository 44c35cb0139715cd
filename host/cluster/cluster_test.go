package cluster_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/cluster"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/internal/testdb"
)

// fakePlugins is a plugin runtime's snapshot that a test changes.
type fakePlugins struct {
	mu   sync.Mutex
	list []cluster.Plugin
}

func (f *fakePlugins) set(list ...cluster.Plugin) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = list
}

func (f *fakePlugins) get() []cluster.Plugin {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.list)
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20 s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fast is a heartbeat with a short interval and live window, for tests.
func fast(id, url string, plugins func() []cluster.Plugin) cluster.Options {
	return cluster.Options{NodeID: id, AdvertiseURL: url, Version: "1.0.0", Plugins: plugins,
		Interval: 20 * time.Millisecond, LiveWindow: 500 * time.Millisecond}
}

func view(t *testing.T, h *cluster.Heartbeat) cluster.View {
	t.Helper()
	v, err := h.View(context.Background())
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	return v
}

func node(v cluster.View, id string) (cluster.Node, bool) {
	for _, n := range v.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return cluster.Node{}, false
}

// TestHeartbeatRowAndPlugins: a started node has its row (advertised
// URL, version, live, self) and its plugins' states follow the runtime's
// snapshot; a clean stop marks it down at once.
func TestHeartbeatRowAndPlugins(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			db := testdb.Open(t, d)
			var plugins fakePlugins
			plugins.set(cluster.Plugin{ID: "cloudflare-r2", Version: "1.0.0", State: "starting"})
			h := cluster.New(db.DB, d, fast("node-a", "http://10.0.0.1:8080", plugins.get))
			if err := h.Start(context.Background()); err != nil {
				t.Fatalf("Start: %v", err)
			}
			v := view(t, h)
			if v.Dialect != string(d) || len(v.Nodes) != 1 {
				t.Fatalf("view %+v, want one node on %s", v, d)
			}
			n := v.Nodes[0]
			if n.ID != "node-a" || n.AdvertiseURL != "http://10.0.0.1:8080" || n.Version != "1.0.0" || !n.Live || !n.Self || n.StoppedAt != nil {
				t.Fatalf("node %+v", n)
			}
			if n.StartedAt.IsZero() || n.LastSeen.Before(n.StartedAt) {
				t.Fatalf("started_at %v, last_seen %v", n.StartedAt, n.LastSeen)
			}
			long := string(make([]byte, 1000))
			plugins.set(cluster.Plugin{ID: "cloudflare-r2", Version: "1.0.1", State: "failed", Error: "bad credentials" + long})
			waitFor(t, "the plugin's new state in the node's row", func() bool {
				n, _ := node(view(t, h), "node-a")
				return len(n.Plugins) == 1 && n.Plugins[0].State == "failed" && n.Plugins[0].Version == "1.0.1"
			})
			n, _ = node(view(t, h), "node-a")
			if got := len([]rune(n.Plugins[0].Error)); got > cluster.ErrorRunes {
				t.Fatalf("a plugin's error is kept at %d runes, want at most %d", got, cluster.ErrorRunes)
			}
			first := n.LastSeen
			waitFor(t, "last_seen to move on", func() bool {
				n, _ := node(view(t, h), "node-a")
				return n.LastSeen.After(first)
			})
			if err := h.Stop(context.Background()); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			n, _ = node(view(t, h), "node-a")
			if n.Live || n.StoppedAt == nil {
				t.Fatalf("a node stopped cleanly is %+v, want live=false with stopped_at", n)
			}
		})
	}
}

// TestTwoNodesOnPostgres: two nodes on one database both appear to each
// other, each marked self in its own view only; one whose heartbeat stops
// without a clean stop turns live=false after the live window, and comes
// back live when it starts again.
func TestTwoNodesOnPostgres(t *testing.T) {
	db := testdb.Open(t, dbmigrate.Postgres)
	other, _, err := dbmigrate.Open(context.Background(), db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	a := cluster.New(db.DB, dbmigrate.Postgres, fast("node-a", "http://a:8080", nil))
	bOpts := fast("node-b", "http://b:8080", nil)
	b := cluster.New(other, dbmigrate.Postgres, bOpts)
	for _, h := range []*cluster.Heartbeat{a, b} {
		if err := h.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	defer a.Stop(context.Background())
	for _, c := range []struct {
		h    *cluster.Heartbeat
		self string
	}{{a, "node-a"}, {b, "node-b"}} {
		v := view(t, c.h)
		if len(v.Nodes) != 2 {
			t.Fatalf("%s sees %+v, want both nodes", c.self, v.Nodes)
		}
		for _, n := range v.Nodes {
			if n.Self != (n.ID == c.self) || !n.Live {
				t.Fatalf("%s sees %+v", c.self, n)
			}
		}
	}
	// A crash: the heartbeat ends without marking the row stopped.
	b.Halt()
	waitFor(t, "node-b to turn down after the live window", func() bool {
		n, ok := node(view(t, a), "node-b")
		return ok && !n.Live && n.StoppedAt == nil
	})
	if n, _ := node(view(t, a), "node-a"); !n.Live {
		t.Fatalf("node-a, still beating, is %+v", n)
	}
	b = cluster.New(other, dbmigrate.Postgres, bOpts)
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Stop(context.Background())
	if n, _ := node(view(t, a), "node-b"); !n.Live {
		t.Fatalf("node-b started again is %+v", n)
	}
}

// TestPruneAndSQLite: rows of nodes gone longer than PruneAfter are
// removed by a starting node; on SQLite, one host owns the database, so a
// start keeps its own row only.
func TestPruneAndSQLite(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			db := testdb.Open(t, d)
			old := fast("node-old", "http://old:8080", nil)
			recent := fast("node-recent", "http://recent:8080", nil)
			for _, o := range []cluster.Options{old, recent} {
				h := cluster.New(db.DB, d, o)
				if err := h.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
				if err := h.Stop(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.ExecContext(context.Background(), `UPDATE nodes SET last_seen = $1 WHERE id = 'node-old'`, "2000-01-01 00:00:00.000"); err != nil {
				t.Fatal(err)
			}
			h := cluster.New(db.DB, d, fast("node-new", "http://new:8080", nil))
			if err := h.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer h.Stop(context.Background())
			var ids []string
			for _, n := range view(t, h).Nodes {
				ids = append(ids, n.ID)
			}
			want := []string{"node-new", "node-recent"}
			if d == dbmigrate.SQLite {
				want = []string{"node-new"}
			}
			if !slices.Equal(ids, want) {
				t.Fatalf("nodes %v, want %v", ids, want)
			}
		})
	}
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSameNodeIDTwice: a host process started with the node id of one
// that still runs makes the first one log that two processes share the id.
func TestSameNodeIDTwice(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			db := testdb.Open(t, d)
			var logs lockedBuffer
			first := fast("web-1", "http://10.0.0.1:8080", nil)
			first.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			a := cluster.New(db.DB, d, first)
			if err := a.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer a.Stop(context.Background())
			b := cluster.New(db.DB, d, fast("web-1", "http://10.0.0.2:8080", nil))
			if err := b.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer b.Stop(context.Background())
			waitFor(t, "the first process to report the shared node id", func() bool {
				return strings.Contains(logs.String(), "another host process uses node id web-1 too")
			})
			if !strings.Contains(logs.String(), "http://10.0.0.2:8080") {
				t.Fatalf("the log does not name the other process's URL:\n%s", logs.String())
			}
		})
	}
}
