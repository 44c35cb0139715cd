package providers_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/testdb"
)

// A provider that is not R2: its own settings only, no General section,
// no enabled or delete_local.
const (
	tinyID     = "tiny-store"
	tinyName   = "Tiny Store"
	tinySchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Tiny Store settings",
  "type": "object",
  "additionalProperties": false,
  "x-sections": [{"id": "access", "title": "Access"}],
  "x-fully-configured": {"all": ["token", "container"], "any": ["region", "service_url"]},
  "properties": {
    "token": {"type": "string", "title": "API Token", "writeOnly": true, "default": "", "x-section": "access", "x-order": 1},
    "container": {"type": "string", "title": "Container", "default": "", "x-section": "access", "x-order": 2},
    "region": {"type": "string", "title": "Region", "default": "", "x-section": "access", "x-order": 3},
    "service_url": {"type": "string", "title": "Service URL", "default": "", "x-section": "access", "x-order": 4}
  }
}`
)

// tinyComplete returns fully configured, enabled settings of tinyID.
func tinyComplete() map[string]any {
	return map[string]any{"enabled": true, "token": "tiny-secret", "container": "media", "region": "north"}
}

// schemaProps returns the properties of provider id's settings schema as the host serves it.
func schemaProps(t *testing.T, m *providers.Manager, id string) (map[string]map[string]any, []string) {
	t.Helper()
	doc, err := m.SchemaJSON(id)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Sections []struct {
			ID string `json:"id"`
		} `json:"x-sections"`
		Properties map[string]map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(doc, &s); err != nil {
		t.Fatal(err)
	}
	var sections []string
	for _, sec := range s.Sections {
		sections = append(sections, sec.ID)
	}
	return s.Properties, sections
}

// checkHostProps: the schema the host serves declares enabled and
// delete_local as the host's, in the General section.
func checkHostProps(t *testing.T, m *providers.Manager, id, name string) {
	t.Helper()
	props, sections := schemaProps(t, m, id)
	if !slices.Contains(sections, "general") {
		t.Errorf("x-sections %v has no general section", sections)
	}
	for k, title := range map[string]string{"enabled": "Enable " + providers.ShortName(name), "delete_local": "Delete local copy after upload"} {
		p := props[k]
		if p == nil {
			t.Errorf("the schema served has no %s", k)
			continue
		}
		if p["title"] != title || p["type"] != "boolean" || p["default"] != false || p["x-section"] != "general" || p["description"] == "" {
			t.Errorf("%s = %v, want the host's: title %q, boolean, default false, in general", k, p, title)
		}
	}
}

// checkRoutes: id is enabled, fully configured and running: an option
// that can be the Default Storage, whose uploads keep or remove the local
// copy as delete_local says.
func checkRoutes(t *testing.T, m *providers.Manager, id string, deleteLocal bool) {
	t.Helper()
	ctx := context.Background()
	if !slices.ContainsFunc(m.Options(ctx), func(o providers.Option) bool { return o.ID == id }) {
		t.Fatalf("%s is not a Default Storage option: %+v", id, m.Options(ctx))
	}
	if err := m.SetDefault(ctx, id); err != nil {
		t.Fatal(err)
	}
	r := m.Route(ctx)
	if r.State != results.RouteReady || r.Target.ID != id || r.Target.DeleteLocal != deleteLocal {
		t.Fatalf("route %+v, want ready to %s with DeleteLocal %v", r, id, deleteLocal)
	}
}

// TestHostOwnsEnabledAndDeleteLocal: a provider whose schema declares
// neither enabled nor delete_local gets both from the host (in the schema
// it serves and checks), can be enabled and chosen as Default Storage, and
// delete_local is honoured; its plugin never sees them (the fake refuses
// them). Unknown fields are still refused, naming them.
func TestHostOwnsEnabledAndDeleteLocal(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.installWith(tinyID, tinyName, []byte(tinySchema))
			ctx := context.Background()
			checkHostProps(t, e.m, tinyID, tinyName)

			fields, err := e.m.SaveSettings(ctx, tinyID, with(tinyComplete(), "delete_local", true))
			if err != nil || len(fields) > 0 {
				t.Fatalf("saving enabled and delete_local: fields %v, error %v", fields, err)
			}
			sv, err := e.m.Settings(ctx, tinyID)
			if err != nil {
				t.Fatal(err)
			}
			if sv.Values["enabled"] != true || sv.Values["delete_local"] != true || sv.Problem != "" {
				t.Fatalf("settings %+v", sv)
			}
			if _, ok := sv.Values["token"]; ok {
				t.Fatalf("the secret is returned: %+v", sv.Values)
			}
			checkRoutes(t, e.m, tinyID, true)

			fields, err = e.m.SaveSettings(ctx, tinyID, with(tinyComplete(), "delete_local", false))
			if err != nil || len(fields) > 0 {
				t.Fatalf("turning delete_local off: fields %v, error %v", fields, err)
			}
			checkRoutes(t, e.m, tinyID, false)

			fields, err = e.m.SaveSettings(ctx, tinyID, map[string]any{"colour": "blue", "enabled": "yes"})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, f := range fields {
				got[f.Field] = f.Message
			}
			if got["colour"] != "is not a known setting" || got["enabled"] == "" || len(got) != 2 {
				t.Fatalf("unknown field and wrong type: %v", fields)
			}

			if fields, err := e.m.SaveSettings(ctx, tinyID, with(tinyComplete(), "enabled", false)); err != nil || len(fields) > 0 {
				t.Fatalf("disabling: fields %v, error %v", fields, err)
			}
			if r := e.m.Route(ctx); r.State != results.RouteOff {
				t.Fatalf("disabled Default Storage routes %+v", r)
			}
		})
	}
}

// TestProviderBuiltBeforeTheHostOwnedThem: a plugin whose schema still
// declares enabled and delete_local (built from the SDK before the host
// owned them) keeps working: the host's definitions replace its own, the
// plugin is never given them, and they work as for any provider.
func TestProviderBuiltBeforeTheHostOwnedThem(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "r2-settings-before-host-policy.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.installWith(otherID, otherName, old)
			ctx := context.Background()
			checkHostProps(t, e.m, otherID, otherName)
			fields, err := e.m.SaveSettings(ctx, otherID, with(complete(), "delete_local", true))
			if err != nil || len(fields) > 0 {
				t.Fatalf("saving: fields %v, error %v", fields, err)
			}
			if sv, err := e.m.Settings(ctx, otherID); err != nil || sv.Problem != "" || sv.Values["enabled"] != true {
				t.Fatalf("settings %+v, %v", sv, err)
			}
			checkRoutes(t, e.m, otherID, true)
		})
	}
}

// TestStoredPolicyKeepsItsMeaning: a settings entry written before the
// host owned enabled and delete_local (they sit in the entry beside the
// provider's settings) means what it meant, with no admin action.
func TestStoredPolicyKeepsItsMeaning(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.install()
			ctx := context.Background()
			if err := e.store.Save(ctx, providers.EntryName(pluginID), pluginID, with(complete(), "delete_local", true)); err != nil {
				t.Fatal(err)
			}
			if err := e.m.OnStart(ctx, pluginID, e.rt.Provider(pluginID)); err != nil {
				t.Fatal(err)
			}
			if sv, err := e.m.Settings(ctx, pluginID); err != nil || sv.Problem != "" || sv.Values["enabled"] != true || sv.Values["delete_local"] != true {
				t.Fatalf("settings %+v, %v", sv, err)
			}
			checkRoutes(t, e.m, pluginID, true)
		})
	}
}

// TestIncompleteSettingsAreWordedFromTheSchema: the problem of settings
// that are not complete names the missing fields by their titles in the
// provider's own schema (x-fully-configured), never R2's words.
func TestIncompleteSettingsAreWordedFromTheSchema(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.installWith(tinyID, tinyName, []byte(tinySchema))
			e.install()
			ctx := context.Background()
			for _, c := range []struct {
				id     string
				values map[string]any
				want   string
			}{
				{tinyID, map[string]any{"enabled": true, "container": "media"}, "settings incomplete: fill in API Token, and Region or Service URL"},
				{tinyID, map[string]any{"enabled": true, "token": "tiny-secret"}, "settings incomplete: fill in Container, and Region or Service URL"},
				{tinyID, map[string]any{"enabled": true, "service_url": "https://tiny.example"}, "settings incomplete: fill in Container"},
				{pluginID, map[string]any{"enabled": true}, "settings incomplete: fill in Access Key ID, Secret Access Key and Bucket, and Account ID or Custom Endpoint"},
				{pluginID, map[string]any{"enabled": true, "bucket": "results-bucket", "account_id": "0123456789abcdef0123456789abcdef"}, "settings incomplete: fill in Access Key ID and Secret Access Key"},
				{pluginID, map[string]any{"enabled": true, "access_key_id": "AKIAFAKE", "secret_access_key": "fake-secret-1"}, "settings incomplete: fill in Bucket, and Account ID or Custom Endpoint"},
				{pluginID, map[string]any{"enabled": true, "access_key_id": "AKIAFAKE", "secret_access_key": "fake-secret-1", "bucket": "results-bucket", "endpoint": "https://r2.example"}, ""},
			} {
				fields, err := e.m.SaveSettings(ctx, c.id, c.values)
				if err != nil || len(fields) > 0 {
					t.Fatalf("saving %v: fields %v, error %v", c.values, fields, err)
				}
				sv, err := e.m.Settings(ctx, c.id)
				if err != nil || sv.Problem != c.want {
					t.Fatalf("%s after saving %v: problem %q (%v), want %q", c.id, c.values, sv.Problem, err, c.want)
				}
				if c.want == "" {
					continue
				}
				var reason string
				for _, u := range e.m.StorageStatus(ctx, nil, nil).Unavailable {
					if u.ID == c.id {
						reason = u.Reason
					}
				}
				if reason != c.want {
					t.Fatalf("%s: storage overview reason %q, want %q", c.id, reason, c.want)
				}
			}
		})
	}
}

// beforeHostPolicy is the last commit whose plugins declared enabled and
// delete_local in their own settings schema.
const beforeHostPolicy = "696bc3867425dc4f692b06dec85538f9c2c8620c"

// TestRealPluginBuiltBeforeTheHostOwnedThem: the R2 plugin built, with its
// bundle, from beforeHostPolicy (its schema declares enabled and
// delete_local) is installed, checks and takes settings saved with both,
// and is an option whose uploads honour delete_local.
func TestRealPluginBuiltBeforeTheHostOwnedThem(t *testing.T) {
	bin := plugintest.BuildAt(t, beforeHostPolicy, "./plugin/cmd/cloudflare-r2")
	bundle := filepath.Join(filepath.Dir(bin), "src") // the commit's tree, as BuildAt extracted it
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			ctx := context.Background()
			if err := e.m.Register(ctx, providers.Installed{ID: pluginID, Version: "1.0.0", Dir: bundle, BinaryPath: bin, SHA256: sum[:]}); err != nil {
				t.Fatalf("installing the plugin built at %s: %v", beforeHostPolicy[:7], err)
			}
			checkHostProps(t, e.m, pluginID, "Cloudflare R2 Storage")
			fields, err := e.m.SaveSettings(ctx, pluginID, with(complete(), "delete_local", true, "endpoint", "http://127.0.0.1:1"))
			if err != nil || len(fields) > 0 {
				t.Fatalf("saving: fields %v, error %v", fields, err)
			}
			if sv, err := e.m.Settings(ctx, pluginID); err != nil || sv.Problem != "" || sv.Values["enabled"] != true || sv.Values["delete_local"] != true {
				t.Fatalf("settings %+v, %v", sv, err)
			}
			checkRoutes(t, e.m, pluginID, true)
		})
	}
}
