package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/cluster"
)

// TestClusterRoute: GET /api/v1/admin/cluster is an admin call answering
// the cluster view as the document describes it; without a heartbeat it
// answers 503, and a database failure answers 503 naming it.
func TestClusterRoute(t *testing.T) {
	seen := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	stopped := seen.Add(time.Second)
	view := cluster.View{Dialect: "postgres", Nodes: []cluster.Node{
		{ID: "node-a", AdvertiseURL: "http://10.0.0.1:8080", Version: "1.0.0", StartedAt: seen.Add(-time.Hour), LastSeen: seen, Live: true, Self: true,
			Plugins: []cluster.Plugin{{ID: "cloudflare-r2", Version: "1.0.0", State: "running"}}},
		{ID: "node-b", AdvertiseURL: "http://10.0.0.2:8080", Version: "1.0.0", StartedAt: seen.Add(-time.Hour), LastSeen: stopped, StoppedAt: &stopped,
			Plugins: []cluster.Plugin{}},
	}}
	var fail error
	api := New(nil, nil, nil, Options{AdminToken: testToken, Cluster: func(context.Context) (cluster.View, error) { return view, fail }})
	get := func(a *API, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/api/v1/admin/cluster", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		checkAnswer(t, "GET /api/v1/admin/cluster", req, rec.Code, rec.Header(), rec.Body.Bytes())
		return rec
	}
	rec := get(api, testToken)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /api/v1/admin/cluster: %d %s", rec.Code, rec.Body)
	}
	var got cluster.View
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || len(got.Nodes) != 2 || !got.Nodes[0].Self || got.Nodes[1].Live || got.Dialect != "postgres" {
		t.Fatalf("answer %s (%v)", rec.Body, err)
	}
	if rec := get(api, ""); rec.Code != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d, want 401", rec.Code)
	}
	fail = context.DeadlineExceeded
	if rec := get(api, testToken); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("database timing out: %d %s, want 503", rec.Code, rec.Body)
	}
	fail = errors.New("boom")
	if rec := get(api, testToken); rec.Code != http.StatusInternalServerError {
		t.Fatalf("an unknown failure: %d %s, want 500", rec.Code, rec.Body)
	}
	if rec := get(New(nil, nil, nil, Options{AdminToken: testToken}), testToken); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("without a heartbeat: %d %s, want 503", rec.Code, rec.Body)
	}
}
