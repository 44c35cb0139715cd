package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/magicads/r2storage/host/localstore"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/internal/testdb"
)

// TestStorageOpsOverview: GET /api/v1/admin/storage/overview counts the
// live results by location (local only, with a local copy, provider only),
// the disk reclaimed, the pending and failed jobs with the failures'
// errors, the providers' status and the active bulk run; POST
// /api/v1/admin/storage/jobs/{job}/retry retries one failed job, and a job
// that is not failed is 404. Every answer is the documented shape.
func TestStorageOpsOverview(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			a := newAdminAPI(t, d)
			local, err := localstore.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			res := results.New(a.db.DB, local, nil, results.Options{})
			a.api.results, a.api.jobs = res, res
			ctx := context.Background()
			exec := func(q string, args ...any) {
				t.Helper()
				if _, err := a.db.DB.ExecContext(ctx, q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			rows := []struct {
				id, storage   string
				size          int64
				present, gone bool
			}{
				{"r1", "local", 100, true, false},
				{"r2", "local", 50, true, false},
				{"r3", pluginID, 1000, true, false},
				{"r4", pluginID, 4000, false, false},
				{"r5", pluginID, 3000, false, false},
				{"r6", pluginID, 9999, false, true}, // deleted: not counted
			}
			for _, r := range rows {
				exec(`INSERT INTO results (id, path, content_type, size, sha256, storage, local_present, deleted) VALUES ($1, $2, 'image/png', $3, 'x', $4, $5, $6)`,
					r.id, "images/"+r.id+".png", r.size, r.storage, r.present, r.gone)
			}
			exec(`INSERT INTO jobs (kind, result_id, provider, state, attempts, last_error) VALUES ('offload', 'r1', $1, 'failed', 5, 'permission denied on bucket')`, pluginID)
			exec(`INSERT INTO jobs (kind, result_id, provider, state, attempts, last_error) VALUES ('offload', 'r2', $1, 'queued', 1, '')`, pluginID)
			exec(`INSERT INTO bulk_runs (direction, provider, state, active, total_results, total_bytes, created_at, updated_at) VALUES ('offload', $1, 'paused', 'active', 2, 150, $2, $2)`,
				pluginID, "2026-11-30 07:00:00.000000+00:00")

			get := func() map[string]any {
				t.Helper()
				var got map[string]any
				if code := overviewCall(t, a, "GET", "/api/v1/admin/storage/overview", "GET /api/v1/admin/storage/overview", &got); code != http.StatusOK {
					t.Fatalf("overview: %d %v", code, got)
				}
				return got
			}
			got := get()
			loc := got["locations"].(map[string]any)
			if lo := loc["local_only"].(map[string]any); lo["results"] != 2.0 || lo["bytes"] != 150.0 {
				t.Errorf("local_only %v, want 2 results, 150 bytes", lo)
			}
			provs := loc["providers"].([]any)
			if len(provs) != 1 {
				t.Fatalf("providers %v, want one", provs)
			}
			p := provs[0].(map[string]any)
			wc, po := p["with_local_copy"].(map[string]any), p["provider_only"].(map[string]any)
			if p["provider"] != pluginID || wc["results"] != 1.0 || wc["bytes"] != 1000.0 || po["results"] != 2.0 || po["bytes"] != 7000.0 {
				t.Errorf("provider locations %v", p)
			}
			if loc["reclaimed_bytes"] != 7000.0 {
				t.Errorf("reclaimed_bytes %v, want 7000", loc["reclaimed_bytes"])
			}
			jobs := got["jobs"].(map[string]any)
			fails := jobs["failures"].([]any)
			if jobs["pending"] != 1.0 || jobs["failed"] != 1.0 || len(fails) != 1 {
				t.Fatalf("jobs %v", jobs)
			}
			f := fails[0].(map[string]any)
			if f["result_id"] != "r1" || f["provider"] != pluginID || f["kind"] != "offload" || f["last_error"] != "permission denied on bucket" {
				t.Errorf("failure %v", f)
			}
			if opts := got["storage"].(map[string]any)["options"].([]any); len(opts) == 0 {
				t.Errorf("storage options missing: %v", got["storage"])
			}
			if run, ok := got["active_bulk"].(map[string]any); !ok || run["state"] != "paused" || run["direction"] != "offload" {
				t.Errorf("active_bulk %v, want the paused offload", got["active_bulk"])
			}

			jobID := int64(f["id"].(float64))
			path := "/api/v1/admin/storage/jobs/" + strconv.FormatInt(jobID, 10) + "/retry"
			const retryOp = "POST /api/v1/admin/storage/jobs/{job}/retry"
			var out map[string]any
			if code := overviewCall(t, a, "POST", path, retryOp, &out); code != http.StatusOK || out["retried"] != 1.0 {
				t.Fatalf("retry: %d %v", code, out)
			}
			var why string
			if err := a.db.DB.QueryRowContext(ctx, `SELECT local_reason FROM results WHERE id = 'r1'`).Scan(&why); err != nil || !strings.Contains(why, "trying again") {
				t.Errorf("the retried result's local reason %q (%v), want it to say the upload is tried again", why, err)
			}
			if j := get()["jobs"].(map[string]any); j["pending"] != 2.0 || j["failed"] != 0.0 {
				t.Errorf("after the retry: jobs %v, want 2 pending, 0 failed", j)
			}
			out = nil
			if code := overviewCall(t, a, "POST", path, retryOp, &out); code != http.StatusNotFound || out["error"] == nil {
				t.Errorf("retrying a job that is not failed: %d %v, want 404", code, out)
			}
			if rec := a.call("POST", "/api/v1/admin/storage/jobs/abc/retry", nil, nil); rec.Code != http.StatusBadRequest {
				t.Errorf("retrying job abc: %d, want 400", rec.Code)
			}
		})
	}
}

// overviewCall makes an admin call, checks its answer against the
// document's operation op, and decodes it into out.
func overviewCall(t *testing.T, a *adminAPI, method, path, op string, out any) int {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	a.api.ServeHTTP(rec, req)
	checkAnswer(t, op, req, rec.Code, rec.Header(), rec.Body.Bytes())
	if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
		t.Fatalf("%s %s: %d %q: %v", method, path, rec.Code, rec.Body, err)
	}
	return rec.Code
}
