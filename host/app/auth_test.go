package app_test

import (
	"bytes"
	"context"
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

	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/host/auth"
)

// authHost is a host on SQLite without plugins, for the auth wiring.
type authHost struct {
	t      *testing.T
	app    *app.App
	srv    *httptest.Server
	logs   *plugintest.Logs
	bodies *plugintest.Logs
}

func startAuthHost(t *testing.T, dataDir, password string, pwOut io.Writer) *authHost {
	t.Helper()
	return startAppHost(t, app.Config{DataDir: dataDir, AppKey: appKey(), AdminToken: adminToken, AdminPassword: password, AdminPasswordOut: pwOut})
}

// startAppHost starts a host with cfg (its Logger set to the host's logs)
// behind a test server, both closed when the test ends.
func startAppHost(t *testing.T, cfg app.Config) *authHost {
	t.Helper()
	h := &authHost{t: t, logs: &plugintest.Logs{}, bodies: &plugintest.Logs{}}
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("starting the host: %v", err)
	}
	h.app, h.srv = a, httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		h.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		a.Close(ctx)
	})
	return h
}

func (h *authHost) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (h *authHost) call(c *http.Client, method, path, body string, hdr ...string) (int, string) {
	h.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, h.srv.URL+path, r)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	h.bodies.Write(data)
	return resp.StatusCode, string(data)
}

// signIn posts the login form and returns the client, its CSRF token and session id.
func (h *authHost) signIn(password string) (*http.Client, string, string) {
	h.t.Helper()
	c := h.client()
	resp, err := c.PostForm(h.srv.URL+"/login", url.Values{"username": {"admin"}, "password": {password}, "next": {"/app/admin/general"}})
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app/admin/general" {
		h.t.Fatalf("sign-in: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var csrf, sid string
	for _, ck := range resp.Cookies() {
		switch ck.Name {
		case auth.CSRFCookie:
			csrf = ck.Value
		case auth.SessionCookie:
			sid = ck.Value
		}
	}
	if csrf == "" || sid == "" {
		h.t.Fatalf("sign-in cookies: %v", resp.Cookies())
	}
	return c, csrf, sid
}

const consolePassword = "console-password-for-tests"

// TestAdminRoutesNeedAuth walks every admin route of the API.
func TestAdminRoutesNeedAuth(t *testing.T) {
	h := startAuthHost(t, t.TempDir(), consolePassword, io.Discard)
	routes := h.app.API.AdminRoutes()
	if len(routes) < 10 {
		t.Fatalf("only %d admin routes: %v", len(routes), routes)
	}
	c, csrf, sid := h.signIn(consolePassword)
	_, otherCSRF, _ := h.signIn(consolePassword)
	viewer := h.client()
	rec := httptest.NewRecorder()
	h.app.Auth.StartSession(rec, httptest.NewRequest("POST", "/login", nil), "viewer", "viewer")
	u, _ := url.Parse(h.srv.URL)
	viewer.Jar.SetCookies(u, rec.Result().Cookies())
	var viewerCSRF string
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == auth.CSRFCookie {
			viewerCSRF = ck.Value
		}
	}
	// Any answer but 401/403 means the auth check let the call through.
	passed := func(code int) bool { return code != http.StatusUnauthorized && code != http.StatusForbidden }
	const body = `{"values":{},"default":"local","receipt":"not-a-receipt"}`
	for _, route := range routes {
		method, pattern, _ := strings.Cut(route, " ")
		path := strings.ReplaceAll(pattern, "{id}", pluginID)
		if code, resp := h.call(h.client(), method, path, body); code != http.StatusUnauthorized || !strings.HasPrefix(resp, `{"error":`) {
			t.Errorf("%s without credentials: %d %s", route, code, resp)
		}
		if code, _ := h.call(h.client(), method, path, body, "Authorization", "Bearer not-the-token"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d", route, code)
		}
		if code, resp := h.call(h.client(), method, path, body, "Authorization", "Bearer "+adminToken); !passed(code) {
			t.Errorf("%s with the token (no CSRF): %d %s", route, code, resp)
		}
		if code, resp := h.call(viewer, method, path, body, auth.CSRFHeader, viewerCSRF); code != http.StatusForbidden {
			t.Errorf("%s with a non-admin session: %d %s", route, code, resp)
		}
		if method == "GET" {
			if code, resp := h.call(c, method, path, ""); !passed(code) {
				t.Errorf("%s with a session: %d %s", route, code, resp)
			}
			continue
		}
		for _, tok := range []string{"", "wrong", otherCSRF} {
			hdr := []string{}
			if tok != "" {
				hdr = []string{auth.CSRFHeader, tok}
			}
			if code, resp := h.call(c, method, path, body, hdr...); code != http.StatusForbidden || resp != `{"error":"missing or wrong CSRF token"}`+"\n" {
				t.Errorf("%s with a session and CSRF %q: %d %s", route, tok, code, resp)
			}
		}
		if code, resp := h.call(c, method, path, body, auth.CSRFHeader, csrf); !passed(code) {
			t.Errorf("%s with a session and its CSRF token: %d %s", route, code, resp)
		}
	}
	// Results API and health stay open.
	if code, _ := h.call(h.client(), "GET", "/healthz", ""); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	// Logout ends the session.
	if code, _ := h.call(c, "POST", "/logout", "", auth.CSRFHeader, csrf); code != http.StatusSeeOther {
		t.Fatalf("logout: %d", code)
	}
	replay := h.client()
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: auth.SessionCookie, Value: sid}})
	if code, _ := h.call(replay, "GET", "/api/v1/admin/storage", ""); code != http.StatusUnauthorized {
		t.Fatalf("the session still works after logout: %d", code)
	}
	for _, secret := range []string{consolePassword, adminToken, sid} {
		if strings.Contains(h.logs.String(), secret) || strings.Contains(h.bodies.String(), secret) {
			t.Errorf("a log line or response body holds a secret")
		}
	}
}

// TestGeneratedAdminPassword: without MAGICADS_ADMIN_PASSWORD the first start
// prints a generated password once and stores only its hash; the next start
// reuses it and prints nothing.
func TestGeneratedAdminPassword(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	h := startAuthHost(t, dir, "", &out)
	m := regexp.MustCompile(`(?m)^admin password: (\S{20,})$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no generated password printed:\n%s", out.String())
	}
	plain := m[1]
	data, err := os.ReadFile(filepath.Join(dir, auth.PasswordFile))
	if err != nil || bytes.Contains(data, []byte(plain)) {
		t.Fatalf("the password file: %v, holds the plaintext: %v", err, bytes.Contains(data, []byte(plain)))
	}
	if st, _ := os.Stat(filepath.Join(dir, auth.PasswordFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("password file mode %v", st.Mode())
	}
	h.signIn(plain)
	if strings.Contains(h.logs.String(), plain) {
		t.Fatal("the generated password is in the log")
	}
	h.srv.Close()
	h.app.Close(context.Background())

	out.Reset()
	h2 := startAuthHost(t, dir, "", &out)
	if out.Len() != 0 {
		t.Fatalf("the second start printed:\n%s", out.String())
	}
	if !strings.Contains(h2.logs.String(), "MAGICADS_ADMIN_PASSWORD") {
		t.Fatalf("no hint on how to reset the password:\n%s", h2.logs.String())
	}
	h2.signIn(plain)
}
