package auth

import (
	"bytes"
	"encoding/json"
	"github.com/magicads/r2storage/internal/plugintest"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	testPassword = "correct horse battery staple"
	testToken    = "automation-token-0123456789"
)

// fixture is an Auth behind a test server: /login, /logout, /api/x (Require)
// and /page (RequirePage). Every response body and log line is recorded.
type fixture struct {
	t      *testing.T
	auth   *Auth
	srv    *httptest.Server
	clock  *plugintest.Clock
	logs   *plugintest.Logs
	bodies *plugintest.Logs
}

func newFixture(t *testing.T, tls bool, tweak ...func(*Options)) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: plugintest.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)), logs: &plugintest.Logs{}, bodies: &plugintest.Logs{}}
	opts := Options{
		Password: NewPassword(testPassword), Token: testToken,
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    f.clock.Now,
		// Tests name their client IP in a header, to act as several clients.
		ClientIP: func(r *http.Request) string {
			if ip := r.Header.Get("X-Test-IP"); ip != "" {
				return ip
			}
			return remoteIP(r)
		},
	}
	for _, fn := range tweak {
		fn(&opts)
	}
	f.auth = New(opts)
	f.auth.wait = (&waits{}).wait // sign-in delays are checked in limit_test.go, not slept
	mux := http.NewServeMux()
	mux.Handle("/login", f.auth.Handler())
	mux.Handle("/logout", f.auth.Handler())
	whoami := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := IdentityFrom(r.Context())
		if !ok {
			http.Error(w, "no identity", 500)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"user": id.User, "role": id.Role, "bearer": id.Bearer})
	})
	mux.Handle("/api/x", f.auth.Require(whoami))
	mux.Handle("/page", f.auth.RequirePage(whoami))
	var h http.Handler = mux
	if tls {
		f.srv = httptest.NewTLSServer(h)
	} else {
		f.srv = httptest.NewServer(h)
	}
	t.Cleanup(f.srv.Close)
	return f
}

// client has its own cookie jar and never follows redirects.
func (f *fixture) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := f.srv.Client()
	return &http.Client{Transport: c.Transport, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type reply struct {
	status int
	header http.Header
	body   string
	resp   *http.Response
}

func (f *fixture) do(c *http.Client, method, path string, body io.Reader, hdr ...string) reply {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	f.bodies.Write(data)
	return reply{resp.StatusCode, resp.Header, string(data), resp}
}

func (f *fixture) login(c *http.Client, user, password, next string, hdr ...string) reply {
	f.t.Helper()
	form := url.Values{"username": {user}, "password": {password}}
	if next != "" {
		form.Set("next", next)
	}
	return f.do(c, "POST", "/login", strings.NewReader(form.Encode()), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, hdr...)...)
}

func cookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// signIn logs a new client in and returns it with its CSRF token.
func (f *fixture) signIn() (*http.Client, string) {
	f.t.Helper()
	c := f.client()
	r := f.login(c, AdminUser, testPassword, "")
	if r.status != http.StatusSeeOther {
		f.t.Fatalf("sign-in: %d %s", r.status, r.body)
	}
	csrf := cookie(r.resp, CSRFCookie)
	if csrf == nil {
		f.t.Fatal("no CSRF cookie")
	}
	return c, csrf.Value
}

func TestLoginSetsCookies(t *testing.T) {
	forEachStore(t, func(t *testing.T, st func(*Options)) {
		for _, tls := range []bool{false, true} {
			f := newFixture(t, tls, st)
			r := f.login(f.client(), AdminUser, testPassword, "/app/results?tab=2")
			if r.status != http.StatusSeeOther || r.header.Get("Location") != "/app/results?tab=2" {
				t.Fatalf("tls=%v: %d Location=%q", tls, r.status, r.header.Get("Location"))
			}
			s, c := cookie(r.resp, SessionCookie), cookie(r.resp, CSRFCookie)
			if s == nil || c == nil {
				t.Fatalf("tls=%v: cookies %v", tls, r.resp.Cookies())
			}
			if !s.HttpOnly || s.SameSite != http.SameSiteLaxMode || s.Path != "/" || s.Secure != tls || len(s.Value) < 43 {
				t.Errorf("tls=%v: session cookie %+v", tls, s)
			}
			if c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure != tls || len(c.Value) < 43 {
				t.Errorf("tls=%v: CSRF cookie %+v", tls, c)
			}
			if c.Value == s.Value {
				t.Error("the CSRF token is the session id")
			}
			// The CSRF token is bound to the session.
			req := httptest.NewRequest("GET", "/", nil)
			req.AddCookie(s)
			if got := f.auth.CSRFToken(req); got != c.Value {
				t.Errorf("CSRFToken = %q, cookie has %q", got, c.Value)
			}
			if f.auth.CSRFToken(httptest.NewRequest("GET", "/", nil)) != "" {
				t.Error("CSRFToken without a session is not empty")
			}
		}
		// Without next: the plugins page.
		f := newFixture(t, false, st)
		if r := f.login(f.client(), AdminUser, testPassword, ""); r.header.Get("Location") != DefaultNext {
			t.Fatalf("default next: %q", r.header.Get("Location"))
		}
	})
}

func TestLoginRotatesSession(t *testing.T) {
	forEachStore(t, func(t *testing.T, st func(*Options)) {
		f := newFixture(t, false, st)
		c, _ := f.signIn()
		u, _ := url.Parse(f.srv.URL)
		old := c.Jar.Cookies(u)
		f.login(c, AdminUser, testPassword, "")
		if f.sessionCount() != 1 {
			t.Fatalf("%d sessions after signing in again; the old one must end", f.sessionCount())
		}
		stale := f.client()
		stale.Jar.SetCookies(u, old)
		if r := f.do(stale, "GET", "/api/x", nil); r.status != http.StatusUnauthorized {
			t.Fatalf("the replaced session still works: %d", r.status)
		}
	})
}

func TestLoginWrongCredentials(t *testing.T) {
	f := newFixture(t, false)
	for _, c := range []struct{ user, pw string }{{AdminUser, "wrong"}, {"root", testPassword}, {AdminUser, ""}, {"", ""}} {
		r := f.login(f.client(), c.user, c.pw, "", "X-Test-IP", "10.0.0."+c.user+"1")
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login?error=1" || len(r.resp.Cookies()) != 0 {
			t.Errorf("%q/%q: %d %q cookies=%v", c.user, c.pw, r.status, r.header.Get("Location"), r.resp.Cookies())
		}
	}
	r := f.login(f.client(), AdminUser, "wrong", "/app/results", "Accept", "application/json", "X-Test-IP", "10.0.1.1")
	var e struct{ Error string }
	if r.status != http.StatusUnauthorized || json.Unmarshal([]byte(r.body), &e) != nil || e.Error == "" {
		t.Fatalf("JSON failure: %d %s", r.status, r.body)
	}
	// A failure keeps a safe next.
	r = f.login(f.client(), AdminUser, "wrong", "/app/results", "X-Test-IP", "10.0.1.2")
	if r.header.Get("Location") != "/login?error=1&next=%2Fapp%2Fresults" {
		t.Fatalf("failure Location %q", r.header.Get("Location"))
	}
	// GET /login?error=1 says so.
	if r := f.do(f.client(), "GET", "/login?error=1", nil); r.status != 200 || !strings.Contains(r.body, "Wrong username or password") {
		t.Fatalf("error page: %d", r.status)
	}
	// No password at all configured: nothing signs in.
	f = newFixture(t, false, func(o *Options) { o.Password = nil })
	if r := f.login(f.client(), AdminUser, "", ""); r.header.Get("Location") != "/login?error=1" {
		t.Fatalf("no password configured: %d %q", r.status, r.header.Get("Location"))
	}
}

func TestLoginRateLimit(t *testing.T) {
	forEachStore(t, func(t *testing.T, st func(*Options)) {
		f := newFixture(t, false, st)
		ip := []string{"X-Test-IP", "192.0.2.7"}
		for i := range 5 {
			if r := f.login(f.client(), AdminUser, "guess", "", ip...); r.status != http.StatusSeeOther {
				t.Fatalf("failure %d: %d", i+1, r.status)
			}
		}
		r := f.login(f.client(), AdminUser, testPassword, "", ip...) // even the right password
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "60" || cookie(r.resp, SessionCookie) != nil {
			t.Fatalf("6th attempt from one IP: %d Retry-After=%q", r.status, r.header.Get("Retry-After"))
		}
		if !strings.Contains(r.body, "Too many failed sign-ins") {
			t.Fatalf("429 page: %s", r.body)
		}
		r = f.login(f.client(), AdminUser, "guess", "", append(ip, "Accept", "application/json")...)
		if r.status != http.StatusTooManyRequests || !strings.HasPrefix(r.body, `{"error":`) {
			t.Fatalf("JSON 429: %d %s", r.status, r.body)
		}
		// Another IP is not limited by this one.
		if r := f.login(f.client(), AdminUser, testPassword, "", "X-Test-IP", "192.0.2.8"); r.status != http.StatusSeeOther || cookie(r.resp, SessionCookie) == nil {
			t.Fatalf("other IP: %d", r.status)
		}
		f.clock.Advance(30 * time.Second)
		if r := f.login(f.client(), AdminUser, testPassword, "", ip...); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "30" {
			t.Fatalf("half a window later: %d %q", r.status, r.header.Get("Retry-After"))
		}
		f.clock.Advance(30 * time.Second)
		if r := f.login(f.client(), AdminUser, testPassword, "", ip...); r.status != http.StatusSeeOther || cookie(r.resp, SessionCookie) == nil {
			t.Fatalf("after the window: %d", r.status)
		}

		// Per username: failures for admin from many IPs delay it, never refuse it
		// (TestUserFailuresDelayNeverLock checks the delays).
		f = newFixture(t, false, st)
		for i := range 5 {
			f.login(f.client(), AdminUser, "guess", "", "X-Test-IP", "198.51.100."+string(rune('1'+i)))
		}
		if r := f.login(f.client(), AdminUser, testPassword, "", "X-Test-IP", "203.0.113.9"); r.status != http.StatusSeeOther || cookie(r.resp, SessionCookie) == nil {
			t.Fatalf("admin from a new IP after 5 failures from others: %d", r.status)
		}
		// A success resets the counters.
		f = newFixture(t, false, st)
		for range 4 {
			f.login(f.client(), AdminUser, "guess", "", ip...)
		}
		f.login(f.client(), AdminUser, testPassword, "", ip...)
		for i := range 5 {
			if r := f.login(f.client(), AdminUser, "guess", "", ip...); r.status != http.StatusSeeOther {
				t.Fatalf("failure %d after a success: %d", i+1, r.status)
			}
		}
	})
}

func TestLimiterIsBounded(t *testing.T) {
	l := newLimiter(time.Minute, 100)
	now := time.Now()
	for i := range 1000 {
		l.take(now.Add(time.Duration(i)*time.Millisecond), check{"ip:" + string(rune(0x4e00+i)), 5})
	}
	if n := l.size(); n > 100 {
		t.Fatalf("limiter holds %d keys, bound 100", n)
	}
	if got := limitKey(remoteIP(&http.Request{RemoteAddr: "[2001:db8:1:2:3:4:5:6]:443"})); got != "2001:db8:1:2::/64" {
		t.Fatalf("IPv6 key %q", got)
	}
	if got := limitKey(remoteIP(&http.Request{RemoteAddr: "192.0.2.1:5000"})); got != "192.0.2.1" {
		t.Fatalf("IPv4 key %q", got)
	}
}

func TestSessionsAreBounded(t *testing.T) {
	s := newSessions(time.Hour, 24*time.Hour, 3)
	now := time.Now()
	var ids []string
	for i := range 5 {
		id, _ := s.create(AdminUser, RoleAdmin, now.Add(time.Duration(i)*time.Second))
		ids = append(ids, id)
	}
	if s.len() != 3 {
		t.Fatalf("%d sessions, bound 3", s.len())
	}
	if _, ok := s.get(ids[0], now.Add(10*time.Second)); ok {
		t.Fatal("the least recently used session survived")
	}
	if _, ok := s.get(ids[4], now.Add(10*time.Second)); !ok {
		t.Fatal("the newest session was dropped")
	}
}

func TestOpenRedirectRefused(t *testing.T) {
	bad := []string{"//evil.com", "https://evil.com", "http://evil.com/x", "/\\evil.com", "\\\\evil.com", "/\t/evil.com", "javascript:alert(1)", "evil.com", "///evil.com", "", "/\x00x", "/x\ny"}
	for _, next := range bad {
		if got := safeNext(next); got != DefaultNext {
			t.Errorf("safeNext(%q) = %q", next, got)
		}
	}
	for _, next := range []string{"/app/admin/general", "/app/results?x=1&y=2", "/"} {
		if got := safeNext(next); got != next {
			t.Errorf("safeNext(%q) = %q, want it kept", next, got)
		}
	}
	f := newFixture(t, false)
	for _, next := range []string{"//evil.com", "https://evil.com"} {
		r := f.login(f.client(), AdminUser, testPassword, next)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != DefaultNext {
			t.Errorf("next=%s: %d Location=%q", next, r.status, r.header.Get("Location"))
		}
		r = f.do(f.client(), "GET", "/login?next="+url.QueryEscape(next), nil)
		if strings.Contains(r.body, "evil.com") {
			t.Errorf("GET /login?next=%s renders it", next)
		}
	}
}

func TestLoginPage(t *testing.T) {
	f := newFixture(t, false)
	r := f.do(f.client(), "GET", "/login?next="+url.QueryEscape(`/app/"><script>x</script>`), nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /login: %d %s", r.status, r.header.Get("Content-Type"))
	}
	for _, want := range []string{`<form method="post" action="/login">`, `name="username"`, `name="password"`, `type="password"`, `name="next"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("login page lacks %s", want)
		}
	}
	if strings.Contains(r.body, "<script>") || strings.Contains(r.body, "http://") || strings.Contains(r.body, "https://") {
		t.Errorf("login page has a script or an external reference:\n%s", r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers %v", r.header)
	}
	// Signed in: straight on.
	c, _ := f.signIn()
	if r := f.do(c, "GET", "/login?next=/app/results", nil); r.status != http.StatusSeeOther || r.header.Get("Location") != "/app/results" {
		t.Fatalf("GET /login signed in: %d %q", r.status, r.header.Get("Location"))
	}
	// Methods.
	if r := f.do(c, "PUT", "/login", nil); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("PUT /login: %d", r.status)
	}
	// A cross-site form post is refused.
	r = f.login(f.client(), AdminUser, testPassword, "", "Sec-Fetch-Site", "cross-site")
	if r.status != http.StatusForbidden || cookie(r.resp, SessionCookie) != nil {
		t.Fatalf("cross-site sign-in: %d", r.status)
	}
}

func TestRequire(t *testing.T) {
	forEachStore(t, func(t *testing.T, st func(*Options)) {
		f := newFixture(t, false, st)
		anon := f.client()
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			r := f.do(anon, m, "/api/x", nil)
			var e struct{ Error string }
			if r.status != http.StatusUnauthorized || json.Unmarshal([]byte(r.body), &e) != nil || e.Error == "" || r.header.Get("Content-Type") != "application/json" {
				t.Errorf("%s without credentials: %d %s", m, r.status, r.body)
			}
		}
		// Bearer token: no CSRF token needed; a wrong or non-bearer one is refused.
		for _, m := range []string{"GET", "POST", "DELETE"} {
			if r := f.do(anon, m, "/api/x", nil, "Authorization", "Bearer "+testToken); r.status != 200 || !strings.Contains(r.body, `"bearer":true`) {
				t.Errorf("%s with the token: %d %s", m, r.status, r.body)
			}
		}
		for _, h := range []string{"Bearer wrong", "Bearer " + testToken + "x", "Basic " + testToken, testToken, "Bearer "} {
			if r := f.do(anon, "GET", "/api/x", nil, "Authorization", h); r.status != http.StatusUnauthorized {
				t.Errorf("Authorization %q: %d", h, r.status)
			}
		}
		// Session: reads need only the cookie; writes need the CSRF header.
		c, csrf := f.signIn()
		if r := f.do(c, "GET", "/api/x", nil); r.status != 200 || !strings.Contains(r.body, `"user":"admin"`) {
			t.Fatalf("session GET: %d %s", r.status, r.body)
		}
		other, otherCSRF := f.signIn()
		_ = other
		for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
			for _, tok := range []string{"", "wrong", otherCSRF, csrf + "x"} {
				hdr := []string{}
				if tok != "" {
					hdr = []string{CSRFHeader, tok}
				}
				r := f.do(c, m, "/api/x", nil, hdr...)
				if r.status != http.StatusForbidden || r.body != `{"error":"missing or wrong CSRF token"}`+"\n" {
					t.Errorf("%s with CSRF %q: %d %s", m, tok, r.status, r.body)
				}
			}
			if r := f.do(c, m, "/api/x", nil, CSRFHeader, csrf); r.status != 200 {
				t.Errorf("%s with the CSRF token: %d %s", m, r.status, r.body)
			}
		}
		// A wrong bearer token is refused even alongside a valid session.
		if r := f.do(c, "GET", "/api/x", nil, "Authorization", "Bearer wrong"); r.status != http.StatusUnauthorized {
			t.Errorf("session + wrong token: %d", r.status)
		}
		// Without a configured token, no bearer is accepted.
		g := newFixture(t, false, st, func(o *Options) { o.Token = "" })
		if r := g.do(g.client(), "GET", "/api/x", nil, "Authorization", "Bearer "); r.status != http.StatusUnauthorized {
			t.Errorf("empty token accepted: %d", r.status)
		}
	})
}

// viewer returns a client holding a session of a non-admin role.
func (f *fixture) viewer() (*http.Client, string) {
	rec := httptest.NewRecorder()
	f.auth.StartSession(rec, httptest.NewRequest("POST", "/login", nil), "viewer", "viewer")
	c := f.client()
	u, _ := url.Parse(f.srv.URL)
	c.Jar.SetCookies(u, rec.Result().Cookies())
	return c, cookie(rec.Result(), CSRFCookie).Value
}

func TestNonAdminRoleRefused(t *testing.T) {
	forEachStore(t, func(t *testing.T, st func(*Options)) {
		f := newFixture(t, false, st)
		c, csrf := f.viewer()
		for _, m := range []string{"GET", "POST"} {
			if r := f.do(c, m, "/api/x", nil, CSRFHeader, csrf); r.status != http.StatusForbidden || !strings.Contains(r.body, "admin role required") {
				t.Errorf("viewer %s: %d %s", m, r.status, r.body)
			}
			if r := f.do(c, m, "/page", nil, CSRFHeader, csrf); r.status != http.StatusForbidden {
				t.Errorf("viewer page %s: %d", m, r.status)
			}
		}
	})
}

func TestSessionExpiry(t *testing.T) {
	forEachStore(t, func(t *testing.T, st func(*Options)) {
		f := newFixture(t, false, st)
		c, _ := f.signIn()
		for range 15 { // used every 11h: the idle limit never ends it, the absolute one does
			f.clock.Advance(11 * time.Hour)
			if r := f.do(c, "GET", "/api/x", nil); r.status != 200 {
				t.Fatalf("used every 11h, refused at %v: %d", f.clock.Now(), r.status)
			}
		}
		f.clock.Advance(11 * time.Hour) // 7d+1h after sign-in
		if r := f.do(c, "GET", "/api/x", nil); r.status != http.StatusUnauthorized {
			t.Fatalf("after 7 days: %d", r.status)
		}
		c, _ = f.signIn()
		f.clock.Advance(12*time.Hour + time.Second)
		if r := f.do(c, "GET", "/api/x", nil); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "sign in again") {
			t.Fatalf("after 12h idle: %d %s", r.status, r.body)
		}
		if r := f.do(c, "GET", "/page", nil); r.status != http.StatusSeeOther {
			t.Fatalf("page after expiry: %d", r.status)
		}
	})
}

func TestRequirePage(t *testing.T) {
	forEachStore(t, func(t *testing.T, st func(*Options)) {
		f := newFixture(t, false, st)
		r := f.do(f.client(), "GET", "/page?tab=r2", nil)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login?next=%2Fpage%3Ftab%3Dr2" {
			t.Fatalf("page without session: %d %q", r.status, r.header.Get("Location"))
		}
		c, csrf := f.signIn()
		if r := f.do(c, "GET", "/page", nil); r.status != 200 {
			t.Fatalf("page with session: %d", r.status)
		}
		if r := f.do(c, "POST", "/page", strings.NewReader("a=b"), "Content-Type", "application/x-www-form-urlencoded"); r.status != http.StatusForbidden {
			t.Fatalf("page POST without CSRF: %d", r.status)
		}
		form := url.Values{CSRFField: {csrf}}.Encode()
		if r := f.do(c, "POST", "/page", strings.NewReader(form), "Content-Type", "application/x-www-form-urlencoded"); r.status != 200 {
			t.Fatalf("page POST with the CSRF field: %d", r.status)
		}
		if r := f.do(f.client(), "GET", "/page", nil, "Authorization", "Bearer "+testToken); r.status != 200 {
			t.Fatalf("page with the token: %d", r.status)
		}
	})
}

func TestLogout(t *testing.T) {
	forEachStore(t, func(t *testing.T, st func(*Options)) {
		f := newFixture(t, false, st)
		c, csrf := f.signIn()
		if r := f.do(c, "POST", "/logout", nil); r.status != http.StatusForbidden {
			t.Fatalf("logout without CSRF: %d", r.status)
		}
		if r := f.do(c, "POST", "/logout", nil, CSRFHeader, "wrong"); r.status != http.StatusForbidden {
			t.Fatalf("logout with a wrong CSRF token: %d", r.status)
		}
		if r := f.do(c, "GET", "/api/x", nil); r.status != 200 {
			t.Fatalf("a refused logout ended the session: %d", r.status)
		}
		u, _ := url.Parse(f.srv.URL)
		saved := c.Jar.Cookies(u)
		r := f.do(c, "POST", "/logout", nil, CSRFHeader, csrf)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login" {
			t.Fatalf("logout: %d %q", r.status, r.header.Get("Location"))
		}
		if s := cookie(r.resp, SessionCookie); s == nil || s.MaxAge >= 0 || s.Value != "" {
			t.Fatalf("logout did not clear the session cookie: %+v", s)
		}
		// The old cookie, replayed, no longer works.
		replay := f.client()
		replay.Jar.SetCookies(u, saved)
		if r := f.do(replay, "GET", "/api/x", nil); r.status != http.StatusUnauthorized {
			t.Fatalf("session after logout: %d", r.status)
		}
		if f.sessionCount() != 0 {
			t.Fatalf("%d sessions left", f.sessionCount())
		}
		// Form logout with the csrf_token field; JSON logout answers 204.
		c, csrf = f.signIn()
		r = f.do(c, "POST", "/logout", strings.NewReader(url.Values{CSRFField: {csrf}}.Encode()), "Content-Type", "application/x-www-form-urlencoded", "Accept", "application/json")
		if r.status != http.StatusNoContent || f.sessionCount() != 0 {
			t.Fatalf("form logout: %d, %d sessions", r.status, f.sessionCount())
		}
	})
}

func TestNoSecretInBodiesOrLogs(t *testing.T) {
	forEachStore(t, func(t *testing.T, st func(*Options)) {
		f := newFixture(t, false, st)
		var ids []string
		c, csrf := f.signIn()
		u, _ := url.Parse(f.srv.URL)
		for _, ck := range c.Jar.Cookies(u) {
			if ck.Name == SessionCookie {
				ids = append(ids, ck.Value)
			}
		}
		f.do(c, "GET", "/api/x", nil)
		f.do(c, "POST", "/api/x", nil)
		f.do(c, "GET", "/page", nil)
		f.do(c, "GET", "/login", nil)
		f.do(f.client(), "GET", "/api/x", nil, "Authorization", "Bearer "+testToken+"x")
		f.do(f.client(), "GET", "/api/x", nil, "Authorization", "Bearer "+testToken)
		for range 7 {
			f.login(f.client(), AdminUser, testPassword+"x", "")
			f.login(f.client(), testPassword, testPassword, "", "Accept", "application/json") // password typed as the name
		}
		f.do(c, "POST", "/logout", nil, CSRFHeader, csrf)
		if !strings.Contains(f.logs.String(), "admin sign-in failed") || !strings.Contains(f.logs.String(), "rate limited") {
			t.Fatalf("expected sign-in events in the log:\n%s", f.logs.String())
		}
		for _, secret := range append(ids, testPassword, testToken) {
			if strings.Contains(f.logs.String(), secret) {
				t.Errorf("a log line holds a secret:\n%s", f.logs.String())
			}
			if strings.Contains(f.bodies.String(), secret) {
				t.Errorf("a response body holds a secret")
			}
		}
	})
}

func TestLoadPassword(t *testing.T) {
	dir := t.TempDir()
	var out, logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	p, err := LoadPassword("", dir, &out, log)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^admin password: (\S+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no password printed:\n%s", out.String())
	}
	plain := m[1]
	if len(plain) < 20 || !p.Verify(plain) || p.Verify(plain+"x") || p.Verify("") {
		t.Fatalf("generated %d chars; verifies: %v", len(plain), p.Verify(plain))
	}
	file := filepath.Join(dir, PasswordFile)
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", st, err)
	}
	data, _ := os.ReadFile(file)
	if bytes.Contains(data, []byte(plain)) || !bytes.HasPrefix(data, []byte("pbkdf2-sha256$600000$")) {
		t.Fatalf("the file holds %q", data)
	}
	// Next start: the same hash, nothing printed, a hint logged.
	out.Reset()
	p2, err := LoadPassword("", dir, &out, log)
	if err != nil || out.Len() != 0 || !p2.Verify(plain) {
		t.Fatalf("second start: %v, printed %q", err, out.String())
	}
	if !strings.Contains(logs.String(), "MAGICADS_ADMIN_PASSWORD") || strings.Contains(logs.String(), plain) {
		t.Fatalf("logs:\n%s", logs.String())
	}
	// The environment wins and leaves the file alone.
	p3, err := LoadPassword("from-the-environment", dir, &out, log)
	if err != nil || out.Len() != 0 || !p3.Verify("from-the-environment") || p3.Verify(plain) {
		t.Fatalf("env password: %v", err)
	}
	if again, _ := os.ReadFile(file); !bytes.Equal(again, data) {
		t.Fatal("the env password rewrote the file")
	}
	if strings.Contains(logs.String(), "from-the-environment") {
		t.Fatal("the env password was logged")
	}
	// A damaged file is named, not silently replaced.
	os.WriteFile(file, []byte("garbage"), 0o600)
	if _, err := LoadPassword("", dir, &out, log); err == nil || !strings.Contains(err.Error(), file) || out.Len() != 0 {
		t.Fatalf("damaged file: %v", err)
	}
}

func TestPasswordForms(t *testing.T) {
	if NewPassword("").Verify("") || (*Password)(nil).Verify("x") {
		t.Fatal("an empty password verifies")
	}
	p := NewPassword("s3cret-s3cret")
	if !p.Verify("s3cret-s3cret") || p.Verify("s3cret-s3creT") || p.slow() {
		t.Fatal("HMAC form")
	}
	stored, err := hashPassword("s3cret-s3cret", 1000)
	if err != nil {
		t.Fatal(err)
	}
	q, err := parseHash([]byte(stored))
	if err != nil || !q.Verify("s3cret-s3cret") || q.Verify("nope") || !q.slow() {
		t.Fatalf("PBKDF2 form: %v", err)
	}
}
