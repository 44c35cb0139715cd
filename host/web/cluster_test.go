package web

import (
	"strings"
	"testing"
	"time"
)

// clusterAnswer is a GET /api/v1/admin/cluster answer of three PostgreSQL
// nodes: node-a (this one) and node-b live, running cloudflare-r2 1.0.0
// and 1.1.0 (node-b not yet with the settings stored now), and node-c
// down since a crash.
func clusterAnswer(now time.Time) map[string]any {
	plugin := func(version, state, err string, applied bool) []any {
		return []any{map[string]any{"id": "cloudflare-r2", "version": version, "state": state, "error": err, "settings": "0123abcd", "settings_applied": applied}}
	}
	at := func(d time.Duration) string { return now.Add(-d).Format(time.RFC3339Nano) }
	return map[string]any{"dialect": "postgres", "nodes": []any{
		map[string]any{"id": "node-a", "advertise_url": "http://10.0.0.1:8080", "version": "1.0.0", "started_at": at(time.Hour), "last_seen": at(3 * time.Second),
			"stopped_at": nil, "live": true, "self": true, "plugins": plugin("1.0.0", "running", "", true)},
		map[string]any{"id": "node-b", "advertise_url": "http://10.0.0.2:8080", "version": "1.0.0", "started_at": at(time.Hour), "last_seen": at(time.Second),
			"stopped_at": nil, "live": true, "self": false, "plugins": plugin("1.1.0", "restarting", "plugin exited: signal: killed", false)},
		map[string]any{"id": "node-c", "advertise_url": "http://10.0.0.3:8080", "version": "0.9.0", "started_at": at(3 * time.Hour), "last_seen": at(2 * time.Hour),
			"stopped_at": nil, "live": false, "self": false, "plugins": []any{}},
	}}
}

// TestClusterPage: the cluster page lists every node with a live or down
// badge, how long ago it was seen, its version and each plugin's version
// and state on it; it flags the plugin whose versions differ between live
// nodes; General Settings links to it.
func TestClusterPage(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	api := newFakeAPI()
	api.set("/api/v1/admin/cluster", 200, clusterAnswer(now))
	api.set("/api/v1/admin/storage", 200, map[string]any{"default": "local", "options": []map[string]string{{"id": "local", "name": "Local server (this machine)"}}})
	h := New(Options{API: api, Now: func() time.Time { return now }})
	res, body, doc := get(t, h, ClusterPath)
	checkLayout(t, res, doc, "cluster")
	for id, want := range map[string]string{
		"node-node-a-status":                 "Live",
		"node-node-b-status":                 "Live",
		"node-node-c-status":                 "Down",
		"node-node-a-seen":                   "3 s ago",
		"node-node-c-seen":                   "2 h ago",
		"node-node-a-version":                "1.0.0",
		"node-node-c-version":                "0.9.0",
		"node-node-a-cloudflare-r2":          "1.0.0 · running versions differ settings applied",
		"node-node-b-cloudflare-r2":          "1.1.0 · restarting versions differ settings not applied yet Plugin exited: signal: killed",
		"node-node-b-cloudflare-r2-settings": "settings not applied yet",
		"node-node-c-cloudflare-r2":          "not installed",
		"nodes-count":                        "2 of 3 nodes live",
	} {
		if got := strings.Join(strings.Fields(textOf(mustID(t, doc, id))), " "); got != want {
			t.Errorf("#%s %q, want %q", id, got, want)
		}
	}
	if got := textOf(mustID(t, doc, "node-node-a")); !strings.Contains(got, "this node") {
		t.Errorf("node-a's row %q does not say it is this node", got)
	}
	if got := textOf(mustID(t, doc, "node-node-b")); strings.Contains(got, "this node") {
		t.Errorf("node-b's row %q says it is this node", got)
	}
	if got := textOf(mustID(t, doc, "version-mismatch")); !strings.Contains(got, "cloudflare-r2") || !strings.Contains(got, "1.0.0 on node-a") || !strings.Contains(got, "1.1.0 on node-b") {
		t.Errorf("the mismatch warning says %q", got)
	}
	if cells := byClass(doc, "version-differs"); len(cells) != 2 {
		t.Errorf("%d cells flagged as differing, want node-a's and node-b's", len(cells))
	}
	if byID(doc, "sqlite-note") != nil {
		t.Error("a PostgreSQL cluster says SQLite runs one node")
	}
	if strings.Contains(body, "style=") {
		t.Error("the page has a style attribute, which the CSP refuses")
	}

	_, _, doc = get(t, h, StoragePath)
	if v, _ := attr(mustID(t, doc, "cluster-link"), "href"); v != ClusterPath {
		t.Errorf("General Settings links the cluster at %q", v)
	}
}

// TestClusterPageSQLite: on SQLite the page shows the one node and says
// that SQLite runs one node.
func TestClusterPageSQLite(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	answer := clusterAnswer(now)
	answer["dialect"] = "sqlite"
	answer["nodes"] = answer["nodes"].([]any)[:1]
	api := newFakeAPI()
	api.set("/api/v1/admin/cluster", 200, answer)
	res, _, doc := get(t, New(Options{API: api, Now: func() time.Time { return now }}), ClusterPath)
	checkLayout(t, res, doc, "cluster")
	if got := textOf(mustID(t, doc, "sqlite-note")); !strings.Contains(got, "SQLite runs one node") {
		t.Errorf("the SQLite note says %q", got)
	}
	mustID(t, doc, "node-node-a")
	if byID(doc, "version-mismatch") != nil {
		t.Error("one node is flagged as disagreeing with itself")
	}
}

// TestClusterPageAPIError: a failure of the API is shown in its words.
func TestClusterPageAPIError(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/cluster", 503, map[string]string{"error": "the database did not answer"})
	res, body, _ := get(t, New(Options{API: api}), ClusterPath)
	if res.StatusCode != 503 || !strings.Contains(body, "The database did not answer") {
		t.Fatalf("%d, body without the API's error:\n%s", res.StatusCode, body)
	}
}
