package main

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/magicads/r2storage/internal/plugintest"
)

func TestTrustedProxiesFlag(t *testing.T) {
	f, err := parse([]string{"--trusted-proxies", "10.0.0.0/8, 192.0.2.1"}, getenvFrom(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.trustedProxies) != 2 || f.trustedProxies[0].String() != "10.0.0.0/8" || f.trustedProxies[1].String() != "192.0.2.1/32" {
		t.Fatalf("--trusted-proxies: %v", f.trustedProxies)
	}
	f, err = parse(nil, getenvFrom(map[string]string{"MAGICADS_TRUSTED_PROXIES": "2001:db8::/32"}), &bytes.Buffer{})
	if err != nil || len(f.trustedProxies) != 1 || f.trustedProxies[0].String() != "2001:db8::/32" {
		t.Fatalf("MAGICADS_TRUSTED_PROXIES: %v %v", f.trustedProxies, err)
	}
	f, err = parse([]string{"--trusted-proxies", "127.0.0.1"}, getenvFrom(map[string]string{"MAGICADS_TRUSTED_PROXIES": "2001:db8::/32"}), &bytes.Buffer{})
	if err != nil || len(f.trustedProxies) != 1 || f.trustedProxies[0].String() != "127.0.0.1/32" {
		t.Fatalf("the flag does not win over the environment: %v %v", f.trustedProxies, err)
	}
	if f, err := parse(nil, getenvFrom(nil), &bytes.Buffer{}); err != nil || len(f.trustedProxies) != 0 {
		t.Fatalf("default: %v %v", f.trustedProxies, err)
	}
	// A bad CIDR exits 2 naming it, before anything starts.
	for _, c := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"serve", "--data-dir", t.TempDir(), "--trusted-proxies", "10.0.0.0/8,10.0.0.0/33"}, nil},
		{[]string{"serve", "--data-dir", t.TempDir()}, map[string]string{"MAGICADS_TRUSTED_PROXIES": "proxy.internal"}},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), c.args, getenvFrom(c.env), &stderr)
		bad := "10.0.0.0/33"
		if c.env != nil {
			bad = "proxy.internal"
		}
		if code != 2 || !strings.Contains(stderr.String(), "--trusted-proxies") || !strings.Contains(stderr.String(), bad) {
			t.Errorf("bad trusted proxy %q: exit %d, stderr:\n%s", bad, code, stderr.String())
		}
	}
}

// Finding 9: behind a trusted TLS-terminating proxy the host's cookies are Secure.
func TestSecureCookiesBehindTrustedProxy(t *testing.T) {
	const password = "proxy-admin-password-123"
	signIn := func(addr string, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+addr+"/login", strings.NewReader(url.Values{"username": {"admin"}, "password": {password}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 2 {
			t.Fatalf("sign-in: %d, cookies %v", resp.StatusCode, resp.Cookies())
		}
		return resp
	}
	var stderr plugintest.Logs
	addr, _ := serve(t, t.TempDir(), map[string]string{"MAGICADS_ADMIN_PASSWORD": password, "MAGICADS_TRUSTED_PROXIES": "127.0.0.0/8"}, &stderr)
	for _, c := range signIn(addr, "X-Forwarded-For", "203.0.113.7", "X-Forwarded-Proto", "https").Cookies() {
		if !c.Secure {
			t.Errorf("behind the trusted proxy, cookie %s is not Secure", c.Name)
		}
	}
	var stderr2 plugintest.Logs
	addr2, _ := serve(t, t.TempDir(), map[string]string{"MAGICADS_ADMIN_PASSWORD": password}, &stderr2)
	for _, c := range signIn(addr2, "X-Forwarded-Proto", "https").Cookies() {
		if c.Secure {
			t.Errorf("without trusted proxies, X-Forwarded-Proto made cookie %s Secure", c.Name)
		}
	}
}
