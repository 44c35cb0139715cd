package auth

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/internal/plugintest"
)

func mustProxies(t *testing.T, list string) []netip.Prefix {
	t.Helper()
	p, err := ParseTrustedProxies(list)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseTrustedProxies(t *testing.T) {
	p, err := ParseTrustedProxies(" 10.0.0.0/8, 192.0.2.1 ,2001:db8::/32,,::1, 172.16.5.9/12")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32", "::1/128", "172.16.0.0/12"}
	if len(p) != len(want) {
		t.Fatalf("got %v", p)
	}
	for i := range want {
		if p[i].String() != want[i] {
			t.Errorf("item %d: %v, want %s", i, p[i], want[i])
		}
	}
	if p, err := ParseTrustedProxies(""); err != nil || len(p) != 0 {
		t.Fatalf("empty list: %v %v", p, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.0/8,300.1.1.1", "10.0.0.0/8;192.0.2.1", "fe80::1%eth0", "0.0.0.0/0", "::/0"} {
		_, err := ParseTrustedProxies(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		item := bad
		if i := strings.LastIndex(bad, ","); i >= 0 {
			item = bad[i+1:]
		}
		if !strings.Contains(err.Error(), item) || !strings.Contains(err.Error(), "CIDR") {
			t.Errorf("%q: error %q does not name the item and the expected form", bad, err)
		}
	}
}

func TestClientIP(t *testing.T) {
	cases := []struct {
		name, trusted, remote string
		xff                   []string
		want                  string
	}{
		{"no proxies: the header is ignored", "", "198.51.100.9:1234", []string{"203.0.113.7"}, "198.51.100.9"},
		{"untrusted peer: the header is ignored", "10.0.0.0/8", "198.51.100.9:1234", []string{"10.0.0.1, 203.0.113.7"}, "198.51.100.9"},
		{"trusted peer", "10.0.0.0/8", "10.0.0.5:1", []string{"203.0.113.7"}, "203.0.113.7"},
		{"spoofed left part", "10.0.0.0/8", "10.0.0.5:1", []string{"6.6.6.6, 203.0.113.7"}, "203.0.113.7"},
		{"chain of proxies", "10.0.0.0/8", "10.0.0.5:1", []string{"6.6.6.6, 203.0.113.7, 10.9.9.9"}, "203.0.113.7"},
		{"several header lines", "10.0.0.0/8", "10.0.0.5:1", []string{"6.6.6.6", "203.0.113.7, 10.1.1.1"}, "203.0.113.7"},
		{"trusted peer, no header", "10.0.0.0/8", "10.0.0.5:1", nil, "10.0.0.5"},
		{"garbage right-most", "10.0.0.0/8", "10.0.0.5:1", []string{"203.0.113.7, nonsense"}, "10.0.0.5"},
		{"garbage left of the client", "10.0.0.0/8", "10.0.0.5:1", []string{"<script>, 203.0.113.7"}, "203.0.113.7"},
		{"everything trusted", "10.0.0.0/8", "10.0.0.5:1", []string{"10.0.0.7, 10.0.0.6"}, "10.0.0.7"},
		{"with ports", "10.0.0.0/8", "10.0.0.5:1", []string{"[2001:db8::7]:443, 10.0.0.6:80"}, "2001:db8::7"},
		{"IPv6 proxy", "::1", "[::1]:5", []string{"2001:db8::1"}, "2001:db8::1"},
		{"IPv4-mapped peer", "10.0.0.0/8", "[::ffff:10.0.0.5]:1", []string{"203.0.113.7"}, "203.0.113.7"},
		{"IPv4-mapped client", "10.0.0.0/8", "10.0.0.5:1", []string{"::ffff:203.0.113.7"}, "203.0.113.7"},
	}
	for _, c := range cases {
		a := New(Options{TrustedProxies: mustProxies(t, c.trusted)})
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := a.ClientIP(r); got != c.want {
			t.Errorf("%s: ClientIP = %q, want %q", c.name, got, c.want)
		}
	}
	a := New(Options{})
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "[2001:db8:1:2:3:4:5:6]:443"
	if got := a.ClientKey(r); got != "2001:db8:1:2::/64" {
		t.Fatalf("IPv6 key %q", got)
	}
	r.RemoteAddr = "192.0.2.1:5000"
	if got := a.ClientKey(r); got != "192.0.2.1" {
		t.Fatalf("IPv4 key %q", got)
	}
}

// Finding 9: behind a trusted TLS-terminating proxy the cookies are Secure;
// a peer that is not trusted cannot ask for it (or against it).
func TestCookiesSecureBehindTrustedProxy(t *testing.T) {
	c := plugintest.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	a, _ := newLimitAuth(t, c, func(o *Options) { o.TrustedProxies = mustProxies(t, "10.0.0.0/8") })
	cases := []struct {
		name, remote string
		hdr          []string
		secure       bool
	}{
		{"trusted proxy, https", "10.0.0.5:1", []string{"X-Forwarded-For", "203.0.113.7", "X-Forwarded-Proto", "https"}, true},
		{"trusted proxy, no proto", "10.0.0.5:1", []string{"X-Forwarded-For", "203.0.113.8"}, true},
		{"trusted proxy says http", "10.0.0.5:1", []string{"X-Forwarded-For", "203.0.113.9", "X-Forwarded-Proto", "http"}, false},
		{"untrusted peer claims https", "198.51.100.9:1", []string{"X-Forwarded-For", "203.0.113.7", "X-Forwarded-Proto", "https"}, false},
	}
	for _, k := range cases {
		r := postLogin(t, a, k.remote, AdminUser, testPassword, k.hdr...)
		if !signedIn(r) {
			t.Fatalf("%s: sign-in %d", k.name, r.StatusCode)
		}
		s, x := cookie(r, SessionCookie), cookie(r, CSRFCookie)
		if s.Secure != k.secure || x.Secure != k.secure {
			t.Errorf("%s: session Secure=%v, CSRF Secure=%v, want %v", k.name, s.Secure, x.Secure, k.secure)
		}
		// Logout clears them with the same attribute.
		req := httptest.NewRequest("POST", "/logout", nil)
		req.RemoteAddr = k.remote
		for i := 0; i+1 < len(k.hdr); i += 2 {
			req.Header.Set(k.hdr[i], k.hdr[i+1])
		}
		req.AddCookie(s)
		req.Header.Set(CSRFHeader, x.Value)
		rec := httptest.NewRecorder()
		a.Handler().ServeHTTP(rec, req)
		if got := cookie(rec.Result(), SessionCookie); got == nil || got.MaxAge >= 0 || got.Secure != k.secure {
			t.Errorf("%s: logout cookie %+v", k.name, got)
		}
	}
	// Without trusted proxies nothing but TLS makes them Secure.
	b, _ := newLimitAuth(t, c)
	r := postLogin(t, b, "10.0.0.5:1", AdminUser, testPassword, "X-Forwarded-Proto", "https")
	if s := cookie(r, SessionCookie); s == nil || s.Secure {
		t.Fatalf("no trusted proxies, X-Forwarded-Proto: https: %+v", s)
	}
}

// Finding 9: X-Forwarded-For from a peer that is not a trusted proxy does
// not change the rate-limit key; through a trusted proxy the key is the
// real client, whatever the client prepends.
func TestForwardedForSpoofing(t *testing.T) {
	c := plugintest.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, trusted := range []string{"", "10.0.0.0/8"} {
		a, _ := newLimitAuth(t, c, func(o *Options) { o.TrustedProxies = mustProxies(t, trusted) })
		for i := range 5 {
			postLogin(t, a, "198.51.100.9:1", AdminUser, "guess", "X-Forwarded-For", "192.0.2."+itoa(i+1))
		}
		r := postLogin(t, a, "198.51.100.9:1", AdminUser, testPassword, "X-Forwarded-For", "192.0.2.99")
		if r.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("trusted=%q: a spoofed X-Forwarded-For escaped the limit: %d", trusted, r.StatusCode)
		}
	}
	a, _ := newLimitAuth(t, c, func(o *Options) { o.TrustedProxies = mustProxies(t, "10.0.0.0/8") })
	for i := range 5 {
		postLogin(t, a, "10.0.0.5:1", AdminUser, "guess", "X-Forwarded-For", "192.0.2."+itoa(i+1)+", 203.0.113.7")
	}
	if r := postLogin(t, a, "10.0.0.5:1", AdminUser, testPassword, "X-Forwarded-For", "192.0.2.99, 203.0.113.7"); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the client behind the proxy escaped its limit by prepending addresses: %d", r.StatusCode)
	}
	// Another client behind the same proxy is not limited by that one.
	if r := postLogin(t, a, "10.0.0.5:1", AdminUser, testPassword, "X-Forwarded-For", "203.0.113.8"); !signedIn(r) {
		t.Fatalf("another client behind the trusted proxy: %d", r.StatusCode)
	}
}
