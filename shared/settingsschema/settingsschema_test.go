package settingsschema

import (
	"testing"

	"github.com/magicads/r2storage/shared/storage"
)

const doc = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "x-fully-configured": {"all": ["bucket", "secret"], "any": ["enabled"]},
  "properties": {
    "bucket": {"type": "string", "pattern": "^[a-z0-9-]*$", "x-pattern-message": "use lowercase letters, digits and hyphens"},
    "secret": {"type": "string", "writeOnly": true},
    "enabled": {"type": "boolean"}
  }
}`

func TestValidate(t *testing.T) {
	s, err := Compile([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if fe := s.Validate(storage.Settings{"bucket": "media", "enabled": true}); fe != nil {
		t.Fatalf("valid settings refused: %v", fe)
	}
	fe := s.Validate(storage.Settings{"bucket": "Bad_Name", "enabled": "yes", "colour": 1})
	want := map[string]string{"bucket": "use lowercase letters, digits and hyphens", "colour": "is not a known setting", "enabled": ""}
	if len(fe) != len(want) {
		t.Fatalf("field errors %v, want fields %v", fe, want)
	}
	for _, f := range fe {
		msg, ok := want[f.Field]
		if !ok || (msg != "" && f.Message != msg) || f.Message == "" {
			t.Errorf("field error %+v", f)
		}
	}
	if w := s.WriteOnly(); len(w) != 1 || w[0] != "secret" {
		t.Fatalf("WriteOnly = %v", w)
	}
}

func TestCompileRefusesBrokenSchemas(t *testing.T) {
	for _, d := range []string{`not json`, `{"type": "no-such-type"}`} {
		if _, err := Compile([]byte(d)); err == nil {
			t.Errorf("Compile(%q) succeeded", d)
		}
	}
}

func TestFullyConfigured(t *testing.T) {
	s, err := Compile([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		values map[string]any
		want   bool
	}{
		{map[string]any{"bucket": "b", "secret": "s", "enabled": false}, true},
		{map[string]any{"bucket": "b", "secret": " ", "enabled": true}, false},
		{map[string]any{"bucket": "b", "secret": "s"}, false},
		{map[string]any{}, false},
	} {
		if got := s.FullyConfigured(c.values); got != c.want {
			t.Errorf("FullyConfigured(%v) = %v, want %v", c.values, got, c.want)
		}
	}
}

func TestSecretHelpers(t *testing.T) {
	s, err := Compile([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]any{"bucket": "b", "secret": "s3cr3t"}
	if pub := s.Public(v); pub["secret"] != nil || pub["bucket"] != "b" || v["secret"] != "s3cr3t" {
		t.Fatalf("Public = %v (input %v)", pub, v)
	}
	if set := s.SecretsSet(v); len(set) != 1 || set[0] != "secret" {
		t.Fatalf("SecretsSet = %v", set)
	}
	if set := s.SecretsSet(map[string]any{"secret": ""}); len(set) != 0 {
		t.Fatalf("blank secret counted as set: %v", set)
	}
	if vals := s.SecretValuesOf(v); len(vals) != 1 || vals[0] != "s3cr3t" {
		t.Fatalf("SecretValuesOf = %v", vals)
	}
}
