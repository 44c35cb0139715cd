package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/magicads/r2storage/host/localstore"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/internal/testdb"
)

// TestBulkAnswers: the bulk routes answer bad requests 400, unknown runs
// 404 and refused operations 409, each with an error naming cause and fix.
func TestBulkAnswers(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			db := testdb.Open(t, d)
			local, err := localstore.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			res := results.New(db.DB, local, nil, results.Options{})
			a := New(res, nil, nil, Options{AdminToken: "t"})
			call := func(method, path, body string) (int, map[string]any) {
				t.Helper()
				req := httptest.NewRequest(method, path, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer t")
				rec := httptest.NewRecorder()
				a.ServeHTTP(rec, req)
				tmpl := strings.Split(req.URL.Path, "/")
				if len(tmpl) > 6 {
					tmpl[6] = "{run}"
				}
				checkAnswer(t, method+" "+strings.Join(tmpl, "/"), req, rec.Code, rec.Header(), rec.Body.Bytes())
				var out map[string]any
				if err := json.Unmarshal(bytes.TrimSpace(rec.Body.Bytes()), &out); err != nil {
					t.Fatalf("%s %s: %d %q is not a JSON object", method, path, rec.Code, rec.Body)
				}
				return rec.Code, out
			}
			cases := []struct {
				method, path, body string
				status             int
				says               string
			}{
				{"POST", "/api/v1/admin/storage/bulk", `{"direction":"offload"}`, http.StatusConflict, "Default Storage is local"},
				{"POST", "/api/v1/admin/storage/bulk", `{"direction":"offload","dry_run":true}`, http.StatusConflict, "choose a provider as Default Storage"},
				{"POST", "/api/v1/admin/storage/bulk", `{"direction":"sideways"}`, http.StatusBadRequest, `direction "sideways"`},
				{"POST", "/api/v1/admin/storage/bulk", `{"direction":"local"}`, http.StatusBadRequest, "needs provider"},
				{"POST", "/api/v1/admin/storage/bulk", `{"direction":"local","provider":"cloudflare-r2"}`, http.StatusConflict, "not installed"},
				{"POST", "/api/v1/admin/storage/bulk", `not json`, http.StatusBadRequest, "JSON object"},
				{"GET", "/api/v1/admin/storage/bulk/abc", "", http.StatusBadRequest, "positive integer"},
				{"GET", "/api/v1/admin/storage/bulk/99", "", http.StatusNotFound, "bulk run 99"},
				{"POST", "/api/v1/admin/storage/bulk/99/pause", "", http.StatusNotFound, "bulk run 99"},
				{"POST", "/api/v1/admin/storage/bulk/99/resume", "", http.StatusNotFound, "bulk run 99"},
				{"POST", "/api/v1/admin/storage/bulk/99/cancel", "", http.StatusNotFound, "bulk run 99"},
			}
			for _, c := range cases {
				code, out := call(c.method, c.path, c.body)
				msg, _ := out["error"].(string)
				if code != c.status || !strings.Contains(msg, c.says) {
					t.Errorf("%s %s %s: %d %v; want %d with an error saying %q", c.method, c.path, c.body, code, out, c.status, c.says)
				}
			}
			code, plan := call("POST", "/api/v1/admin/storage/bulk", `{"direction":"local","provider":"cloudflare-r2","dry_run":true}`)
			if code != http.StatusOK || plan["provider"] != "cloudflare-r2" || plan["rate"] != nil || plan["note"] == "" {
				t.Errorf("bring-back dry run: %d %v", code, plan)
			}
			if total, _ := plan["total"].(map[string]any); total["results"] != float64(0) || total["bytes"] != float64(0) {
				t.Errorf("bring-back dry run total: %v", plan["total"])
			}
			code, runs := call("GET", "/api/v1/admin/storage/bulk", "")
			if list, ok := runs["runs"].([]any); code != http.StatusOK || !ok || len(list) != 0 {
				t.Errorf("GET bulk runs: %d %v", code, runs)
			}
		})
	}
}
