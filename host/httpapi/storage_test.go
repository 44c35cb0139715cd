package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/host/settingsstore"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/sdk"
	"github.com/magicads/r2storage/shared/storage"
)

// The test binary doubles as the storage plugin: launched by the plugin
// runtime (go-plugin hands it the handshake's magic cookie), TestMain serves
// fakePlugin instead of running the tests.
func TestMain(m *testing.M) {
	if os.Getenv("MAGICADS_PLUGIN_MAGIC_COOKIE") != "" {
		sdk.Serve(&fakePlugin{Store: memstore.New("")}, sdk.ServeOptions{Logger: sdk.Logger("fake")})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Buckets that make the fake misbehave.
const (
	// deniedBucket makes the fake's connection test fail at upload.
	deniedBucket = "denied-bucket"
	// noFieldsBucket: ValidateSettings refuses it naming no field.
	noFieldsBucket = "nofields-bucket"
	// crashBucket: Configure ends the plugin process.
	crashBucket = "crash-bucket"
	// unavailableBucket: ValidateSettings answers Unavailable.
	unavailableBucket = "unavailable-bucket"
	// locatedBucket: Configure reports memstore's bucket identity, as a
	// provider with locations does.
	locatedBucket = "located-bucket"
)

// fakePlugin is memstore with R2's URL checks (which the schema's pattern
// does not make) and a bucket whose connection test is denied.
type fakePlugin struct {
	*memstore.Store
	mu     sync.Mutex
	bucket string
}

func (p *fakePlugin) ValidateSettings(_ context.Context, s storage.Settings) ([]storage.FieldError, error) {
	switch s["bucket"] {
	case noFieldsBucket:
		return nil, storage.Errorf(storage.InvalidSettings, "fake: the bucket and the endpoint disagree")
	case unavailableBucket:
		return nil, storage.Errorf(storage.Unavailable, "fake: the endpoint did not answer")
	}
	var fe []storage.FieldError
	for _, k := range []string{"endpoint", "public_url"} {
		if v, _ := s[k].(string); v != "" {
			if u, err := url.Parse(v); err != nil || u.Host == "" {
				fe = append(fe, storage.FieldError{Field: k, Message: "fake: must be an http(s) URL"})
			}
		}
	}
	return fe, nil
}

func (p *fakePlugin) Configure(_ context.Context, s storage.Settings) (storage.ConfigureResult, error) {
	if s["bucket"] == crashBucket {
		os.Exit(3)
	}
	p.mu.Lock()
	p.bucket, _ = s["bucket"].(string)
	p.mu.Unlock()
	pub, _ := s["public_url"].(string)
	if s["bucket"] == locatedBucket {
		return storage.ConfigureResult{PublicBaseURL: pub, Bucket: memstore.BucketID(memstore.DefaultBucket)}, nil
	}
	return storage.ConfigureResult{PublicBaseURL: pub}, nil
}

func (p *fakePlugin) TestConnection(ctx context.Context) (storage.TestResult, error) {
	p.mu.Lock()
	bucket := p.bucket
	p.mu.Unlock()
	if bucket == deniedBucket {
		return storage.TestResult{Step: storage.StepUpload, Message: "Connection failed: permission denied on bucket \"denied-bucket\""}, nil
	}
	return p.Store.TestConnection(ctx)
}

const (
	testToken = "admin-token"
	pluginID  = "cloudflare-r2"
)

// fakeJobs stands in for the results service's job stats and retries.
type fakeJobs struct {
	stats   map[string]results.ProviderJobs
	err     error
	retried []string
}

func (f *fakeJobs) JobStats(context.Context) (map[string]results.ProviderJobs, error) {
	return f.stats, f.err
}

func (f *fakeJobs) RetryFailed(_ context.Context, provider string) (int64, error) {
	f.retried = append(f.retried, provider)
	return 2, f.err
}

// adminAPI is an API with the fake plugin installed.
type adminAPI struct {
	t   *testing.T
	api *API
	mgr *providers.Manager
	rt  *pluginrt.Runtime
	db  *testdb.DB
}

func newAdminAPI(t *testing.T, d dbmigrate.Dialect) *adminAPI {
	t.Helper()
	return newAdminAPIWith(t, d, pluginrt.Options{})
}

// newAdminAPIWith is newAdminAPI with the plugin runtime tuned by rtOpts.
func newAdminAPIWith(t *testing.T, d dbmigrate.Dialect, rtOpts pluginrt.Options) *adminAPI {
	t.Helper()
	db := testdb.Open(t, d)
	key, err := settingsstore.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := settingsstore.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	pluginsDir := filepath.Join(t.TempDir(), "plugins")
	var mgr *providers.Manager
	rtOpts.OnStart = func(ctx context.Context, id string, p storage.Provider) error { return mgr.OnStart(ctx, id, p) }
	rtOpts.Redact = func() []string { return mgr.Secrets() }
	rt := pluginrt.New(rtOpts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		rt.Close(ctx)
	})
	mgr = providers.New(db.DB, db.Dialect, settingsstore.New(db.DB, keys), rt, nil, providers.Options{PluginsDir: pluginsDir, Keys: keys})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if err := mgr.Register(context.Background(), providers.Installed{ID: pluginID, Version: "1.0.0", Dir: plugintest.ModuleRoot(t), BinaryPath: exe, SHA256: sum[:]}); err != nil {
		t.Fatalf("installing the fake plugin: %v", err)
	}
	return &adminAPI{t: t, api: New(nil, mgr, nil, Options{AdminToken: testToken}), mgr: mgr, rt: rt, db: db}
}

// call makes an admin call and decodes its JSON answer into out (if not nil).
func (a *adminAPI) call(method, path string, body any, out any) *httptest.ResponseRecorder {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	a.api.ServeHTTP(rec, req)
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			a.t.Fatalf("%s %s: %d %q: %v", method, path, rec.Code, rec.Body.String(), err)
		}
	}
	return rec
}

func settings() map[string]any {
	return map[string]any{
		"enabled": true, "access_key_id": "AKIAFAKE", "secret_access_key": "fake-secret-1",
		"account_id": "0123456789abcdef0123456789abcdef", "bucket": "results-bucket", "public_url": "https://pub.example",
	}
}

// storedBucket reads the provider's bucket through the API.
func (a *adminAPI) storedBucket() any {
	a.t.Helper()
	var got struct {
		Values map[string]any `json:"values"`
	}
	if rec := a.call("GET", "/api/v1/admin/plugins/"+pluginID+"/settings", nil, &got); rec.Code != 200 {
		a.t.Fatalf("reading the settings: %d %s", rec.Code, rec.Body)
	}
	return got.Values["bucket"]
}

// TestSettingsThePluginRefusesAre422: the plugin's field problems answer
// 422 with fields, as the schema's do, and nothing is stored; with the
// plugin not running a save answers 503 naming why, and stores nothing.
func TestSettingsThePluginRefusesAre422(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			a := newAdminAPI(t, d)
			path := "/api/v1/admin/plugins/" + pluginID + "/settings"
			if rec := a.call("PUT", path, map[string]any{"values": settings()}, nil); rec.Code != 200 {
				t.Fatalf("first save: %d %s", rec.Code, rec.Body)
			}
			bad := settings()
			bad["secret_access_key"], bad["public_url"], bad["bucket"] = "", "http://host:abc", "other-bucket"
			var got struct {
				Error  string            `json:"error"`
				Fields map[string]string `json:"fields"`
			}
			rec := a.call("PUT", path, map[string]any{"values": bad}, &got)
			want := map[string]string{"public_url": "fake: must be an http(s) URL"}
			if rec.Code != http.StatusUnprocessableEntity || got.Error != "invalid settings" || !reflect.DeepEqual(got.Fields, want) {
				t.Fatalf("got %d %s, want 422 with fields %v", rec.Code, rec.Body, want)
			}
			rec = a.call("POST", "/api/v1/admin/plugins/"+pluginID+"/test", map[string]any{"values": bad}, &got)
			if rec.Code != http.StatusUnprocessableEntity || !reflect.DeepEqual(got.Fields, want) {
				t.Fatalf("test: got %d %s, want 422 with fields %v", rec.Code, rec.Body, want)
			}
			if b := a.storedBucket(); b != "results-bucket" {
				t.Fatalf("a refused save stored bucket %v", b)
			}

			// A refusal naming no field is the plugin's answer: 422 with
			// its message, never 503.
			whole := settings()
			whole["bucket"] = noFieldsBucket
			got.Fields = nil
			rec = a.call("PUT", path, map[string]any{"values": whole}, &got)
			want = map[string]string{"settings": "fake: the bucket and the endpoint disagree"}
			if rec.Code != http.StatusUnprocessableEntity || got.Error != "invalid settings" || !reflect.DeepEqual(got.Fields, want) {
				t.Fatalf("refusal without fields: got %d %s, want 422 with fields %v", rec.Code, rec.Body, want)
			}
			// A check that failed for now stays 503.
			later := settings()
			later["bucket"] = unavailableBucket
			rec = a.call("PUT", path, map[string]any{"values": later}, nil)
			if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
				t.Fatalf("plugin check unavailable: %d %s", rec.Code, rec.Body)
			}
			if b := a.storedBucket(); b != "results-bucket" {
				t.Fatalf("a refused save stored bucket %v", b)
			}

			if err := a.rt.Stop(context.Background(), pluginID); err != nil {
				t.Fatal(err)
			}
			var e struct {
				Error string `json:"error"`
			}
			ok := settings()
			ok["bucket"] = "other-bucket"
			rec = a.call("PUT", path, map[string]any{"values": ok}, &e)
			if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(e.Error, "stopped") || !strings.Contains(e.Error, "nothing was saved") {
				t.Fatalf("plugin stopped: %d %s", rec.Code, rec.Body)
			}
			if b := a.storedBucket(); b != "results-bucket" {
				t.Fatalf("a save the plugin could not check stored bucket %v", b)
			}
		})
	}
}

// TestConnectionTestAnswerSaysSaved: the test's answer says the settings
// were saved (saved: true, and in the message) and where the test failed.
func TestConnectionTestAnswerSaysSaved(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			a := newAdminAPI(t, d)
			s := settings()
			s["bucket"] = deniedBucket
			var got map[string]any
			rec := a.call("POST", "/api/v1/admin/plugins/"+pluginID+"/test", map[string]any{"values": s}, &got)
			want := map[string]any{"ok": false, "step": "upload", "saved": true, "checked_by_plugin": true,
				"message": `Settings saved, but the connection test failed at upload: permission denied on bucket "denied-bucket"`}
			if rec.Code != 200 || !reflect.DeepEqual(got, want) {
				t.Fatalf("got %d %v, want %v", rec.Code, got, want)
			}
			if b := a.storedBucket(); b != deniedBucket {
				t.Fatalf("stored bucket %v, want %s", b, deniedBucket)
			}
		})
	}
}

// TestStorageOverview: GET /api/v1/admin/storage's shape, with job stats,
// without them, and with a Default Storage that is failing.
func TestStorageOverview(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			a := newAdminAPI(t, d)
			// Not enabled yet, job stats unknown (no results service).
			var got map[string]any
			if rec := a.call("GET", "/api/v1/admin/storage", nil, &got); rec.Code != 200 {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			want := map[string]any{
				"default": "local",
				"options": []any{map[string]any{"id": "local", "name": providers.LocalName, "status": "unknown", "listing": false,
					"reason": "job counts cannot be read, so whether results reach it is not known: this host has no results service"}},
				"unavailable": []any{map[string]any{"id": pluginID, "name": "Cloudflare R2 Storage", "reason": "not enabled",
					"fix":     "Enable it and fill in access key, secret, bucket and account id (or a custom endpoint).",
					"fix_url": "/app/admin/general/plugins/cloudflare-r2"}},
				"stats_error": "job counts cannot be read: this host has no results service",
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %v\nwant %v", got, want)
			}

			if rec := a.call("PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", map[string]any{"values": settings()}, nil); rec.Code != 200 {
				t.Fatalf("save: %d %s", rec.Code, rec.Body)
			}
			if rec := a.call("PUT", "/api/v1/admin/storage", map[string]string{"default": pluginID}, nil); rec.Code != 200 {
				t.Fatalf("default: %d %s", rec.Code, rec.Body)
			}
			at := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
			a.api.jobs = &fakeJobs{stats: map[string]results.ProviderJobs{pluginID: {Pending: 1, Failed: 2, LastError: "permission denied on bucket", LastCode: storage.PermissionDenied, LastErrorAt: at}}}
			got = nil
			if rec := a.call("GET", "/api/v1/admin/storage", nil, &got); rec.Code != 200 {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			want = map[string]any{
				"default": pluginID,
				"options": []any{
					map[string]any{"id": "local", "name": providers.LocalName, "status": "ok", "pending": 0.0, "failed": 0.0, "listing": false},
					map[string]any{"id": pluginID, "name": "Cloudflare R2 Storage", "status": "failing", "reason": "permission denied on bucket",
						"last_error": "permission denied on bucket", "last_error_at": "2026-11-30T07:00:00Z", "pending": 1.0, "failed": 2.0, "listing": true},
				},
				"unavailable": []any{},
				"problem": map[string]any{"provider": pluginID, "name": "Cloudflare R2 Storage", "status": "failing",
					"cause": "Wrong keys, bucket name or account id", "fix": "Re-check the R2 API token and bucket; confirm the token has Object Read & Write.",
					"message": "permission denied on bucket", "fix_url": "/app/admin/general/plugins/cloudflare-r2"},
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %v\nwant %v", got, want)
			}

			// Stats that fail: the page answers, counts left out.
			a.api.jobs = &fakeJobs{err: errors.New("database is locked")}
			got = nil
			if rec := a.call("GET", "/api/v1/admin/storage", nil, &got); rec.Code != 200 || got["stats_error"] != "job counts cannot be read: database is locked" {
				t.Fatalf("%d %v", rec.Code, got)
			}
			for _, o := range got["options"].([]any) {
				o := o.(map[string]any)
				if o["status"] != "unknown" || o["reason"] != "job counts cannot be read, so whether results reach it is not known: database is locked" || o["pending"] != nil || o["failed"] != nil {
					t.Fatalf("option with unknown stats: %v", o)
				}
			}
			if p := got["problem"].(map[string]any); p["status"] != "unknown" || p["fix_url"] != "/app/admin/general" {
				t.Fatalf("problem with unknown stats: %v", p)
			}

			// Local's own failed jobs (the retry route takes local).
			a.api.jobs = &fakeJobs{stats: map[string]results.ProviderJobs{providers.Local: {Failed: 1}}}
			got = nil
			a.call("GET", "/api/v1/admin/storage", nil, &got)
			if o := got["options"].([]any)[0].(map[string]any); o["id"] != "local" || o["status"] != "degraded" || o["reason"] != "1 job failed and waits for a retry" {
				t.Fatalf("local with a failed job: %v", o)
			}
		})
	}
}

// TestRetryFailedJobs: POST /api/v1/admin/storage/{id}/retry runs the
// provider's failed jobs again and says how many.
func TestRetryFailedJobs(t *testing.T) {
	a := newAdminAPI(t, dbmigrate.SQLite)
	jobs := &fakeJobs{}
	a.api.jobs = jobs
	var got map[string]any
	if rec := a.call("POST", "/api/v1/admin/storage/"+pluginID+"/retry", nil, &got); rec.Code != 200 || !reflect.DeepEqual(got, map[string]any{"retried": 2.0}) {
		t.Fatalf("%d %v", rec.Code, got)
	}
	if rec := a.call("POST", "/api/v1/admin/storage/local/retry", nil, nil); rec.Code != 200 {
		t.Fatalf("local: %d %s", rec.Code, rec.Body)
	}
	if rec := a.call("POST", "/api/v1/admin/storage/no-such-provider/retry", nil, nil); rec.Code != http.StatusNotFound {
		t.Fatalf("unknown provider: %d %s", rec.Code, rec.Body)
	}
	if !reflect.DeepEqual(jobs.retried, []string{pluginID, "local"}) {
		t.Fatalf("retried %v", jobs.retried)
	}
	jobs.err = errors.ErrUnsupported
	if rec := a.call("POST", "/api/v1/admin/storage/"+pluginID+"/retry", nil, nil); rec.Code != http.StatusNotImplemented {
		t.Fatalf("unsupported: %d %s", rec.Code, rec.Body)
	}
}

// TestSaveWhileThePluginFailedIsAccepted: settings that make the plugin
// fail can be replaced: while it has failed, a save is checked by the
// schema only (422 for its problems), answered 200 saying the plugin could
// not check it, and the plugin runs again with the new settings.
func TestSaveWhileThePluginFailedIsAccepted(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			a := newAdminAPIWith(t, d, pluginrt.Options{CrashLimit: 1, BackoffMin: 10 * time.Millisecond})
			path := "/api/v1/admin/plugins/" + pluginID + "/settings"
			var saved map[string]any
			if rec := a.call("PUT", path, map[string]any{"values": settings()}, &saved); rec.Code != 200 || !reflect.DeepEqual(saved, map[string]any{"status": "saved", "checked_by_plugin": true}) {
				t.Fatalf("first save: %d %s", rec.Code, rec.Body)
			}
			crash := settings()
			crash["bucket"] = crashBucket
			if rec := a.call("PUT", path, map[string]any{"values": crash}, nil); rec.Code != 200 {
				t.Fatalf("crashing save: %d %s", rec.Code, rec.Body)
			}
			deadline := time.Now().Add(15 * time.Second)
			for {
				if st, _ := a.rt.Status(pluginID); st.State == pluginrt.StateFailed {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the plugin did not fail after crashing")
				}
				time.Sleep(20 * time.Millisecond)
			}
			bad := settings()
			bad["bucket"] = "Bad_Bucket"
			if rec := a.call("PUT", path, map[string]any{"values": bad}, nil); rec.Code != http.StatusUnprocessableEntity {
				t.Fatalf("a schema problem while the plugin failed: %d %s", rec.Code, rec.Body)
			}
			var got struct {
				Status          string `json:"status"`
				CheckedByPlugin *bool  `json:"checked_by_plugin"`
				Message         string `json:"message"`
			}
			rec := a.call("PUT", path, map[string]any{"values": settings()}, &got)
			if rec.Code != 200 || got.Status != "saved" || got.CheckedByPlugin == nil || *got.CheckedByPlugin ||
				!strings.HasPrefix(got.Message, "Settings saved after the schema's check only: the plugin could not check them (it has failed") {
				t.Fatalf("save while the plugin failed: %d %s", rec.Code, rec.Body)
			}
			if b := a.storedBucket(); b != "results-bucket" {
				t.Fatalf("stored bucket %v", b)
			}
			if st, _ := a.rt.Status(pluginID); st.State != pluginrt.StateRunning {
				t.Fatalf("the plugin is %+v after the save, want running", st)
			}
		})
	}
}

// TestStatsErrorIsLoggedOncePerChange: job counts that cannot be read are
// logged when the error first shows and when its text changes, not on
// every overview request.
func TestStatsErrorIsLoggedOncePerChange(t *testing.T) {
	a := newAdminAPI(t, dbmigrate.SQLite)
	var buf bytes.Buffer
	var mu sync.Mutex
	a.api.opts.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return strings.Count(buf.String(), "job counts cannot be read")
	}
	jobs := &fakeJobs{err: errors.New("database is locked")}
	a.api.jobs = jobs
	for range 3 {
		if rec := a.call("GET", "/api/v1/admin/storage", nil, nil); rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	if n := count(); n != 1 {
		t.Fatalf("the same stats error was logged %d times, want 1:\n%s", n, buf.String())
	}
	jobs.err = errors.New("database is closed")
	a.call("GET", "/api/v1/admin/storage", nil, nil)
	a.call("GET", "/api/v1/admin/storage", nil, nil)
	if n := count(); n != 2 {
		t.Fatalf("a changed stats error: logged %d times in all, want 2:\n%s", n, buf.String())
	}
	jobs.err = nil
	a.call("GET", "/api/v1/admin/storage", nil, nil)
	jobs.err = errors.New("database is closed")
	a.call("GET", "/api/v1/admin/storage", nil, nil)
	if n := count(); n != 3 {
		t.Fatalf("an error back after the counts were read: logged %d times in all, want 3:\n%s", n, buf.String())
	}
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
