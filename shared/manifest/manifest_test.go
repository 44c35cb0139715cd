package manifest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/magicads/r2storage/shared/settingsschema"
)

// goodManifest is a valid manifest of a made-up provider.
const goodManifest = `{
  "id": "acme-store",
  "name": "Acme Store",
  "description": "Stores results in Acme.",
  "version": "0.3.1",
  "kind": "storage-provider",
  "protocol_versions": [1],
  "min_host_version": "1.0.0",
  "executables": {"linux/amd64": "bin/acme-store", "windows/amd64": "bin/acme-store.exe"},
  "settings_schema": "schema/settings.schema.json",
  "migrations": "migrations",
  "pricing": {"model": "paid", "free_for_extended_license": true, "price": {"amount": "9.00", "currency": "EUR"}}
}`

// goodSchema is a valid settings schema using the whole vocabulary.
const goodSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "x-sections": [{"id": "credentials", "title": "Credentials"}, {"id": "advanced", "title": "Advanced"}],
  "x-fully-configured": {"all": ["token", "bucket"], "any": ["region", "endpoint"]},
  "properties": {
    "token": {"type": "string", "title": "Token", "writeOnly": true, "x-section": "credentials", "x-order": 1, "x-placeholder": "paste it"},
    "bucket": {"type": "string", "title": "Bucket", "pattern": "^[a-z0-9-]*$", "x-pattern-message": "lowercase only", "x-section": "credentials", "x-order": 2},
    "region": {"type": "string", "title": "Region", "enum": ["eu", "us"], "x-enum-labels": {"eu": "Europe", "us": "United States"}, "x-binds-secrets": true, "x-section": "advanced"},
    "endpoint": {"type": "string", "title": "Endpoint", "x-binds-secrets": true, "x-section": "advanced"}
  }
}`

func edited(t *testing.T, doc string, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func bundle(manifest, schema []byte) fstest.MapFS {
	return fstest.MapFS{
		"manifest.json":                   {Data: manifest},
		"schema/settings.schema.json":     {Data: schema},
		"migrations/000001_init.up.sql":   {Data: []byte("-- nothing\n")},
		"migrations/000001_init.down.sql": {Data: []byte("-- nothing\n")},
	}
}

func TestParseGood(t *testing.T) {
	m, err := Parse([]byte(goodManifest))
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "acme-store" || m.Pricing.Price == nil || m.Pricing.Price.Currency != "EUR" {
		t.Fatalf("manifest = %+v", m)
	}
	if exe, ok := m.Executable("windows", "amd64"); !ok || exe != "bin/acme-store.exe" {
		t.Errorf("Executable(windows/amd64) = %q, %v", exe, ok)
	}
	if got := strings.Join(m.Platforms(), " "); got != "linux/amd64 windows/amd64" {
		t.Errorf("Platforms = %s", got)
	}
}

func TestBrokenManifestsAreRefused(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(m map[string]any)
		field string
		in    string // substring of the field's message
	}{
		{"wrong kind", func(m map[string]any) { m["kind"] = "studio" }, "kind", "storage-provider"},
		{"missing id", func(m map[string]any) { delete(m, "id") }, "id", "required"},
		{"bad id", func(m map[string]any) { m["id"] = "Acme_Store" }, "id", "lowercase"},
		{"bad version", func(m map[string]any) { m["version"] = "1.0" }, "version", "semantic version"},
		{"bad min host version", func(m map[string]any) { m["min_host_version"] = "v1.0.0" }, "min_host_version", "semantic version"},
		{"unknown field", func(m map[string]any) { m["colour"] = "blue" }, "colour", "not a known field"},
		{"bad pricing model", func(m map[string]any) { m["pricing"].(map[string]any)["model"] = "subscription" }, "pricing.model", "free"},
		{"bad price", func(m map[string]any) {
			m["pricing"].(map[string]any)["price"] = map[string]any{"amount": "29", "currency": "usd"}
		}, "pricing.price.amount", "two decimals"},
		{"no protocol versions", func(m map[string]any) { m["protocol_versions"] = []any{} }, "protocol_versions", ""},
		{"absolute executable", func(m map[string]any) {
			m["executables"].(map[string]any)["linux/amd64"] = "/usr/bin/x"
		}, "executables.linux/amd64", "relative"},
		{"windows without exe", func(m map[string]any) {
			m["executables"].(map[string]any)["windows/amd64"] = "bin/acme-store"
		}, "executables.windows/amd64", "must end in .exe"},
		{"bad platform", func(m map[string]any) {
			m["executables"].(map[string]any)["plan9-amd64"] = "bin/x"
		}, "executables.plan9-amd64", "os/arch"},
		{"traversal in migrations", func(m map[string]any) { m["migrations"] = "../etc" }, "migrations", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(edited(t, goodManifest, tc.edit))
			if err == nil {
				t.Fatal("manifest accepted")
			}
			var de *settingsschema.DocumentError
			if !errors.As(err, &de) {
				t.Fatalf("error %T %v is not a *DocumentError", err, err)
			}
			msg, ok := de.Fields[tc.field]
			if !ok {
				t.Fatalf("fields %v do not name %q", de.Fields, tc.field)
			}
			if !strings.Contains(msg, tc.in) {
				t.Errorf("message for %s = %q, want it to mention %q", tc.field, msg, tc.in)
			}
			if !strings.Contains(err.Error(), tc.field) || !strings.HasPrefix(err.Error(), "manifest.json") {
				t.Errorf("error %q does not name manifest.json and %s", err, tc.field)
			}
		})
	}
}

func TestManifestNotJSON(t *testing.T) {
	for _, in := range []string{"", "{", "[]", `{"id":"x"} trailing`} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) accepted", in)
		}
	}
}

func TestCheckBundleGood(t *testing.T) {
	m, err := CheckBundle(bundle([]byte(goodManifest), []byte(goodSchema)))
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "acme-store" {
		t.Fatalf("manifest = %+v", m)
	}
}

// TestCheckBundleRefusals: each broken bundle is refused with an error that
// names the file and the field or file to fix.
func TestCheckBundleRefusals(t *testing.T) {
	schemaEdit := func(edit func(m map[string]any)) func(t *testing.T) fstest.MapFS {
		return func(t *testing.T) fstest.MapFS {
			return bundle([]byte(goodManifest), edited(t, goodSchema, edit))
		}
	}
	prop := func(m map[string]any, name string) map[string]any {
		return m["properties"].(map[string]any)[name].(map[string]any)
	}
	cases := []struct {
		name  string
		fsys  func(t *testing.T) fstest.MapFS
		wants []string
	}{
		{"no manifest", func(t *testing.T) fstest.MapFS {
			b := bundle([]byte(goodManifest), []byte(goodSchema))
			delete(b, "manifest.json")
			return b
		}, []string{"manifest.json"}},
		{"no settings schema", func(t *testing.T) fstest.MapFS {
			b := bundle([]byte(goodManifest), []byte(goodSchema))
			delete(b, "schema/settings.schema.json")
			return b
		}, []string{"settings_schema", "schema/settings.schema.json"}},
		{"misspelt x- keyword on a property", schemaEdit(func(m map[string]any) { prop(m, "bucket")["x-sectoin"] = "credentials" }),
			[]string{"schema/settings.schema.json", "properties.bucket", "x-section, x-order"}},
		{"unknown top-level x- keyword", schemaEdit(func(m map[string]any) { m["x-layout"] = "tabs" }),
			[]string{"schema/settings.schema.json", "x-layout", "x-sections, x-fully-configured"}},
		{"section not declared", schemaEdit(func(m map[string]any) { prop(m, "bucket")["x-section"] = "general" }),
			[]string{"properties.bucket.x-section", `"general"`}},
		{"completeness names a missing property", schemaEdit(func(m map[string]any) {
			m["x-fully-configured"] = map[string]any{"all": []any{"token", "secret"}}
		}), []string{"x-fully-configured.all", `"secret"`}},
		{"enum label for no value", schemaEdit(func(m map[string]any) {
			prop(m, "region")["x-enum-labels"] = map[string]any{"ap": "Asia"}
		}), []string{"properties.region.x-enum-labels", `"ap"`}},
		{"writeOnly boolean", schemaEdit(func(m map[string]any) {
			m["properties"].(map[string]any)["flag"] = map[string]any{"type": "boolean", "writeOnly": true}
		}), []string{"properties.flag.writeOnly"}},
		{"x-order not a number", schemaEdit(func(m map[string]any) { prop(m, "bucket")["x-order"] = "first" }),
			[]string{"properties.bucket.x-order"}},
		{"not an object schema", schemaEdit(func(m map[string]any) { m["type"] = "array" }), []string{"type"}},
		{"secret binding secrets", schemaEdit(func(m map[string]any) { prop(m, "token")["x-binds-secrets"] = true }),
			[]string{"token", "x-binds-secrets"}},
		{"external reference", schemaEdit(func(m map[string]any) { prop(m, "bucket")["$ref"] = "https://example.com/s.json" }),
			[]string{"points outside the schema document"}},
		{"migration without its down file", func(t *testing.T) fstest.MapFS {
			b := bundle([]byte(goodManifest), []byte(goodSchema))
			delete(b, "migrations/000001_init.down.sql")
			return b
		}, []string{"000001_init.up.sql has no 000001_init.down.sql"}},
		{"stray file in migrations", func(t *testing.T) fstest.MapFS {
			b := bundle([]byte(goodManifest), []byte(goodSchema))
			b["migrations/README.md"] = &fstest.MapFile{Data: []byte("x")}
			return b
		}, []string{"migrations/README.md", "golang-migrate"}},
		{"no migrations folder", func(t *testing.T) fstest.MapFS {
			b := bundle([]byte(goodManifest), []byte(goodSchema))
			delete(b, "migrations/000001_init.up.sql")
			delete(b, "migrations/000001_init.down.sql")
			return b
		}, []string{`migrations "migrations"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CheckBundle(tc.fsys(t))
			if err == nil {
				t.Fatal("bundle accepted")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
