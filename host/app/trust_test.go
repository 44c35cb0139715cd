package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"

	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/host/auth"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/internal/testdb"
)

const serviceToken = "test-service-token"

// trustHost is a host without plugins on a fresh database of a dialect, with
// an admin password, the admin token and the service token.
type trustHost struct {
	*authHost
	dataDir string
}

func startTrustHost(t *testing.T, dialect dbmigrate.Dialect, tune func(*app.Config)) *trustHost {
	t.Helper()
	dataDir := t.TempDir()
	cfg := app.Config{
		DataDir: dataDir, DB: testdb.Open(t, dialect).DSN, AppKey: appKey(), AdminToken: adminToken,
		AdminPassword: consolePassword, AdminPasswordOut: io.Discard, ServiceToken: serviceToken,
	}
	if tune != nil {
		tune(&cfg)
	}
	return &trustHost{authHost: startAppHost(t, cfg), dataDir: dataDir}
}

// pngBytes is n bytes that start with the PNG signature.
func pngBytes(n int) []byte {
	b := randomBytes(max(n, 16))
	copy(b, "\x89PNG\r\n\x1a\n")
	return b
}

// form is a multipart body: fields in order, then (if file != nil) the file part.
type formPart struct {
	name, filename, contentType string
	data                        []byte
}

func multipartBody(parts ...formPart) (string, *bytes.Buffer) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		if p.filename == "" {
			mw.WriteField(p.name, string(p.data))
			continue
		}
		hdr := textproto.MIMEHeader{}
		hdr.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, p.name, p.filename))
		if p.contentType != "" {
			hdr.Set("Content-Type", p.contentType)
		}
		w, _ := mw.CreatePart(hdr)
		w.Write(p.data)
	}
	mw.Close()
	return mw.FormDataContentType(), &buf
}

func field(name, value string) formPart { return formPart{name: name, data: []byte(value)} }

func file(name, ct string, data []byte) formPart {
	return formPart{name: "file", filename: name, contentType: ct, data: data}
}

// post sends a multipart form to POST /api/v1/results with the headers given.
func (h *trustHost) post(c *http.Client, parts []formPart, hdr ...string) (*http.Response, string) {
	h.t.Helper()
	ct, body := multipartBody(parts...)
	req, _ := http.NewRequest("POST", h.srv.URL+"/api/v1/results", body)
	req.Header.Set("Content-Type", ct)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatalf("POST /api/v1/results: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

func pngForm(extra ...formPart) []formPart {
	return append([]formPart{field("kind", "images"), field("generator", "gemini"), file("a.png", "image/png", pngBytes(256))}, extra...)
}

// TestResultsAPINeedsCredentials: finding 1 — anonymous callers could
// create, list, read and delete results.
func TestResultsAPINeedsCredentials(t *testing.T) {
	h := startTrustHost(t, dbmigrate.SQLite, nil)
	anon := h.client()
	svc := []string{"Authorization", "Bearer " + serviceToken}

	resp, body := h.post(anon, pngForm())
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "MAGICADS_SERVICE_TOKEN") {
		t.Fatalf("anonymous create: %d %s (want 401 naming MAGICADS_SERVICE_TOKEN)", resp.StatusCode, body)
	}
	resp, body = h.post(anon, pngForm(), "Authorization", "Bearer not-the-token")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("create with a wrong token: %d %s", resp.StatusCode, body)
	}
	resp, body = h.post(anon, pngForm(), svc...)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create with the service token: %d %s", resp.StatusCode, body)
	}
	var created struct{ ID, URL string }
	json.Unmarshal([]byte(body), &created)

	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/results"},
		{"GET", "/api/v1/results/" + created.ID},
		{"DELETE", "/api/v1/results/" + created.ID},
	} {
		if code, body := h.call(anon, c.method, c.path, ""); code != http.StatusUnauthorized || !strings.HasPrefix(body, `{"error":`) {
			t.Errorf("anonymous %s %s: %d %s", c.method, c.path, code, body)
		}
		if code, _ := h.call(anon, c.method, c.path, "", "Authorization", "Bearer "+serviceToken+"x"); code != http.StatusUnauthorized {
			t.Errorf("%s %s with a wrong token: %d", c.method, c.path, code)
		}
	}
	// The content URL stays a capability URL.
	if code, _ := h.call(anon, "GET", created.URL, ""); code != http.StatusOK {
		t.Fatalf("anonymous content: %d", code)
	}
	// The service token is not an admin credential.
	if code, _ := h.call(anon, "GET", "/api/v1/admin/storage", "", svc...); code != http.StatusUnauthorized {
		t.Fatalf("the service token on an admin call: %d", code)
	}
	if code, body := h.call(anon, "GET", "/api/v1/results", "", svc...); code != 200 || !strings.Contains(body, created.ID) {
		t.Fatalf("list with the service token: %d %s", code, body)
	}
	if code, _ := h.call(anon, "GET", "/api/v1/results/"+created.ID, "", "Authorization", "Bearer "+adminToken); code != 200 {
		t.Fatalf("get with the admin token: %d", code)
	}
	// An admin session reads freely and writes with its CSRF token only.
	c, csrf, _ := h.signIn(consolePassword)
	if code, _ := h.call(c, "GET", "/api/v1/results", ""); code != 200 {
		t.Fatalf("list with a session: %d", code)
	}
	if resp, body := h.post(c, pngForm()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("create with a session, no CSRF token: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.post(c, pngForm(), auth.CSRFHeader, csrf); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create with a session and its CSRF token: %d %s", resp.StatusCode, body)
	}
	if code, _ := h.call(c, "DELETE", "/api/v1/results/"+created.ID, ""); code != http.StatusForbidden {
		t.Fatalf("delete with a session, no CSRF token: %d", code)
	}
	if code, _ := h.call(anon, "DELETE", "/api/v1/results/"+created.ID, "", svc...); code != http.StatusNoContent {
		t.Fatalf("delete with the service token: %d", code)
	}
	if strings.Contains(h.logs.String(), serviceToken) || strings.Contains(h.bodies.String(), serviceToken) {
		t.Fatalf("the service token shows in a log line or a response body")
	}
}

// TestResultsOwner: results carry the platform user they belong to, and the
// list filters by it.
func TestResultsOwner(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := startTrustHost(t, d, nil)
			svc := []string{"Authorization", "Bearer " + serviceToken}
			ids := map[string][]string{}
			for _, owner := range []string{"user-1", "user-2", "user-1", ""} {
				parts := pngForm()
				if owner != "" {
					parts = append([]formPart{field("owner", owner)}, parts...)
				}
				resp, body := h.post(h.client(), parts, svc...)
				if resp.StatusCode != http.StatusCreated {
					t.Fatalf("create for %q: %d %s", owner, resp.StatusCode, body)
				}
				var r struct{ ID, Owner string }
				json.Unmarshal([]byte(body), &r)
				if r.Owner != owner {
					t.Fatalf("created with owner %q, answered %q: %s", owner, r.Owner, body)
				}
				ids[owner] = append(ids[owner], r.ID)
			}
			code, body := h.call(h.client(), "GET", "/api/v1/results/"+ids["user-2"][0], "", svc...)
			if code != 200 || !strings.Contains(body, `"owner":"user-2"`) {
				t.Fatalf("get: %d %s", code, body)
			}
			code, body = h.call(h.client(), "GET", "/api/v1/results?owner=user-1", "", svc...)
			var page struct {
				Results []struct{ ID, Owner string }
			}
			if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil {
				t.Fatalf("list by owner: %d %s", code, body)
			}
			if len(page.Results) != 2 {
				t.Fatalf("list by owner user-1 gave %d results, want 2: %s", len(page.Results), body)
			}
			for _, r := range page.Results {
				if r.Owner != "user-1" {
					t.Fatalf("list by owner user-1 gave %+v", r)
				}
			}
			code, body = h.call(h.client(), "GET", "/api/v1/results", "", svc...)
			if code != 200 || strings.Count(body, `"id"`) != 4 {
				t.Fatalf("unfiltered list: %d %s", code, body)
			}
			if resp, body := h.post(h.client(), append([]formPart{field("owner", "user\u202e1")}, pngForm()...), svc...); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "owner") {
				t.Fatalf("an owner with a right-to-left override: %d %s", resp.StatusCode, body)
			}
			long := strings.Repeat("u", 2000)
			if resp, body := h.post(h.client(), append([]formPart{field("owner", long)}, pngForm()...), svc...); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "owner") {
				t.Fatalf("an owner of 2000 bytes: %d %s", resp.StatusCode, body)
			}
		})
	}
}

const hostileSVG = `<svg xmlns="http://www.w3.org/2000/svg" onload="fetch('/api/v1/admin/storage')"><script>alert(document.cookie)</script></svg>`

// TestOnlyMediaIsAccepted: finding 2 — an SVG (or HTML) upload was stored
// and served back from the console's origin as active content.
func TestOnlyMediaIsAccepted(t *testing.T) {
	h := startTrustHost(t, dbmigrate.SQLite, nil)
	svc := []string{"Authorization", "Bearer " + serviceToken}
	refused := []struct {
		name     string
		part     formPart
		mentions string
	}{
		{"svg declared as svg", file("x.svg", "image/svg+xml", []byte(hostileSVG)), "image/svg+xml"},
		{"svg declared as png", file("x.png", "image/png", []byte(hostileSVG)), "the file is image/svg+xml"},
		{"svg undeclared, .png name", file("x.png", "", []byte(hostileSVG)), "the file is image/svg+xml"},
		{"html as png", file("x.png", "image/png", []byte("<!doctype html><script>alert(1)</script>")), "text/html"},
		{"jpeg declared as png", file("x.png", "image/png", append([]byte("\xff\xd8\xff\xe0"), randomBytes(100)...)), "image/jpeg"},
		{"empty", file("x.png", "image/png", nil), "empty"},
	}
	for _, c := range refused {
		resp, body := h.post(h.client(), []formPart{field("kind", "images"), field("generator", "gemini"), c.part}, svc...)
		if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(body, c.mentions) {
			t.Errorf("%s: %d %s (want 415 naming %s)", c.name, resp.StatusCode, body, c.mentions)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: the JSON error has no nosniff", c.name)
		}
	}
	// Each accepted type, recognised by content whatever the declared type.
	accepted := map[string][]byte{
		"image/png":       pngBytes(64),
		"image/jpeg":      append([]byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"), randomBytes(64)...),
		"image/gif":       append([]byte("GIF89a"), randomBytes(64)...),
		"image/webp":      append([]byte("RIFF\x24\x00\x00\x00WEBPVP8 "), randomBytes(64)...),
		"image/avif":      append([]byte("\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf"), randomBytes(64)...),
		"video/mp4":       append([]byte("\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"), randomBytes(64)...),
		"video/webm":      append([]byte("\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm"), randomBytes(64)...),
		"video/quicktime": append([]byte("\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  "), randomBytes(64)...),
	}
	for ct, data := range accepted {
		kind := "images"
		if strings.HasPrefix(ct, "video/") {
			kind = "videos"
		}
		resp, body := h.post(h.client(), []formPart{field("kind", kind), field("generator", "gemini"), file("upload.bin", "", data)}, svc...)
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("%s: %d %s", ct, resp.StatusCode, body)
			continue
		}
		var r struct{ ID, URL string }
		json.Unmarshal([]byte(body), &r)
		got, err := http.Get(h.srv.URL + r.URL)
		if err != nil {
			t.Fatal(err)
		}
		got.Body.Close()
		if got.Header.Get("Content-Type") != ct {
			t.Errorf("%s served as %q", ct, got.Header.Get("Content-Type"))
		}
	}
	// A PNG with a script after its header is a PNG: served as one, with
	// nosniff and a sandboxing CSP, so nothing in it can run.
	poly := append(pngBytes(16), []byte("<html><script>alert(1)</script>")...)
	resp, body := h.post(h.client(), []formPart{field("kind", "images"), field("generator", "gemini"), file("x.png", "image/png", poly)}, svc...)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("polyglot PNG: %d %s", resp.StatusCode, body)
	}
	var r struct{ ID, URL string }
	json.Unmarshal([]byte(body), &r)
	got, err := http.Get(h.srv.URL + r.URL)
	if err != nil {
		t.Fatal(err)
	}
	got.Body.Close()
	csp := got.Header.Get("Content-Security-Policy")
	if got.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(csp, "sandbox") || !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("result content headers: %v", got.Header)
	}
	code, _ := h.call(h.client(), "GET", "/api/v1/results/"+r.ID, "", svc...)
	if code != 200 {
		t.Fatalf("get: %d", code)
	}
	missing, err := http.Get(h.srv.URL + "/api/v1/results/00000000-0000-4000-8000-000000000000/content")
	if err != nil {
		t.Fatal(err)
	}
	missing.Body.Close()
	if missing.StatusCode != 404 || !strings.Contains(missing.Header.Get("Content-Security-Policy"), "sandbox") {
		t.Fatalf("a missing result's content: %d %v", missing.StatusCode, missing.Header)
	}
	for _, path := range []string{"/api/v1/results", "/api/v1/results/" + r.ID, "/healthz"} {
		req, _ := http.NewRequest("GET", h.srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+serviceToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", path)
		}
	}
}
