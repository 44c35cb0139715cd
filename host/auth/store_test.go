package auth

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/testdb"
)

// forEachStore runs fn once per session store: memory (no DB), SQLite and
// PostgreSQL; st points an Auth's Options at a fresh store of that kind,
// as each New without a DB has one.
func forEachStore(t *testing.T, fn func(t *testing.T, st func(*Options))) {
	t.Run("memory", func(t *testing.T) { fn(t, func(*Options) {}) })
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			fn(t, func(o *Options) { o.DB = testdb.Open(t, d).DB })
		})
	}
}

// forEachDB runs fn once per dialect with a fresh host database.
func forEachDB(t *testing.T, fn func(t *testing.T, db *testdb.DB)) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) { fn(t, testdb.Open(t, d)) })
	}
}

// secondPool opens another connection pool on db's database: another node.
func secondPool(t *testing.T, db *testdb.DB) *sql.DB {
	t.Helper()
	other, _, err := dbmigrate.Open(context.Background(), db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	return other
}

// sessionCount is how many sessions a's store holds.
func (f *fixture) sessionCount() int {
	f.t.Helper()
	switch s := f.auth.store.(type) {
	case memStore:
		return s.sessions.len()
	case *dbStore:
		var n int
		if err := s.db.QueryRow(`SELECT COUNT(*) FROM admin_sessions`).Scan(&n); err != nil {
			f.t.Fatal(err)
		}
		return n
	}
	f.t.Fatalf("unknown store %T", f.auth.store)
	return 0
}

// withCookie is a client of f holding the session cookie sid.
func (f *fixture) withCookie(sid string) *http.Client {
	c := f.client()
	u, _ := url.Parse(f.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: SessionCookie, Value: sid}})
	return c
}

// sessionID is the session id in c's cookie jar for f.
func (f *fixture) sessionID(c *http.Client) string {
	u, _ := url.Parse(f.srv.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == SessionCookie {
			return ck.Value
		}
	}
	f.t.Fatal("no session cookie")
	return ""
}

// TestSessionOnAnotherNode: two Auths on one database (two nodes) accept
// each other's sessions, CSRF token included; a sign-out on one ends the
// session on the other.
func TestSessionOnAnotherNode(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *testdb.DB) {
		a := newFixture(t, false, func(o *Options) { o.DB = db.DB })
		b := newFixture(t, false, func(o *Options) { o.DB = secondPool(t, db); o.Now = a.clock.Now })
		ca, csrf := a.signIn()
		sid := a.sessionID(ca)
		cb := b.withCookie(sid)
		if r := b.do(cb, "GET", "/api/x", nil); r.status != 200 || !strings.Contains(r.body, `"user":"admin"`) {
			t.Fatalf("node A's session on node B: %d %s", r.status, r.body)
		}
		if r := b.do(cb, "POST", "/api/x", nil, CSRFHeader, csrf); r.status != 200 {
			t.Fatalf("node A's session on node B, POST with its CSRF token: %d %s", r.status, r.body)
		}
		if r := b.do(cb, "POST", "/api/x", nil, CSRFHeader, csrf+"x"); r.status != http.StatusForbidden {
			t.Fatalf("node B took a wrong CSRF token: %d", r.status)
		}
		if r := b.do(cb, "POST", "/logout", nil, CSRFHeader, csrf); r.status != http.StatusSeeOther {
			t.Fatalf("logout on node B: %d", r.status)
		}
		if r := a.do(ca, "GET", "/api/x", nil); r.status != http.StatusUnauthorized {
			t.Fatalf("signed out on node B, node A still accepts it: %d", r.status)
		}
	})
}

// TestSessionSurvivesNewAuth: a new Auth on the same database (a restart)
// keeps the sessions.
func TestSessionSurvivesNewAuth(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *testdb.DB) {
		a := newFixture(t, false, func(o *Options) { o.DB = db.DB })
		c, csrf := a.signIn()
		sid := a.sessionID(c)
		b := newFixture(t, false, func(o *Options) { o.DB = db.DB; o.Now = a.clock.Now })
		if r := b.do(b.withCookie(sid), "PUT", "/api/x", nil, CSRFHeader, csrf); r.status != 200 {
			t.Fatalf("the session after a restart: %d %s", r.status, r.body)
		}
	})
}

// TestStoredSessionHoldsNoSecret: the database row holds neither the
// session id nor its CSRF token.
func TestStoredSessionHoldsNoSecret(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *testdb.DB) {
		f := newFixture(t, false, func(o *Options) { o.DB = db.DB })
		c, csrf := f.signIn()
		sid := f.sessionID(c)
		var key, user, role string
		var created, seen int64
		if err := db.QueryRow(`SELECT id_hash, user_name, role, created_ms, last_seen_ms FROM admin_sessions`).Scan(&key, &user, &role, &created, &seen); err != nil {
			t.Fatal(err)
		}
		row := strings.Join([]string{key, user, role}, " ")
		if strings.Contains(row, sid) || strings.Contains(row, csrf) || key != idHash(sid) || user != AdminUser || role != RoleAdmin {
			t.Fatalf("stored row %q (the id or CSRF token in clear, or not the id's hash)", row)
		}
		if created != f.clock.Now().UnixMilli() || seen != created {
			t.Fatalf("created %d, last seen %d; want %d", created, seen, f.clock.Now().UnixMilli())
		}
	})
}

// TestLastSeenWrittenAtMostOncePerMinute: using a session writes its
// last use to the database only when the stored one is a minute old.
func TestLastSeenWrittenAtMostOncePerMinute(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *testdb.DB) {
		f := newFixture(t, false, func(o *Options) { o.DB = db.DB })
		c, _ := f.signIn()
		start := f.clock.Now().UnixMilli()
		seen := func() int64 {
			var v int64
			if err := db.QueryRow(`SELECT last_seen_ms FROM admin_sessions`).Scan(&v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		f.clock.Advance(30 * time.Second)
		if r := f.do(c, "GET", "/api/x", nil); r.status != 200 {
			t.Fatalf("GET: %d", r.status)
		}
		if got := seen(); got != start {
			t.Fatalf("a use 30 s after the last write wrote last_seen_ms: %d, want %d", got, start)
		}
		f.clock.Advance(31 * time.Second)
		if r := f.do(c, "GET", "/api/x", nil); r.status != 200 {
			t.Fatalf("GET: %d", r.status)
		}
		if got, want := seen(), f.clock.Now().UnixMilli(); got != want {
			t.Fatalf("a use 61 s after the last write: last_seen_ms %d, want %d", got, want)
		}
	})
}

// TestLoginLimitSharedByNodes: failures on one node count on the other.
func TestLoginLimitSharedByNodes(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *testdb.DB) {
		c := plugintest.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		a, _ := newLimitAuth(t, c, func(o *Options) { o.DB = db.DB })
		b, _ := newLimitAuth(t, c, func(o *Options) { o.DB = secondPool(t, db) })
		for i := range 5 {
			if r := postLogin(t, a, "192.0.2.50:1", AdminUser, "guess"); r.StatusCode != http.StatusSeeOther {
				t.Fatalf("failure %d on node A: %d", i+1, r.StatusCode)
			}
		}
		r := postLogin(t, b, "192.0.2.50:2", AdminUser, testPassword)
		if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "60" {
			t.Fatalf("the 6th attempt, on node B: %d Retry-After=%q; want 429, 60", r.StatusCode, r.Header.Get("Retry-After"))
		}
		c.Advance(time.Minute)
		if r := postLogin(t, b, "192.0.2.50:3", AdminUser, testPassword); !signedIn(r) {
			t.Fatalf("after the window, on node B: %d", r.StatusCode)
		}
		// The success on B reset the counters for A too.
		for i := range 5 {
			if r := postLogin(t, a, "192.0.2.50:4", AdminUser, "guess"); r.StatusCode != http.StatusSeeOther {
				t.Fatalf("failure %d on node A after the success on B: %d", i+1, r.StatusCode)
			}
		}
	})
}

// TestLimitConcurrentNodes: two nodes counting the same keys at once
// never let more attempts through than the limit.
func TestLimitConcurrentNodes(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *testdb.DB) {
		now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		nodes := []*dbStore{
			{db: db.DB, idle: time.Hour, maxAge: time.Hour, window: time.Minute, maxSessions: 100, maxKeys: 100},
			{db: secondPool(t, db), idle: time.Hour, maxAge: time.Hour, window: time.Minute, maxSessions: 100, maxKeys: 100},
		}
		const limit, perNode = 7, 20
		var passed atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 2*perNode)
		for _, s := range nodes {
			for range perNode {
				wg.Go(func() {
					_, ok, err := s.take(context.Background(), now, check{"ip:198.51.100.1", 2 * limit}, check{"ip:198.51.100.1|user:admin", limit})
					if err != nil {
						errs <- err
						return
					}
					if ok {
						passed.Add(1)
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("take: %v", err)
		}
		if n := passed.Load(); n != limit {
			t.Fatalf("%d attempts passed on two nodes, limit %d", n, limit)
		}
		var n int
		if err := db.QueryRow(`SELECT attempts FROM login_attempts WHERE limit_key = 'ip:198.51.100.1'`).Scan(&n); err != nil || n != limit {
			t.Fatalf("the address counted %d attempts (%v), want %d: refused attempts must record nothing", n, err, limit)
		}
	})
}

// TestDBStoreIsBounded: the database store keeps at most MaxSessions
// sessions (the least recently used end) and MaxLimitKeys windows.
func TestDBStoreIsBounded(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *testdb.DB) {
		s := &dbStore{db: db.DB, idle: time.Hour, maxAge: 24 * time.Hour, window: time.Minute, maxSessions: 3, maxKeys: 10}
		ctx := context.Background()
		now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		var ids []string
		for i := range 5 {
			id, _, err := s.createSession(ctx, AdminUser, RoleAdmin, now.Add(time.Duration(i)*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM admin_sessions`).Scan(&n); err != nil || n != 3 {
			t.Fatalf("%d sessions (%v), bound 3", n, err)
		}
		if _, ok, _ := s.session(ctx, ids[0], now.Add(10*time.Second)); ok {
			t.Fatal("the least recently used session survived")
		}
		if _, ok, _ := s.session(ctx, ids[4], now.Add(10*time.Second)); !ok {
			t.Fatal("the newest session was dropped")
		}
		for i := range 30 {
			if _, _, err := s.take(ctx, now.Add(time.Duration(i)*time.Millisecond), check{"ip:" + itoa(i), 5}); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.QueryRow(`SELECT COUNT(*) FROM login_attempts`).Scan(&n); err != nil || n > 10 {
			t.Fatalf("%d sign-in windows (%v), bound 10", n, err)
		}
		// Expired rows are swept: sessions as one starts, windows as one is taken.
		later := now.Add(25 * time.Hour)
		if _, _, err := s.createSession(ctx, AdminUser, RoleAdmin, later); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.take(ctx, later, check{"ip:new", 5}); err != nil {
			t.Fatal(err)
		}
		var sessions, windows int
		db.QueryRow(`SELECT COUNT(*) FROM admin_sessions`).Scan(&sessions)
		db.QueryRow(`SELECT COUNT(*) FROM login_attempts`).Scan(&windows)
		if sessions != 1 || windows != 1 {
			t.Fatalf("after everything expired and one more of each: %d sessions, %d windows; want 1, 1", sessions, windows)
		}
	})
}

// generatedPassword is the password LoadPassword or LoadSharedPassword
// wrote to out, or "".
func generatedPassword(out string) string {
	m := regexp.MustCompile(`(?m)^admin password: (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestSharedPasswordRace: nodes starting together on one database without
// MAGICADS_ADMIN_PASSWORD keep exactly one generated hash; only the node
// that stored it prints the password, and every node accepts it.
func TestSharedPasswordRace(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *testdb.DB) {
		const n = 4
		outs := make([]bytes.Buffer, n)
		ps := make([]*Password, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			pool, dir := secondPool(t, db), t.TempDir()
			wg.Go(func() { ps[i], errs[i] = LoadSharedPassword(context.Background(), pool, "", dir, &outs[i], nil) })
		}
		wg.Wait()
		plain, printed := "", 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("node %d: %v", i, errs[i])
			}
			if p := generatedPassword(outs[i].String()); p != "" {
				plain, printed = p, printed+1
			}
		}
		if printed != 1 {
			t.Fatalf("%d nodes printed a generated password, want 1", printed)
		}
		for i := range n {
			if !ps[i].Verify(plain) || ps[i].Verify(plain+"x") {
				t.Fatalf("node %d does not verify the printed password", i)
			}
		}
		var rows int
		var hash string
		if err := db.QueryRow(`SELECT COUNT(*), MAX(hash) FROM admin_password`).Scan(&rows, &hash); err != nil || rows != 1 {
			t.Fatalf("%d stored hashes (%v), want 1", rows, err)
		}
		if strings.Contains(hash, plain) || !strings.HasPrefix(hash, "pbkdf2-sha256$600000$") {
			t.Fatalf("the stored hash is %q", hash)
		}
		// A later node: the same password, nothing printed, a hint logged.
		var out, logs bytes.Buffer
		p, err := LoadSharedPassword(context.Background(), db.DB, "", t.TempDir(), &out, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil || out.Len() != 0 || !p.Verify(plain) {
			t.Fatalf("a later node: %v, printed %q", err, out.String())
		}
		if !strings.Contains(logs.String(), "MAGICADS_ADMIN_PASSWORD") || strings.Contains(logs.String(), plain) {
			t.Fatalf("logs:\n%s", logs.String())
		}
		// MAGICADS_ADMIN_PASSWORD wins and leaves the table alone.
		p, err = LoadSharedPassword(context.Background(), db.DB, "from-the-environment", t.TempDir(), &out, nil)
		if err != nil || out.Len() != 0 || !p.Verify("from-the-environment") || p.Verify(plain) {
			t.Fatalf("env password: %v", err)
		}
		var again string
		if err := db.QueryRow(`SELECT hash FROM admin_password`).Scan(&again); err != nil || again != hash {
			t.Fatalf("the env password changed the stored hash (%v)", err)
		}
		// A damaged row is named, not silently replaced.
		if _, err := db.Exec(`UPDATE admin_password SET hash = 'garbage'`); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadSharedPassword(context.Background(), db.DB, "", t.TempDir(), &out, nil); err == nil || !strings.Contains(err.Error(), "admin_password") || out.Len() != 0 {
			t.Fatalf("damaged row: %v", err)
		}
	})
}

// TestSharedPasswordAdoptsOldFile: the admin.pw an older version left in
// a node's data dir moves into the database on the first start (its
// password keeps working, nothing is printed, the file is removed); a
// second node's different admin.pw loses to it.
func TestSharedPasswordAdoptsOldFile(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *testdb.DB) {
		older := func() (dir, plain string) {
			dir = t.TempDir()
			var out bytes.Buffer
			if _, err := LoadPassword("", dir, &out, nil); err != nil {
				t.Fatal(err)
			}
			return dir, generatedPassword(out.String())
		}
		dirA, plainA := older()
		dirB, plainB := older()
		var out, logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		p, err := LoadSharedPassword(context.Background(), db.DB, "", dirA, &out, log)
		if err != nil || out.Len() != 0 || !p.Verify(plainA) {
			t.Fatalf("node A with an old admin.pw: %v, printed %q", err, out.String())
		}
		if _, err := os.Stat(filepath.Join(dirA, PasswordFile)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("node A's admin.pw is still there: %v", err)
		}
		p, err = LoadSharedPassword(context.Background(), secondPool(t, db), "", dirB, &out, log)
		if err != nil || out.Len() != 0 || !p.Verify(plainA) || p.Verify(plainB) {
			t.Fatalf("node B with another old admin.pw: %v, printed %q", err, out.String())
		}
		if _, err := os.Stat(filepath.Join(dirB, PasswordFile)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("node B's admin.pw is still there: %v", err)
		}
		if strings.Contains(logs.String(), plainA) || strings.Contains(logs.String(), plainB) {
			t.Fatalf("a password is in the log:\n%s", logs.String())
		}
	})
}

// TestLoginDelaySharedByNodes: failures for the admin name on one node
// delay its sign-ins on the other; the right password still signs in.
func TestLoginDelaySharedByNodes(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *testdb.DB) {
		c := plugintest.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		a, _ := newLimitAuth(t, c, func(o *Options) { o.DB = db.DB })
		b, bw := newLimitAuth(t, c, func(o *Options) { o.DB = secondPool(t, db) })
		for i := range 7 {
			postLogin(t, a, "10.3.0."+itoa(i+1)+":1", AdminUser, "guess")
		}
		if r := postLogin(t, b, "192.0.2.20:1", AdminUser, testPassword); !signedIn(r) {
			t.Fatalf("the right password on node B: %d", r.StatusCode)
		}
		// 7 failures: the score was 7, two over the 5 free ones: 250ms << 2.
		if d := bw.take(); d != time.Second {
			t.Fatalf("node B waited %v after 7 failures on node A, want 1s", d)
		}
	})
}

// TestDatabaseDownAnswers503: while the database cannot be reached,
// session checks and sign-ins answer 503 with Retry-After and a message
// that names the cause, never 401 (which would send the admin to sign in
// again) and never a secret; the cause goes to the log.
func TestDatabaseDownAnswers503(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *testdb.DB) {
		pool := secondPool(t, db)
		f := newFixture(t, false, func(o *Options) { o.DB = pool })
		c, csrf := f.signIn()
		pool.Close()
		for _, r := range []reply{
			f.do(c, "GET", "/api/x", nil),
			f.do(c, "POST", "/api/x", nil, CSRFHeader, csrf),
			f.do(c, "GET", "/page", nil),
			f.do(c, "POST", "/logout", nil, CSRFHeader, csrf),
			f.login(f.client(), AdminUser, testPassword, ""),
			f.login(f.client(), AdminUser, testPassword, "", "Accept", "application/json"),
		} {
			if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "cannot reach its database") {
				t.Errorf("%s %s: %d Retry-After=%q %s", r.resp.Request.Method, r.resp.Request.URL.Path, r.status, r.header.Get("Retry-After"), r.body)
			}
			if strings.Contains(r.body, csrf) || strings.Contains(r.body, "sql:") {
				t.Errorf("%s: the answer holds a secret or the database error: %s", r.resp.Request.URL.Path, r.body)
			}
		}
		if !strings.Contains(f.logs.String(), "database is closed") {
			t.Fatalf("the cause is not logged:\n%s", f.logs.String())
		}
	})
}
