package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/host/cluster"
	"github.com/magicads/r2storage/host/dbmigrate"
)

// clusterJSON is GET /api/v1/admin/cluster.
type clusterJSON struct {
	Nodes []struct {
		ID           string    `json:"id"`
		AdvertiseURL string    `json:"advertise_url"`
		Version      string    `json:"version"`
		StartedAt    time.Time `json:"started_at"`
		LastSeen     time.Time `json:"last_seen"`
		Live         bool      `json:"live"`
		Self         bool      `json:"self"`
		Plugins      []struct {
			ID, Version, State, Error string
			SettingsApplied           *bool `json:"settings_applied"`
		} `json:"plugins"`
	} `json:"nodes"`
	Dialect string `json:"dialect"`
}

// nodeIDOf reads the id a host took from its data dir.
func nodeIDOf(t *testing.T, dataDir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, app.NodeIDFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// TestClusterViewSQLite: on SQLite the cluster view is this one node, live
// and self, with the running R2 plugin's version and state.
func TestClusterViewSQLite(t *testing.T) {
	h := newHost(t, dbmigrate.SQLite)
	id := nodeIDOf(t, h.dataDir)
	var v clusterJSON
	waitFor(t, 20*time.Second, "the node's row to show the running plugin", func() bool {
		if code := h.do("GET", "/api/v1/admin/cluster", nil, &v); code != 200 {
			t.Fatalf("GET /api/v1/admin/cluster: %d", code)
		}
		return len(v.Nodes) == 1 && len(v.Nodes[0].Plugins) == 1 && v.Nodes[0].Plugins[0].State == "running"
	})
	n := v.Nodes[0]
	if v.Dialect != "sqlite" || n.ID != id || !n.Live || !n.Self || n.Version != app.HostVersion ||
		n.Plugins[0].ID != pluginID || n.Plugins[0].Version != "1.0.0" {
		t.Fatalf("cluster view %+v, want node %s alone, live and self, with %s 1.0.0 running", v, id, pluginID)
	}
}

// TestClusterViewTwoNodesPostgres: two hosts on one PostgreSQL database
// (own data dirs, own node ids) both appear in the cluster view of either,
// self set on each one's own; the plugins list shows the R2 plugin,
// installed through the first node, running on both; a node that stops
// shows live=false on the other.
func TestClusterViewTwoNodesPostgres(t *testing.T) {
	a := newHost(t, dbmigrate.Postgres)
	idA := nodeIDOf(t, a.dataDir)
	rt, res := fastOptions()
	b, err := app.New(context.Background(), app.Config{
		DataDir: t.TempDir(), DB: a.dsn, AppKey: a.key, AdminToken: adminToken, AdminPasswordOut: io.Discard,
		NodeID: "node-b", AdvertiseURL: "http://10.0.0.2:8080",
		Logger: slog.New(slog.NewTextHandler(a.logs, nil)), Runtime: rt, Results: res, Cluster: testCluster(),
	})
	if err != nil {
		t.Fatalf("starting the second node: %v", err)
	}
	bSrv := httptest.NewServer(b.Handler())
	defer bSrv.Close()
	hb := &host{t: t, app: b, srv: bSrv}
	closed := false
	defer func() {
		if !closed {
			b.Close(context.Background())
		}
	}()
	for _, c := range []struct {
		h    *host
		self string
	}{{a, idA}, {hb, "node-b"}} {
		var v clusterJSON
		waitFor(t, 20*time.Second, "both nodes, and node A's running plugin, in "+c.self+"'s view", func() bool {
			if code := c.h.do("GET", "/api/v1/admin/cluster", nil, &v); code != 200 {
				t.Fatalf("GET /api/v1/admin/cluster on %s: %d", c.self, code)
			}
			for _, n := range v.Nodes {
				if len(n.Plugins) != 1 || n.Plugins[0].State != "running" {
					return false // both nodes run it
				}
			}
			return len(v.Nodes) == 2
		})
		if v.Dialect != "postgres" {
			t.Fatalf("dialect %q", v.Dialect)
		}
		for _, n := range v.Nodes {
			if !n.Live || n.Self != (n.ID == c.self) || n.Version != app.HostVersion {
				t.Fatalf("%s's view has %+v", c.self, n)
			}
			switch n.ID {
			case idA:
				if n.Plugins[0].ID != pluginID || n.Plugins[0].Version != "1.0.0" {
					t.Fatalf("node A's plugins %+v", n.Plugins)
				}
			case "node-b":
				// Installed through node A: node B unpacked it from the
				// bundle in the database and runs the same version.
				if n.AdvertiseURL != "http://10.0.0.2:8080" || len(n.Plugins) != 1 || n.Plugins[0].Version != "1.0.0" {
					t.Fatalf("node B %+v, want %s 1.0.0", n, pluginID)
				}
			default:
				t.Fatalf("unknown node %+v", n)
			}
		}
	}
	closed = true
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "node-b to show down on node A", func() bool {
		var v clusterJSON
		a.do("GET", "/api/v1/admin/cluster", nil, &v)
		for _, n := range v.Nodes {
			if n.ID == "node-b" {
				return !n.Live
			}
		}
		return false
	})
}

// testCluster is a heartbeat fast enough for tests.
func testCluster() cluster.Options {
	return cluster.Options{Interval: 100 * time.Millisecond, LiveWindow: 3 * time.Second}
}
