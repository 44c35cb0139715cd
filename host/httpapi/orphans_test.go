package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/orphans"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/storage"
)

// orphanProviders reaches a memstore as provider "memory" and a provider
// without the optional calls as "old".
type orphanProviders struct {
	mem *memstore.Store
	res storage.ConfigureResult
}

// oldPlugin hides every optional call, as the client of a plugin built
// before listing (which answers them Unimplemented) is seen by the host.
type oldPlugin struct{ storage.Provider }

func (o orphanProviders) Provider(_ context.Context, id string) (storage.Provider, bool) {
	switch id {
	case "memory":
		return o.mem, true
	case "old":
		return oldPlugin{o.mem}, true
	}
	return nil, false
}

func (o orphanProviders) Placement(_ context.Context, id string) (results.Placement, bool) {
	return results.Placement{Bucket: o.res.Bucket, KeyPrefix: o.res.KeyPrefix, Locations: id == "memory"}, id == "memory" || id == "old"
}

// TestOrphanRoutes: POST .../orphans/scan answers the dry run and deletes
// nothing; POST .../orphans/delete needs the scan's scanned_at, then
// deletes the orphans and aborts the stale uploads; a provider without
// listing gets 409 saying the action is unavailable and why; one not
// installed 404; admin auth is required.
func TestOrphanRoutes(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			db := testdb.Open(t, d)
			mem := memstore.New("")
			res, err := mem.Configure(ctx, storage.Settings{"key_prefix": "tenant"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := mem.Put(ctx, "lost.png", strings.NewReader("abc"), storage.PutOptions{Size: 3}); err != nil {
				t.Fatal(err)
			}
			if err := mem.StartUpload("abandoned.png", time.Now()); err != nil {
				t.Fatal(err)
			}
			now := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
			sc := orphans.New(db.DB, orphanProviders{mem: mem, res: res}, orphans.Options{Now: func() time.Time { return now }})
			api := New(nil, nil, nil, Options{AdminToken: testToken, Orphans: sc})
			call := func(path, token string, body any, out any) int {
				t.Helper()
				var buf bytes.Buffer
				if body != nil {
					json.NewEncoder(&buf).Encode(body)
				}
				req := httptest.NewRequest(http.MethodPost, path, &buf)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				rec := httptest.NewRecorder()
				api.ServeHTTP(rec, req)
				if token != "" {
					op := "POST /api/v1/admin/storage/{id}/orphans/" + path[strings.LastIndex(path, "/")+1:]
					checkAnswer(t, op, req, rec.Code, rec.Header(), rec.Body.Bytes())
				}
				if out != nil {
					if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
						t.Fatalf("POST %s: %d %q: %v", path, rec.Code, rec.Body, err)
					}
				}
				return rec.Code
			}
			const base = "/api/v1/admin/storage/"
			if code := call(base+"memory/orphans/scan", "", nil, nil); code != http.StatusUnauthorized {
				t.Fatalf("scan without auth: %d, want 401", code)
			}
			var rep map[string]any
			if code := call(base+"memory/orphans/scan", testToken, nil, &rep); code != 200 {
				t.Fatalf("scan: %d %v", code, rep)
			}
			o := rep["orphans"].(map[string]any)
			u := rep["stale_uploads"].(map[string]any)
			if o["count"] != 1.0 || o["bytes"] != 3.0 || o["keys"].([]any)[0] != "tenant/lost.png" || u["count"] != 1.0 || u["abortable"] != true ||
				rep["scanned_at"] != now.Format(time.RFC3339) || rep["bucket"] != "memory:default" || rep["key_prefix"] != "tenant/" {
				t.Fatalf("scan report %v", rep)
			}
			if len(mem.Keys()) != 1 {
				t.Fatal("the scan deleted something")
			}
			var e map[string]string
			if code := call(base+"memory/orphans/delete", testToken, map[string]any{}, &e); code != 400 || !strings.Contains(e["error"], "scanned_at") {
				t.Fatalf("delete without scanned_at: %d %v, want 400 naming scanned_at", code, e)
			}
			var c map[string]any
			if code := call(base+"memory/orphans/delete", testToken, map[string]any{"scanned_at": rep["scanned_at"]}, &c); code != 200 {
				t.Fatalf("delete: %d %v", code, c)
			}
			del := c["deleted"].(map[string]any)
			if del["count"] != 1.0 || del["keys"].([]any)[0] != "tenant/lost.png" || c["aborted_uploads"] != 1.0 || len(mem.Keys()) != 0 {
				t.Fatalf("delete answered %v; the bucket holds %q", c, mem.Keys())
			}
			e = nil
			if code := call(base+"old/orphans/scan", testToken, nil, &e); code != http.StatusConflict || !strings.Contains(e["error"], "unavailable for this provider: old cannot list its bucket") {
				t.Fatalf("scan of a provider without listing: %d %v, want 409 saying it is unavailable and why", code, e)
			}
			e = nil
			if code := call(base+"nope/orphans/delete", testToken, map[string]any{"scanned_at": rep["scanned_at"]}, &e); code != http.StatusNotFound {
				t.Fatalf("delete for a provider not installed: %d %v, want 404", code, e)
			}
		})
	}
}

// TestOrphanRoutesThroughThePlugin: the scan and the clean-up reach a real
// plugin process through the host's plugin runtime (the fake plugin is
// memstore, which lists): an object stored through the provider that no
// result records is reported, then deleted.
func TestOrphanRoutesThroughThePlugin(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			a := newAdminAPI(t, d)
			values := settings()
			values["bucket"] = locatedBucket
			if rec := a.call("PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", map[string]any{"values": values}, nil); rec.Code != 200 {
				t.Fatalf("save: %d %s", rec.Code, rec.Body)
			}
			p, ok := a.mgr.Provider(ctx, pluginID)
			if !ok {
				t.Fatal("the plugin is not installed")
			}
			if _, err := p.Put(ctx, "images/x/lost.png", strings.NewReader("lost"), storage.PutOptions{Size: 4}); err != nil {
				t.Fatal(err)
			}
			now := time.Now().Add(48 * time.Hour).UTC()
			a.api.opts.Orphans = orphans.New(a.db.DB, a.mgr, orphans.Options{Now: func() time.Time { return now }})
			path := "/api/v1/admin/storage/" + pluginID + "/orphans/"
			var rep orphans.Report
			if rec := a.call("POST", path+"scan", nil, &rep); rec.Code != 200 || rep.Orphans.Count != 1 || !strings.HasSuffix(rep.Orphans.Keys[0], "images/x/lost.png") || rep.Listed != 1 {
				t.Fatalf("scan: %d %s", rec.Code, rec.Body)
			}
			var c orphans.Cleanup
			if rec := a.call("POST", path+"delete", map[string]any{"scanned_at": rep.ScannedAt}, &c); rec.Code != 200 || c.Deleted.Count != 1 {
				t.Fatalf("delete: %d %s", rec.Code, rec.Body)
			}
			if _, err := p.Stat(ctx, "images/x/lost.png"); !storage.IsNotFound(err) {
				t.Fatalf("stat of the orphan after the clean-up: %v, want NotFound", err)
			}
		})
	}
}
