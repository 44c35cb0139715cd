package app_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/internal/faultproxy"
)

// answer is one HTTP exchange: status, Retry-After, body, how long it took,
// or the client's error.
type answer struct {
	code       int
	retryAfter string
	body       string
	took       time.Duration
	err        error
}

func (a answer) String() string {
	if a.err != nil {
		return fmt.Sprintf("no answer after %v: %v", a.took.Round(time.Millisecond), a.err)
	}
	return fmt.Sprintf("%d (Retry-After %q) after %v: %s", a.code, a.retryAfter, a.took.Round(time.Millisecond), strings.TrimSpace(a.body))
}

// patient is a client that gives up after 20 s, so a request the host never
// answers fails the test instead of hanging it.
var patient = &http.Client{Timeout: 20 * time.Second}

// send runs one request with the service token (unless hdr sets another).
func (h *trustHost) send(method, path, contentType string, body io.Reader, hdr ...string) answer {
	req, _ := http.NewRequest(method, h.srv.URL+path, body)
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	start := time.Now()
	resp, err := patient.Do(req)
	if err != nil {
		return answer{took: time.Since(start), err: err}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(data), took: time.Since(start)}
}

// postPNG finalizes a small PNG through the API.
func (h *trustHost) postPNG(hdr ...string) answer {
	ct, body := multipartBody(pngForm()...)
	return h.send("POST", "/api/v1/results", ct, body, hdr...)
}

// proxied puts a fault proxy in front of the PostgreSQL of dsn and returns
// the proxy and a DSN that goes through it.
func proxied(t *testing.T, dsn string) (*faultproxy.Proxy, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	u.Host = p.Addr()
	return p, u.String()
}

// wantUnavailable checks a 503 with Retry-After whose message names the
// database, answered within limit.
func wantUnavailable(t *testing.T, what string, a answer, limit time.Duration) {
	t.Helper()
	if a.err != nil || a.code != http.StatusServiceUnavailable || a.retryAfter == "" ||
		!strings.Contains(a.body, "database") || a.took > limit {
		t.Errorf("%s: %v; want 503 with Retry-After naming the database within %v", what, a, limit)
	}
}

// TestDatabaseBlackholed: finding 7 — with PostgreSQL blackholed, API
// requests and /healthz hung (no connect or statement timeouts, /healthz
// pinged with an unbounded context). Now requests fail within their bound
// with 503 and Retry-After, /healthz answers in under a second, and all
// works again once the database is back.
func TestDatabaseBlackholed(t *testing.T) {
	var proxy *faultproxy.Proxy
	h := startTrustHost(t, dbmigrate.Postgres, func(c *app.Config) { proxy, c.DB = proxied(t, c.DB) })
	t.Cleanup(func() { proxy.SetMode(faultproxy.Pass) }) // before the host closes
	first := h.postPNG()
	if first.code != http.StatusCreated {
		t.Fatalf("POST before the fault: %v", first)
	}
	var res resultBody
	json.Unmarshal([]byte(first.body), &res)

	proxy.SetMode(faultproxy.Blackhole)
	blackholed := time.Now()
	var wg sync.WaitGroup
	answers := map[string]*answer{"POST": {}, "GET": {}, "list": {}, "healthz": {}, "healthz again": {}}
	run := func(name string, f func() answer) {
		wg.Add(1)
		go func() { defer wg.Done(); *answers[name] = f() }()
	}
	run("POST", func() answer { return h.postPNG() })
	run("GET", func() answer { return h.send("GET", "/api/v1/results/"+res.ID, "", nil) })
	run("list", func() answer { return h.send("GET", "/api/v1/results", "", nil) })
	run("healthz", func() answer { return h.send("GET", "/healthz", "", nil) })
	wg.Wait()
	// /healthz again while the requests above still hold pool connections.
	run("healthz again", func() answer { return h.send("GET", "/healthz", "", nil) })
	wg.Wait()
	for name, a := range answers {
		t.Logf("%s while blackholed: %v", name, a)
	}
	for _, name := range []string{"POST", "GET", "list"} {
		wantUnavailable(t, name+" while the database is blackholed", *answers[name], 15*time.Second)
	}
	for _, name := range []string{"healthz", "healthz again"} {
		a := *answers[name]
		if a.err != nil || a.code != http.StatusServiceUnavailable || !strings.Contains(a.body, "database unreachable") ||
			strings.Contains(a.body, "disk") || a.took >= time.Second {
			t.Errorf("/healthz (%s) while the database is blackholed: %v; want 503 naming the database (only) in < 1s", name, a)
		}
	}
	// Keep the fault for 20 s in all, asking all along: every answer stays
	// bounded, /healthz under a second.
	rounds := 0
	for time.Since(blackholed) < 20*time.Second {
		rounds++
		if a := h.send("GET", "/healthz", "", nil); a.err != nil || a.code != http.StatusServiceUnavailable || a.took >= time.Second {
			t.Errorf("/healthz %v into the blackhole: %v; want 503 in < 1s", time.Since(blackholed).Round(time.Second), a)
		}
		wantUnavailable(t, fmt.Sprintf("POST %v into the blackhole", time.Since(blackholed).Round(time.Second)), h.postPNG(), 10*time.Second)
	}
	t.Logf("database blackholed for %v; %d rounds of /healthz and POST, all bounded", time.Since(blackholed).Round(time.Second), rounds)
	proxy.SetMode(faultproxy.Pass)
	var last answer
	waitFor(t, 20*time.Second, "requests to succeed once the database is back", func() bool {
		last = h.postPNG()
		return last.code == http.StatusCreated
	})
	if a := h.send("GET", "/api/v1/results/"+res.ID, "", nil); a.code != http.StatusOK {
		t.Errorf("GET once the database is back: %v", a)
	}
	if a := h.send("GET", "/healthz", "", nil); a.code != http.StatusOK {
		t.Errorf("/healthz once the database is back: %v", a)
	}
}

// TestDatabaseLockedAnswers503: finding 8 — a database that cannot take a
// write (SQLite locked by another writer; a PostgreSQL table locked) made
// POST answer 500 after SQLite's busy timeout, or hang on PostgreSQL. Now
// it is 503 with Retry-After naming the database, within the bound.
func TestDatabaseLockedAnswers503(t *testing.T) {
	for _, d := range []dbmigrate.Dialect{dbmigrate.SQLite, dbmigrate.Postgres} {
		t.Run(string(d), func(t *testing.T) {
			var dsn string
			h := startTrustHost(t, d, func(c *app.Config) { dsn = c.DB })
			if a := h.postPNG(); a.code != http.StatusCreated {
				t.Fatalf("POST before the lock: %v", a)
			}
			other, _, err := dbmigrate.Open(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			tx, err := other.BeginTx(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			lock := "UPDATE results SET updated_at = updated_at" // SQLite: BEGIN IMMEDIATE took the write lock
			if d == dbmigrate.Postgres {
				lock = "LOCK TABLE results IN ACCESS EXCLUSIVE MODE"
			}
			if _, err := tx.Exec(lock); err != nil {
				t.Fatal(err)
			}
			wantUnavailable(t, "POST while the database is locked", h.postPNG(), 15*time.Second)
			if d == dbmigrate.Postgres { // SQLite's readers are not blocked by a writer
				wantUnavailable(t, "list while the table is locked", h.send("GET", "/api/v1/results", "", nil), 15*time.Second)
			}
			if err := tx.Rollback(); err != nil && err != sql.ErrTxDone {
				t.Fatal(err)
			}
			if a := h.postPNG(); a.code != http.StatusCreated {
				t.Fatalf("POST after the lock: %v", a)
			}
		})
	}
}
