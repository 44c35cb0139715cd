package app_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/host/auth"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/internal/testdb"
)

// nodeConfig is a host node on dsn ("" for SQLite in dataDir) with the
// APP_KEY key and the console password.
func nodeConfig(dataDir, dsn, key string) app.Config {
	return app.Config{DataDir: dataDir, DB: dsn, AppKey: key, AdminToken: adminToken, AdminPassword: consolePassword, AdminPasswordOut: io.Discard}
}

// useSession sends the session cookie sid to h: a GET of an admin API
// call, then a PUT with the CSRF token; it returns both statuses.
func useSession(h *authHost, sid, csrf string) (get, put int) {
	h.t.Helper()
	c := h.client()
	u, _ := url.Parse(h.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: auth.SessionCookie, Value: sid}})
	get, _ = h.call(c, "GET", "/api/v1/admin/storage", "")
	put, _ = h.call(c, "PUT", "/api/v1/admin/storage", `{"default":"local"}`, auth.CSRFHeader, csrf)
	return get, put
}

// TestSessionWorksOnEveryNode: a session started on one node is accepted
// by another node on the same PostgreSQL database (its own data dir),
// CSRF included, and a sign-out on that node ends it on the first.
func TestSessionWorksOnEveryNode(t *testing.T) {
	dsn, key := testdb.Open(t, dbmigrate.Postgres).DSN, appKey()
	a := startAppHost(t, nodeConfig(t.TempDir(), dsn, key))
	b := startAppHost(t, nodeConfig(t.TempDir(), dsn, key))
	_, csrf, sid := a.signIn(consolePassword)
	if get, put := useSession(b, sid, csrf); get != http.StatusOK || put != http.StatusOK {
		t.Fatalf("node A's session on node B: GET %d, PUT with its CSRF token %d; want 200, 200", get, put)
	}
	if get, put := useSession(b, sid, "wrong"); get != http.StatusOK || put != http.StatusForbidden {
		t.Fatalf("node A's session on node B with a wrong CSRF token: GET %d, PUT %d; want 200, 403", get, put)
	}
	c := b.client()
	u, _ := url.Parse(b.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: auth.SessionCookie, Value: sid}})
	if code, _ := b.call(c, "GET", "/app/admin/general", ""); code != http.StatusOK {
		t.Fatalf("node A's session on node B's console page: %d, want 200", code)
	}
	if code, _ := b.call(c, "POST", "/logout", "", auth.CSRFHeader, csrf); code != http.StatusSeeOther {
		t.Fatalf("logout on node B: %d", code)
	}
	if get, _ := useSession(a, sid, csrf); get != http.StatusUnauthorized {
		t.Fatalf("the session signed out on node B still works on node A: %d", get)
	}
}

// TestSessionSurvivesRestart: a host restarted on the same data dir and
// database keeps its sessions.
func TestSessionSurvivesRestart(t *testing.T) {
	for _, dialect := range testdb.Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			dir, dsn, key := t.TempDir(), "", appKey()
			if dialect == dbmigrate.Postgres {
				dsn = testdb.Open(t, dialect).DSN
			}
			h := startAppHost(t, nodeConfig(dir, dsn, key))
			_, csrf, sid := h.signIn(consolePassword)
			h.srv.Close()
			if err := h.app.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			h2 := startAppHost(t, nodeConfig(dir, dsn, key))
			if get, put := useSession(h2, sid, csrf); get != http.StatusOK || put != http.StatusOK {
				t.Fatalf("the session after a restart: GET %d, PUT %d; want 200, 200", get, put)
			}
		})
	}
}

// TestLoginLimitAcrossNodes: failed sign-ins count on every node of one
// database: after the limit's failures spread over two nodes, the next
// one on either gets 429.
func TestLoginLimitAcrossNodes(t *testing.T) {
	dsn, key := testdb.Open(t, dbmigrate.Postgres).DSN, appKey()
	nodes := []*authHost{startAppHost(t, nodeConfig(t.TempDir(), dsn, key)), startAppHost(t, nodeConfig(t.TempDir(), dsn, key))}
	post := func(h *authHost) int {
		resp, err := h.client().PostForm(h.srv.URL+"/login", url.Values{"username": {"admin"}, "password": {"wrong password"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 5 { // the default limit: 5 failures a minute per address and name
		if code := post(nodes[i%2]); code != http.StatusSeeOther {
			t.Fatalf("failure %d on node %d: %d, want 303", i+1, i%2, code)
		}
	}
	for i, h := range nodes {
		if code := post(h); code != http.StatusTooManyRequests {
			t.Fatalf("the 6th failure on node %d: %d, want 429", i, code)
		}
	}
}

// TestSharedGeneratedPassword: nodes started together on one PostgreSQL
// database without MAGICADS_ADMIN_PASSWORD share one generated password:
// exactly one prints it, and it signs in on every node.
func TestSharedGeneratedPassword(t *testing.T) {
	dsn, key := testdb.Open(t, dbmigrate.Postgres).DSN, appKey()
	const n = 3
	outs := make([]bytes.Buffer, n)
	apps := make([]*app.App, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			cfg := nodeConfig(t.TempDir(), dsn, key)
			cfg.AdminPassword, cfg.AdminPasswordOut = "", &outs[i]
			apps[i], errs[i] = app.New(context.Background(), cfg)
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			apps[i].Close(ctx)
		})
	}
	re := regexp.MustCompile(`(?m)^admin password: (\S{20,})$`)
	var plain string
	printed := 0
	for i := range n {
		if m := re.FindStringSubmatch(outs[i].String()); m != nil {
			printed++
			plain = m[1]
		}
	}
	if printed != 1 {
		t.Fatalf("%d nodes printed a generated password, want exactly 1", printed)
	}
	for i := range n {
		req := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"username": {"admin"}, "password": {plain}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		apps[i].Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != auth.DefaultNext {
			t.Fatalf("node %d does not accept the printed password: %d %q", i, rec.Code, rec.Header().Get("Location"))
		}
	}
	// A later node reads it too and prints nothing.
	var out bytes.Buffer
	cfg := nodeConfig(t.TempDir(), dsn, key)
	cfg.AdminPassword, cfg.AdminPasswordOut = "", &out
	h := startAppHost(t, cfg)
	if out.Len() != 0 {
		t.Fatalf("a later node printed: %q", strings.TrimSpace(out.String()))
	}
	h.signIn(plain)
}
