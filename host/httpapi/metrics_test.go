package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestMetricsRoute: GET /metrics is an admin call serving Options.Metrics,
// 404 {"error"} when the host serves none.
func TestMetricsRoute(t *testing.T) {
	get := func(a *API, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		return rec
	}
	served := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("magicads_up 1\n")) })
	a := New(nil, nil, nil, Options{AdminToken: "admin-token", Metrics: served})
	if rec := get(a, ""); rec.Code != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d", rec.Code)
	}
	if rec := get(a, "admin-token"); rec.Code != http.StatusOK || rec.Body.String() != "magicads_up 1\n" {
		t.Fatalf("with the admin token: %d %q", rec.Code, rec.Body.String())
	}
	none := New(nil, nil, nil, Options{AdminToken: "admin-token"})
	if rec := get(none, "admin-token"); rec.Code != http.StatusNotFound || !strings.HasPrefix(rec.Body.String(), `{"error":`) {
		t.Fatalf("without metrics: %d %q", rec.Code, rec.Body.String())
	}
}
