package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/internal/testdb"
)

var pluginBin plugintest.Builder

// pluginBin110 is the R2 plugin reporting version 1.1.0, for updates.
var pluginBin110 = plugintest.Builder{Flags: []string{"-ldflags", "-X main.version=1.1.0"}}

// hostBin is the magicads command, for tests that run the host as a
// process of its own.
var hostBin plugintest.Builder

func TestMain(m *testing.M) {
	code := m.Run()
	pluginBin.Cleanup()
	pluginBin110.Cleanup()
	hostBin.Cleanup()
	os.Exit(code)
}

const (
	adminToken = "test-admin-token"
	bucket     = "magicads-media"
	pluginID   = "cloudflare-r2"
	publicURL  = "https://pub-test.r2.dev"
)

// host is an in-process MagicAds host with the real R2 plugin installed.
type host struct {
	t       testing.TB
	app     *app.App
	srv     *httptest.Server
	s3      *s3test.Server
	dsn     string
	dataDir string
	logs    *plugintest.Logs
	key     string // the APP_KEY of the last start
}

func appKey() string {
	k := make([]byte, 32)
	rand.Read(k)
	return "base64:" + base64Std(k)
}

// fastOptions keeps retries quick in tests.
func fastOptions() (pluginrt.Options, results.Options) {
	return pluginrt.Options{HealthInterval: 200 * time.Millisecond, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond, CrashLimit: 5, CrashWindow: time.Minute},
		results.Options{PollInterval: 50 * time.Millisecond, BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second, LeaseDuration: 30 * time.Second}
}

// newHost starts a host on a fresh database of the dialect, with versitygw
// and the R2 plugin installed (not configured).
func newHost(t testing.TB, dialect dbmigrate.Dialect) *host {
	t.Helper()
	db := testdb.Open(t, dialect)
	srv := s3test.StartVersity(t)
	srv.CreateBucket(t, bucket)
	h := &host{t: t, s3: srv, dsn: db.DSN, dataDir: t.TempDir(), logs: &plugintest.Logs{}}
	h.start(appKey())
	bin := pluginBin.Build(t, "./plugin/cmd/cloudflare-r2")
	sum := fileSHA256(t, bin)
	err := h.app.Providers.Register(context.Background(), providers.Installed{ID: pluginID, Version: "1.0.0", Dir: plugintest.ModuleRoot(t), BinaryPath: bin, SHA256: sum})
	if err != nil {
		t.Fatalf("registering the plugin: %v", err)
	}
	h.waitRunning()
	return h
}

// start (re)starts the host process on the same data dir and database.
func (h *host) start(key string) {
	h.t.Helper()
	h.key = key
	rt, res := fastOptions()
	a, err := app.New(context.Background(), app.Config{
		DataDir: h.dataDir, DB: h.dsn, AppKey: key, AdminToken: adminToken,
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Runtime: rt, Results: res, Cluster: testCluster(),
	})
	if err != nil {
		h.t.Fatalf("starting the host: %v", err)
	}
	h.app = a
	h.srv = httptest.NewServer(a.Handler())
	h.t.Cleanup(h.stop)
}

// stop shuts the host down; it is safe to call twice.
func (h *host) stop() {
	if h.srv != nil {
		h.srv.Close()
	}
	if h.app != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := h.app.Close(ctx); err != nil {
			h.t.Errorf("closing the host: %v", err)
		}
	}
}

func (h *host) waitRunning() {
	h.t.Helper()
	waitFor(h.t, 20*time.Second, "the plugin to run", func() bool {
		st, ok := h.app.Runtime.Status(pluginID)
		return ok && st.State == pluginrt.StateRunning
	})
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fileSHA256(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return h.Sum(nil)
}

// settings are complete R2 settings pointing at versitygw.
func (h *host) settings(extra ...any) map[string]any { return r2SettingsFor(h.s3, extra...) }

// r2SettingsFor are complete R2 settings for srv (Delete local copy off),
// with extra key, value pairs set.
func r2SettingsFor(srv *s3test.Server, extra ...any) map[string]any {
	s := map[string]any{
		"enabled": true, "delete_local": false,
		"access_key_id": srv.AccessKey, "secret_access_key": srv.SecretKey,
		"bucket": bucket, "endpoint": srv.Endpoint, "public_url": publicURL,
		"key_prefix": "magicads", "use_path_style": true,
	}
	for i := 0; i < len(extra); i += 2 {
		s[extra[i].(string)] = extra[i+1]
	}
	return s
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (h *host) do(method, path string, body any, out any) int {
	h.t.Helper()
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, h.srv.URL+path, r)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := noRedirect.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			h.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// configure saves settings and makes R2 the Default Storage.
func (h *host) configure(extra ...any) {
	h.t.Helper()
	if code := h.do("PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", map[string]any{"values": h.settings(extra...)}, nil); code != 200 {
		h.t.Fatalf("saving settings: %d", code)
	}
	if code := h.do("PUT", "/api/v1/admin/storage", map[string]string{"default": pluginID}, nil); code != 200 {
		h.t.Fatalf("setting Default Storage: %d\n%s", code, h.logs)
	}
}

type resultBody struct {
	ID, Path, Storage, URL, SHA256 string
	Size                           int64
}

// postForm posts a results form with the admin token.
func (h *host) postForm(contentType string, body io.Reader) (*http.Response, error) {
	req, _ := http.NewRequest("POST", h.srv.URL+"/api/v1/results", body)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	return http.DefaultClient.Do(req)
}

// resultForm is the multipart body of a result upload of data (images by
// gemini, in a file called name) and its Content-Type.
func resultForm(data []byte, name string) (*bytes.Buffer, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("kind", "images")
	mw.WriteField("generator", "gemini")
	fw, _ := mw.CreateFormFile("file", name)
	fw.Write(data)
	mw.Close()
	return &buf, mw.FormDataContentType()
}

// upload finalizes a result through the API.
func (h *host) upload(data []byte, name string) resultBody {
	h.t.Helper()
	form, contentType := resultForm(data, name)
	resp, err := h.postForm(contentType, form)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r resultBody
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 || json.Unmarshal(body, &r) != nil {
		h.t.Fatalf("finalizing a result: %d %s", resp.StatusCode, body)
	}
	return r
}

func (h *host) result(id string) resultBody {
	h.t.Helper()
	var r resultBody
	if code := h.do("GET", "/api/v1/results/"+id, nil, &r); code != 200 {
		h.t.Fatalf("GET result %s: %d", id, code)
	}
	return r
}

// content fetches a result's content: the bytes for local ones, the
// redirect location for offloaded ones.
func (h *host) content(id string) (int, []byte, string) {
	h.t.Helper()
	resp, err := noRedirect.Get(h.srv.URL + "/api/v1/results/" + id + "/content")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data, resp.Header.Get("Location")
}

// objects lists the bucket's keys.
func (h *host) objects() []string { return h.s3.Keys(h.t, bucket) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func hasKey(keys []string, key string) bool {
	for _, k := range keys {
		if k == key {
			return true
		}
	}
	return false
}

func countPrefix(keys []string, prefix string) int {
	n := 0
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// newBenchHost is a host on SQLite (the default deployment) for benchmarks.
func newBenchHost(b *testing.B) *host { return newHost(b, dbmigrate.SQLite) }

var _ = fmt.Sprintf
