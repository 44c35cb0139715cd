package auth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/internal/plugintest"
)

// postLogin sends POST /login straight to a's handler from the peer remote
// ("ip:port"), so the default client address logic is what runs.
func postLogin(t *testing.T, a *Auth, remote, user, password string, hdr ...string) *http.Response {
	t.Helper()
	form := url.Values{"username": {user}, "password": {password}, "next": {"/app/results"}}
	req := httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	req.RemoteAddr = remote
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, req)
	return rec.Result()
}

// signedIn reports whether a sign-in response started a session.
func signedIn(resp *http.Response) bool {
	return resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") == "/app/results" && cookie(resp, SessionCookie) != nil
}

// waits records the sign-in delays an Auth asks for instead of sleeping.
type waits struct {
	mu sync.Mutex
	d  time.Duration
}

func (w *waits) wait(_ context.Context, d time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.d += d
	return nil
}

// take returns how long the Auth waited since the last take.
func (w *waits) take() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.d
	w.d = 0
	return d
}

func newLimitAuth(t *testing.T, c *plugintest.Clock, tweak ...func(*Options)) (*Auth, *waits) {
	t.Helper()
	opts := Options{Password: NewPassword(testPassword), Now: c.Now}
	for _, fn := range tweak {
		fn(&opts)
	}
	a := New(opts)
	w := &waits{}
	a.wait = w.wait
	return a, w
}

// Finding 8: failures from one address must not lock the admin out from another.
func TestFailuresElsewhereDoNotLockAdminOut(t *testing.T) {
	forEachStore(t, func(t *testing.T, st func(*Options)) {
		c := plugintest.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		a, _ := newLimitAuth(t, c, st)
		for i := range 5 {
			if r := postLogin(t, a, "10.0.0.1:4000", AdminUser, "guess"); r.StatusCode != http.StatusSeeOther || signedIn(r) {
				t.Fatalf("wrong password %d from 10.0.0.1: %d", i+1, r.StatusCode)
			}
		}
		// 10.0.0.1 itself is limited, even with the right password.
		r := postLogin(t, a, "10.0.0.1:4001", AdminUser, testPassword)
		if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "60" || cookie(r, SessionCookie) != nil {
			t.Fatalf("6th attempt from 10.0.0.1: %d Retry-After=%q", r.StatusCode, r.Header.Get("Retry-After"))
		}
		// The admin, from another address, signs in.
		if r := postLogin(t, a, "10.0.0.2:5000", AdminUser, testPassword); !signedIn(r) {
			t.Fatalf("correct password from 10.0.0.2 after failures from 10.0.0.1: %d Location=%q", r.StatusCode, r.Header.Get("Location"))
		}
		// Still limited at 10.0.0.1; free after the window.
		if r := postLogin(t, a, "10.0.0.1:4002", AdminUser, testPassword); r.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("10.0.0.1 after the admin signed in elsewhere: %d", r.StatusCode)
		}
		c.Advance(time.Minute)
		if r := postLogin(t, a, "10.0.0.1:4003", AdminUser, testPassword); !signedIn(r) {
			t.Fatalf("10.0.0.1 after the window: %d", r.StatusCode)
		}
	})
}

// Finding 8: failures from many addresses slow the user down (a growing,
// capped delay), but never refuse the right password.
func TestUserFailuresDelayNeverLock(t *testing.T) {
	forEachStore(t, func(t *testing.T, st func(*Options)) {
		c := plugintest.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		a, w := newLimitAuth(t, c, st)
		var prev time.Duration
		for i := range 40 {
			remote := "10.1." + itoa(i/200) + "." + itoa(i%200+1) + ":4000"
			r := postLogin(t, a, remote, AdminUser, "guess")
			if r.StatusCode != http.StatusSeeOther || signedIn(r) {
				t.Fatalf("failure %d from %s: %d (want the usual failure, not a refusal)", i+1, remote, r.StatusCode)
			}
			d := w.take()
			if i < 5 && d > 0 {
				t.Fatalf("failure %d already delayed %v", i+1, d)
			}
			if d < prev || d > a.opts.MaxLoginDelay {
				t.Fatalf("failure %d: delay %v after %v (cap %v)", i+1, d, prev, a.opts.MaxLoginDelay)
			}
			prev = d
		}
		if prev != a.opts.MaxLoginDelay || a.opts.MaxLoginDelay > 5*time.Second {
			t.Fatalf("after 40 failures the delay is %v, want the cap %v (a few seconds)", prev, a.opts.MaxLoginDelay)
		}
		// The right password from a clean address: delayed, then signed in.
		if r := postLogin(t, a, "192.0.2.10:5000", AdminUser, testPassword); !signedIn(r) {
			t.Fatalf("correct password from a clean address under attack: %d", r.StatusCode)
		}
		if d := w.take(); d != a.opts.MaxLoginDelay {
			t.Fatalf("the clean attempt waited %v, want %v", d, a.opts.MaxLoginDelay)
		}
		// Unknown names do not slow the admin down.
		b, bw := newLimitAuth(t, c, st)
		for i := range 40 {
			postLogin(t, b, "10.2.0."+itoa(i+1)+":1", "root", "guess")
		}
		bw.take()
		if r := postLogin(t, b, "192.0.2.10:5000", AdminUser, testPassword); !signedIn(r) || bw.d != 0 {
			t.Fatalf("admin after failures for other names: %d, delay %v", r.StatusCode, bw.take())
		}
		// The delay fades once the failures stop.
		c.Advance(10 * time.Minute)
		if r := postLogin(t, a, "192.0.2.11:5000", AdminUser, testPassword); !signedIn(r) || w.d != 0 {
			t.Fatalf("10 minutes later: %d, delay %v", r.StatusCode, w.take())
		}
	})
}

// Finding 8: each address has its own limit, across every name it tries.
func TestLimitPerAddress(t *testing.T) {
	forEachStore(t, func(t *testing.T, st func(*Options)) {
		c := plugintest.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		a, _ := newLimitAuth(t, c, st, func(o *Options) { o.AddressLimit = 7 })
		for range 5 {
			postLogin(t, a, "203.0.113.5:1", AdminUser, "guess")
		}
		if r := postLogin(t, a, "203.0.113.5:1", AdminUser, "guess"); r.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("6th admin failure from one address: %d", r.StatusCode)
		}
		for i := range 2 {
			if r := postLogin(t, a, "203.0.113.5:1", "root", "guess"); r.StatusCode != http.StatusSeeOther {
				t.Fatalf("other name %d: %d", i+1, r.StatusCode)
			}
		}
		r := postLogin(t, a, "203.0.113.5:1", "root", "guess")
		if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
			t.Fatalf("8th failure from one address (limit 7): %d Retry-After=%q", r.StatusCode, r.Header.Get("Retry-After"))
		}
		if r := postLogin(t, a, "203.0.113.6:1", AdminUser, testPassword); !signedIn(r) {
			t.Fatalf("neighbour address: %d", r.StatusCode)
		}
		// An IPv6 client is one /64.
		for i := range 5 {
			postLogin(t, a, "[2001:db8:1:2::"+itoa(i+1)+"]:1", AdminUser, "guess")
		}
		if r := postLogin(t, a, "[2001:db8:1:2::ff]:1", AdminUser, testPassword); r.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("same /64: %d", r.StatusCode)
		}
		if r := postLogin(t, a, "[2001:db8:1:3::1]:1", AdminUser, testPassword); !signedIn(r) {
			t.Fatalf("other /64: %d", r.StatusCode)
		}
	})
}

func TestBackoffIsBounded(t *testing.T) {
	b := newBackoff(5, time.Minute, 100*time.Millisecond, time.Second, 50)
	now := time.Now()
	for i := range 1000 {
		b.attempt(now, "user:"+itoa(i))
	}
	if n := b.size(); n > 50 {
		t.Fatalf("backoff holds %d keys, bound 50", n)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestSleepEndsWithTheRequest(t *testing.T) {
	if err := sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := sleep(ctx, time.Hour); err == nil || time.Since(start) > time.Second {
		t.Fatalf("sleep after the request ended: %v after %v", err, time.Since(start))
	}
	// A sign-in whose client leaves during its delay checks no password and answers nothing.
	c := plugintest.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	a := New(Options{Password: NewPassword(testPassword), Now: c.Now, LoginLimit: 1})
	postLogin(t, a, "10.0.0.1:1", AdminUser, "guess")
	form := url.Values{"username": {AdminUser}, "password": {testPassword}}
	req := httptest.NewRequestWithContext(ctx, "POST", "/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = "10.0.0.2:1"
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, req)
	if cookie(rec.Result(), SessionCookie) != nil || rec.Body.Len() != 0 {
		t.Fatalf("a sign-in whose client left: %d %q", rec.Code, rec.Body.String())
	}
}
