package r2storage

import (
	"encoding/json"
	"io/fs"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/manifest"
	"github.com/magicads/r2storage/shared/settingsschema"
)

func TestEmbeddedBundleChecks(t *testing.T) {
	m, err := LoadManifest()
	if err != nil {
		t.Fatalf("LoadManifest: %v", err)
	}
	if m.ID != "cloudflare-r2" || m.Name != "Cloudflare R2 Storage" || m.Version != "1.0.0" || m.Kind != "storage-provider" {
		t.Errorf("manifest identity = %+v", m)
	}
	if len(m.ProtocolVersions) != 1 || m.ProtocolVersions[0] != 1 {
		t.Errorf("protocol_versions = %v", m.ProtocolVersions)
	}
	if m.Pricing.Model != "paid" || !m.Pricing.FreeForExtendedLicense || m.Pricing.Price == nil || m.Pricing.Price.Currency != "USD" {
		t.Errorf("pricing = %+v", m.Pricing)
	}
	want := map[string]string{
		"linux/amd64":   "bin/cloudflare-r2",
		"linux/arm64":   "bin/cloudflare-r2",
		"darwin/amd64":  "bin/cloudflare-r2",
		"darwin/arm64":  "bin/cloudflare-r2",
		"windows/amd64": "bin/cloudflare-r2.exe",
	}
	if len(m.Executables) != len(want) {
		t.Errorf("executables = %v", m.Executables)
	}
	for k, v := range want {
		goos, goarch, _ := strings.Cut(k, "/")
		if got, ok := m.Executable(goos, goarch); !ok || got != v {
			t.Errorf("Executable(%s) = %q, %v; want %q", k, got, ok, v)
		}
	}
	// The files the manifest points at are in the bundle.
	if _, err := fs.Stat(Files(), m.SettingsSchema); err != nil {
		t.Errorf("settings_schema %q: %v", m.SettingsSchema, err)
	}
	mig, err := fs.Sub(Files(), m.Migrations)
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	for _, name := range []string{"000001_register_provider.up.sql", "000001_register_provider.down.sql"} {
		if _, err := fs.Stat(mig, name); err != nil {
			t.Errorf("migration %s: %v", name, err)
		}
	}
}

// settingsDoc returns the embedded settings schema document.
func settingsDoc(t *testing.T) []byte {
	t.Helper()
	data, err := fs.ReadFile(Files(), "schema/settings.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// compileSettings compiles the embedded settings schema with the validator
// the plugin and the host use.
func compileSettings(t *testing.T) *settingsschema.Schema {
	t.Helper()
	s, err := settingsschema.Compile(settingsDoc(t))
	if err != nil {
		t.Fatalf("compiling the settings schema: %v", err)
	}
	return s
}

func TestSettingsSchemaCompiles(t *testing.T) {
	if w := compileSettings(t).WriteOnly(); len(w) != 1 || w[0] != "secret_access_key" {
		t.Fatalf("write-only fields = %v, want [secret_access_key]", w)
	}
}

func TestValidSettingsPass(t *testing.T) {
	s := compileSettings(t)
	for name, v := range map[string]map[string]any{
		"empty (nothing saved yet)": {},
		"partial":                   {"bucket": "my-magicads-media"},
		"blank strings":             {"access_key_id": "", "secret_access_key": "", "account_id": "", "bucket": "", "endpoint": "", "public_url": "", "key_prefix": ""},
		"full": {
			"access_key_id":     "0123456789abcdef0123456789abcdef",
			"secret_access_key": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			"account_id":        "0123456789ABCDEF0123456789abcdef",
			"bucket":            "my-magicads-media",
			"endpoint":          "https://0123456789abcdef0123456789abcdef.eu.r2.cloudflarestorage.com",
			"public_url":        "https://pub-0123456789.r2.dev/",
			"key_prefix":        "media/prod.v2/...x/.hidden",
			"use_path_style":    true,
			"jurisdiction":      "eu",
		},
		"custom endpoint, http, fedramp": {"endpoint": "http://127.0.0.1:9000", "jurisdiction": "fedramp"},
		"unicode prefix":                 {"key_prefix": "médias/été"},
	} {
		if fe := s.Validate(v); fe != nil {
			t.Errorf("%s: %v", name, fe)
		}
	}
}

func TestBadSettingsFail(t *testing.T) {
	s := compileSettings(t)
	long := strings.Repeat("a", 513)
	cases := []struct {
		name   string
		values map[string]any
		field  string
	}{
		{"bucket with capitals and underscore", map[string]any{"bucket": "Bad_Name"}, "bucket"},
		{"bucket too short", map[string]any{"bucket": "ab"}, "bucket"},
		{"bucket ends with hyphen", map[string]any{"bucket": "abc-"}, "bucket"},
		{"bucket too long", map[string]any{"bucket": strings.Repeat("a", 64)}, "bucket"},
		{"jurisdiction mars", map[string]any{"jurisdiction": "mars"}, "jurisdiction"},
		{"unknown key", map[string]any{"region": "auto"}, "region"},
		{"ftp endpoint", map[string]any{"endpoint": "ftp://x"}, "endpoint"},
		{"endpoint with query", map[string]any{"endpoint": "https://x.example?a=1"}, "endpoint"},
		{"endpoint with credentials", map[string]any{"endpoint": "https://u:p@x.example"}, "endpoint"},
		{"public url without scheme", map[string]any{"public_url": "pub-x.r2.dev"}, "public_url"},
		{"the host's enabled", map[string]any{"enabled": true}, "enabled"},
		{"the host's delete_local", map[string]any{"delete_local": true}, "delete_local"},
		{"use_path_style as number", map[string]any{"use_path_style": 1}, "use_path_style"},
		{"account id too short", map[string]any{"account_id": "abc"}, "account_id"},
		{"account id not hex", map[string]any{"account_id": strings.Repeat("z", 32)}, "account_id"},
		{"prefix leading slash", map[string]any{"key_prefix": "/media"}, "key_prefix"},
		{"prefix trailing slash", map[string]any{"key_prefix": "media/"}, "key_prefix"},
		{"prefix dotdot", map[string]any{"key_prefix": "media/../etc"}, "key_prefix"},
		{"prefix dot", map[string]any{"key_prefix": "./media"}, "key_prefix"},
		{"prefix only dotdot", map[string]any{"key_prefix": ".."}, "key_prefix"},
		{"prefix empty segment", map[string]any{"key_prefix": "a//b"}, "key_prefix"},
		{"prefix backslash", map[string]any{"key_prefix": `media\prod`}, "key_prefix"},
		{"prefix control char", map[string]any{"key_prefix": "media\x00"}, "key_prefix"},
		{"prefix too long", map[string]any{"key_prefix": long}, "key_prefix"},
		{"secret with space", map[string]any{"secret_access_key": "a b"}, "secret_access_key"},
		{"access key as number", map[string]any{"access_key_id": 12}, "access_key_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fe := s.Validate(tc.values)
			if len(fe) != 1 || fe[0].Field != tc.field || fe[0].Message == "" {
				t.Fatalf("field errors = %v, want exactly one for %q", fe, tc.field)
			}
		})
	}
	// A friendly message instead of the raw regular expression.
	fe := s.Validate(map[string]any{"bucket": "Bad_Name"})
	if len(fe) != 1 || !strings.Contains(fe[0].Message, "lowercase") {
		t.Errorf("bucket message = %v", fe)
	}
}

// settingsSchemaDoc is the part of the settings schema the host's form
// renderer reads.
type settingsSchemaDoc struct {
	Schema     string `json:"$schema"`
	Type       string `json:"type"`
	Additional *bool  `json:"additionalProperties"`
	Required   []string
	Sections   []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	} `json:"x-sections"`
	FullyConfigured struct {
		All []string `json:"all"`
		Any []string `json:"any"`
	} `json:"x-fully-configured"`
	Properties map[string]map[string]any `json:"properties"`
}

func TestSettingsSchemaShape(t *testing.T) {
	data := settingsDoc(t)
	var doc settingsSchemaDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Schema != "https://json-schema.org/draft/2020-12/schema" || doc.Type != "object" {
		t.Errorf("$schema/type = %q/%q", doc.Schema, doc.Type)
	}
	if doc.Additional == nil || *doc.Additional {
		t.Error("additionalProperties must be false")
	}
	if len(doc.Required) != 0 {
		t.Errorf("required = %v; partial saves must be allowed", doc.Required)
	}
	// enabled and delete_local are the host's settings, not the plugin's.
	wantKeys := []string{"access_key_id", "secret_access_key", "account_id", "bucket", "endpoint", "public_url", "key_prefix", "use_path_style", "jurisdiction"}
	if len(doc.Properties) != len(wantKeys) {
		t.Errorf("properties = %d, want %d", len(doc.Properties), len(wantKeys))
	}
	sections := map[string]bool{}
	for _, s := range doc.Sections {
		sections[s.ID] = s.Title != ""
	}
	if len(sections) != 3 || !sections["general"] || !sections["credentials"] || !sections["advanced"] {
		t.Errorf("x-sections = %+v", doc.Sections)
	}
	lastOrder := 0.0
	for _, key := range wantKeys {
		p, ok := doc.Properties[key]
		if !ok {
			t.Errorf("property %s missing", key)
			continue
		}
		for _, attr := range []string{"title", "description", "x-section"} {
			if s, _ := p[attr].(string); s == "" {
				t.Errorf("%s: %s missing", key, attr)
			}
		}
		if sec, _ := p["x-section"].(string); !sections[sec] {
			t.Errorf("%s: x-section %q is not in x-sections", key, sec)
		}
		if _, ok := p["default"]; !ok {
			t.Errorf("%s: no default", key)
		}
		order, _ := p["x-order"].(float64)
		if order <= lastOrder {
			t.Errorf("%s: x-order %v not after %v (seed order)", key, order, lastOrder)
		}
		lastOrder = order
		wo, _ := p["writeOnly"].(bool)
		if wo != (key == "secret_access_key") {
			t.Errorf("%s: writeOnly = %v", key, wo)
		}
	}
	if got := doc.Properties["jurisdiction"]["default"]; got != "default" {
		t.Errorf("jurisdiction default = %v", got)
	}
	if strings.Join(doc.FullyConfigured.All, ",") != "access_key_id,secret_access_key,bucket" ||
		strings.Join(doc.FullyConfigured.Any, ",") != "account_id,endpoint" {
		t.Errorf("x-fully-configured = %+v", doc.FullyConfigured)
	}
	titles := map[string]string{
		"access_key_id": "Access Key ID", "secret_access_key": "Secret Access Key",
		"account_id": "Account ID", "bucket": "Bucket", "endpoint": "Custom Endpoint",
		"public_url": "Public / CDN URL", "key_prefix": "Key Prefix",
		"use_path_style": "Use path-style endpoint", "jurisdiction": "Jurisdiction",
	}
	for k, want := range titles {
		if got := doc.Properties[k]["title"]; got != want {
			t.Errorf("%s title = %v, want %q", k, got, want)
		}
	}
}

func TestBundleFiles(t *testing.T) {
	var names []string
	err := fs.WalkDir(Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(names, " ")
	for _, want := range []string{manifest.Path, "schema/settings.schema.json", "migrations/000001_register_provider.up.sql"} {
		if !strings.Contains(got, want) {
			t.Errorf("bundle %v lacks %s", names, want)
		}
	}
}
