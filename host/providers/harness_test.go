package providers_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/settingsstore"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/sdk"
	"github.com/magicads/r2storage/shared/storage"
)

// The test binary doubles as the provider's plugin: launched by the
// plugin runtime (go-plugin hands it the handshake's magic cookie), TestMain
// serves fakeProvider instead of running the tests. It is installed with
// the repo's R2 manifest and settings schema.
func TestMain(m *testing.M) {
	if os.Getenv("MAGICADS_PLUGIN_MAGIC_COOKIE") != "" {
		sdk.Serve(&fakeProvider{Store: memstore.New("")}, sdk.ServeOptions{Logger: sdk.Logger("fake")})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Buckets that make the fake misbehave.
const (
	// deniedBucket: TestConnection fails at upload, permission denied.
	deniedBucket = "denied-bucket"
	// refusedBucket: Configure refuses it; ValidateSettings does not.
	refusedBucket = "refused-bucket"
	// crashBucket: Configure ends the plugin process.
	crashBucket = "crash-bucket"
	// slowBucket: ValidateSettings takes slowCheck, and refuses it with
	// the secret otherSecret.
	slowBucket = "slow-bucket"
	// noFieldsBucket: ValidateSettings refuses it with InvalidSettings
	// naming no field.
	noFieldsBucket = "nofields-bucket"
	// badArgBucket: ValidateSettings refuses it with InvalidArgument.
	badArgBucket = "badarg-bucket"
)

// hostKeyReachedPlugin is the fake's refusal of a host setting it was given.
const hostKeyReachedPlugin = "fake: the host's own setting reached the plugin"

// noFieldsMessage is the fake's refusal of noFieldsBucket.
const noFieldsMessage = "fake: the bucket and the endpoint disagree"

// slowCheck is how long ValidateSettings takes for slowBucket.
const slowCheck = 1500 * time.Millisecond

// otherSecret is a second secret value.
const otherSecret = "fake-secret-2"

// deniedMessage is the fake's failed test at upload.
const deniedMessage = `Connection failed: permission denied on bucket "denied-bucket" — the token needs Object Read & Write on this bucket`

// fakeProvider is memstore with R2's settings checks that the schema
// cannot express, and the misbehaviours above.
type fakeProvider struct {
	*memstore.Store
	mu     sync.Mutex
	bucket string
}

// fakeCheck: endpoint and public_url must parse as http(s) URLs (so
// "http://host:abc", which the schema's pattern lets through, is refused),
// and an access key needs its secret (so a check of the incoming values
// without the kept secret would fail).
// The host's own settings (enabled, delete_local) are the host's: a plugin
// is never given them, so the fake refuses them where they reach it.
func fakeCheck(s storage.Settings) []storage.FieldError {
	var fe []storage.FieldError
	for _, k := range []string{"enabled", "delete_local"} {
		if _, ok := s[k]; ok {
			fe = append(fe, storage.FieldError{Field: k, Message: hostKeyReachedPlugin})
		}
	}
	for _, k := range []string{"endpoint", "public_url"} {
		v, _ := s[k].(string)
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			fe = append(fe, storage.FieldError{Field: k, Message: "fake: must be an http(s) URL"})
		}
	}
	if ak, _ := s["access_key_id"].(string); ak != "" {
		if sk, _ := s["secret_access_key"].(string); sk == "" {
			fe = append(fe, storage.FieldError{Field: "secret_access_key", Message: "fake: an access key needs its secret"})
		}
	}
	return fe
}

func (p *fakeProvider) ValidateSettings(_ context.Context, s storage.Settings) ([]storage.FieldError, error) {
	fe := fakeCheck(s)
	switch s["bucket"] {
	case noFieldsBucket:
		return nil, storage.Errorf(storage.InvalidSettings, "%s", noFieldsMessage)
	case badArgBucket:
		return nil, storage.Errorf(storage.InvalidArgument, "fake: bucket %s is not a name this provider takes", badArgBucket)
	}
	if s["bucket"] == slowBucket {
		time.Sleep(slowCheck)
		if s["secret_access_key"] == otherSecret {
			fe = append(fe, storage.FieldError{Field: "bucket", Message: "fake: not with this secret"})
		}
	}
	return fe, nil
}

func (p *fakeProvider) Configure(_ context.Context, s storage.Settings) (storage.ConfigureResult, error) {
	if fe := fakeCheck(s); len(fe) > 0 {
		return storage.ConfigureResult{}, storage.SettingsError(fe)
	}
	bucket, _ := s["bucket"].(string)
	switch bucket {
	case refusedBucket:
		return storage.ConfigureResult{}, storage.SettingsError([]storage.FieldError{{Field: "bucket", Message: "fake: this bucket is refused"}})
	case crashBucket:
		os.Exit(3)
	}
	p.mu.Lock()
	p.bucket = bucket
	p.mu.Unlock()
	pub, _ := s["public_url"].(string)
	return storage.ConfigureResult{PublicBaseURL: pub}, nil
}

func (p *fakeProvider) TestConnection(ctx context.Context) (storage.TestResult, error) {
	p.mu.Lock()
	bucket := p.bucket
	p.mu.Unlock()
	if bucket == deniedBucket {
		return storage.TestResult{Step: storage.StepUpload, Message: deniedMessage}, nil
	}
	return p.Store.TestConnection(ctx)
}

// pluginID is the id the fake is installed under (the repo's manifest).
const pluginID = "cloudflare-r2"

// env is a providers.Manager over a fresh database, with a plugin runtime.
type env struct {
	t     *testing.T
	db    *testdb.DB
	m     *providers.Manager
	rt    *pluginrt.Runtime
	store *settingsstore.Store

	mu      sync.Mutex
	changed []string
}

func newEnv(t *testing.T, d dbmigrate.Dialect, rtOpts pluginrt.Options) *env {
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
	e := &env{t: t, db: db, store: settingsstore.New(db.DB, keys)}
	rtOpts.OnStart = func(ctx context.Context, id string, p storage.Provider) error { return e.m.OnStart(ctx, id, p) }
	rtOpts.Redact = func() []string { return e.m.Secrets() }
	e.rt = pluginrt.New(rtOpts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		e.rt.Close(ctx)
	})
	e.m = providers.New(db.DB, db.Dialect, e.store, e.rt, nil, providers.Options{PluginsDir: pluginsDir, Keys: keys,
		SettingsChanged: func(_ context.Context, id string) {
			e.mu.Lock()
			e.changed = append(e.changed, id)
			e.mu.Unlock()
		}})
	return e
}

// install registers this test binary as the plugin.
func (e *env) install() {
	e.t.Helper()
	exe, sum := e.binary()
	if err := e.m.Register(context.Background(), providers.Installed{ID: pluginID, Version: "1.0.0", Dir: plugintest.ModuleRoot(e.t), BinaryPath: exe, SHA256: sum}); err != nil {
		e.t.Fatalf("installing the fake plugin: %v", err)
	}
}

// The provider installOther installs: not Cloudflare R2.
const (
	otherID   = "other-store"
	otherName = "Other Store"
)

// installOther registers this test binary as a second provider, otherID
// named otherName, with R2's settings schema and a migration that does nothing.
func (e *env) installOther() {
	e.t.Helper()
	schema, err := os.ReadFile(filepath.Join(plugintest.ModuleRoot(e.t), "schema", "settings.schema.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.installWith(otherID, otherName, schema)
}

// installWith registers this test binary as provider id named name, with
// the settings schema document schema and a migration that does nothing.
func (e *env) installWith(id, name string, schema []byte) {
	e.t.Helper()
	root := plugintest.ModuleRoot(e.t)
	data, err := os.ReadFile(filepath.Join(root, "manifest.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	var man map[string]any
	if err := json.Unmarshal(data, &man); err != nil {
		e.t.Fatal(err)
	}
	man["id"], man["name"] = id, name
	dir := e.t.TempDir()
	data, err = json.Marshal(man)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, sub := range []string{"schema", "migrations"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "schema", "settings.schema.json"), schema, 0o644); err != nil {
		e.t.Fatal(err)
	}
	for _, f := range []string{"000001_nothing.up.sql", "000001_nothing.down.sql"} {
		if err := os.WriteFile(filepath.Join(dir, "migrations", f), []byte("SELECT 1;\n"), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	exe, sum := e.binary()
	if err := e.m.Register(context.Background(), providers.Installed{ID: id, Version: "1.0.0", Dir: dir, BinaryPath: exe, SHA256: sum}); err != nil {
		e.t.Fatalf("installing the fake plugin as %s: %v", id, err)
	}
}

// binary returns this test binary's path and sha256.
func (e *env) binary() (string, []byte) {
	e.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := os.Open(exe)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		e.t.Fatal(err)
	}
	return exe, h.Sum(nil)
}

// waitFailed waits until the runtime says the plugin failed.
func (e *env) waitFailed(id string) pluginrt.Status {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, _ := e.rt.Status(id)
		if st.State == pluginrt.StateFailed {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("plugin %s did not fail: %+v", id, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// changes returns how often SettingsChanged was called.
func (e *env) changes() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.changed)
}

// stored returns the provider's stored settings (nil when none).
func (e *env) stored() map[string]any {
	e.t.Helper()
	v, err := e.store.Load(context.Background(), providers.EntryName(pluginID))
	if err != nil {
		return nil
	}
	return v
}

// save saves values and fails the test on an error or field problems.
func (e *env) save(values map[string]any) {
	e.t.Helper()
	fields, err := e.m.SaveSettings(context.Background(), pluginID, values)
	if err != nil || len(fields) > 0 {
		e.t.Fatalf("saving %v: fields %v, error %v", values, fields, err)
	}
}

// complete returns fully configured settings, enabled, with a public URL.
func complete() map[string]any {
	return map[string]any{
		"enabled": true, "access_key_id": "AKIAFAKE", "secret_access_key": "fake-secret-1",
		"account_id": "0123456789abcdef0123456789abcdef", "bucket": "results-bucket", "public_url": "https://pub.example",
	}
}

// with returns a copy of m with the changes applied (nil deletes).
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}
