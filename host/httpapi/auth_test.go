package httpapi

import (
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/magicads/r2storage/host/auth"
)

// TestAdminRoutesAreListed: every admin pattern in this file's source is
// registered through handleAdmin, so AdminRoutes (which the app's auth tests
// walk) is complete and no admin call skips the auth check.
func TestAdminRoutesAreListed(t *testing.T) {
	src, err := os.ReadFile("httpapi.go")
	if err != nil {
		t.Fatal(err)
	}
	a := New(nil, nil, nil, Options{})
	routes := a.AdminRoutes()
	found := regexp.MustCompile(`"([A-Z]+ /(?:api/v1/admin[^"]*|metrics))"`).FindAllStringSubmatch(string(src), -1)
	if len(found) == 0 || len(found) != len(routes) {
		t.Fatalf("source has %d admin patterns, AdminRoutes %d", len(found), len(routes))
	}
	for _, m := range found {
		if !slices.Contains(routes, m[1]) {
			t.Errorf("%s is not registered through handleAdmin", m[1])
		}
	}
	if regexp.MustCompile(`mux\.Handle(Func)?\("[A-Z]* ?/api/v1/admin`).Match(src) {
		t.Error("an admin route is registered on the mux directly")
	}
	// Without credentials every one of them answers 401 before any handler runs.
	for _, p := range routes {
		method, path, _ := strings.Cut(p, " ")
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest(method, strings.ReplaceAll(path, "{id}", "x"), nil))
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d", p, rec.Code)
		}
	}
}

func TestFallbackAndLogin(t *testing.T) {
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })
	a := New(nil, nil, nil, Options{Auth: auth.New(auth.Options{}), Fallback: fallback})
	cases := []struct {
		method, path string
		want         int
	}{
		{"GET", "/app/admin/general", 299},
		{"GET", "/", 299},
		{"GET", "/login", 200},
		{"POST", "/logout", http.StatusSeeOther},
		{"GET", "/api/v1/nope", http.StatusNotFound},
		{"GET", "/api/v1/admin/storage", http.StatusUnauthorized},
		{"POST", "/api/v1/admin/plugins", http.StatusMethodNotAllowed},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, rec.Code, c.want)
		}
	}
	// No fallback: unknown paths are 404 as before; no Auth: no /login.
	b := New(nil, nil, nil, Options{AdminToken: "t"})
	for _, p := range []string{"/app/admin/general", "/login"} {
		rec := httptest.NewRecorder()
		b.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s without fallback: %d", p, rec.Code)
		}
	}
}

// TestResultsRoutesAreGuarded: every results pattern but the content
// capability URL is registered through handleResults, and answers 401
// without credentials before any handler runs.
func TestResultsRoutesAreGuarded(t *testing.T) {
	src, err := os.ReadFile("httpapi.go")
	if err != nil {
		t.Fatal(err)
	}
	a := New(nil, nil, nil, Options{ServiceToken: "svc"})
	routes := a.ResultsRoutes()
	found := regexp.MustCompile(`"([A-Z]+ /api/v1/results[^"]*)"`).FindAllStringSubmatch(string(src), -1)
	open := "GET /api/v1/results/{id}/content"
	if len(found) != len(routes)+1 {
		t.Fatalf("source has %d results patterns, ResultsRoutes %d (+1 open)", len(found), len(routes))
	}
	for _, m := range found {
		if m[1] != open && !slices.Contains(routes, m[1]) {
			t.Errorf("%s is not registered through handleResults", m[1])
		}
	}
	for _, p := range routes {
		method, path, _ := strings.Cut(p, " ")
		for _, hdr := range []string{"", "Bearer wrong", "Bearer svc2", "Basic c3Zj"} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(method, strings.ReplaceAll(path, "{id}", "x"), nil)
			if hdr != "" {
				req.Header.Set("Authorization", hdr)
			}
			a.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s with %q: %d %v", p, hdr, rec.Code, rec.Header())
			}
		}
	}
}
