package settingsschema

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/storage"
)

// TestCompileRefusesExternalRefs: a settings schema comes from a plugin
// archive, so compiling it must never read a file or fetch a URL. Each
// referenced document below would compile (or is readable) if it were
// loaded, so only the refusal can make Compile fail.
func TestCompileRefusesExternalRefs(t *testing.T) {
	dir := t.TempDir()
	beside := filepath.Join(dir, "beside.json")
	if err := os.WriteFile(beside, []byte(`{"type": "string"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)

	for name, c := range map[string]struct{ doc, ref string }{
		"file URL":                    {`{"properties": {"a": {"$ref": "file:///etc/passwd"}}}`, "file:///etc/passwd"},
		"file URL of a valid schema":  {`{"properties": {"a": {"$ref": "file://` + filepath.ToSlash(beside) + `"}}}`, "beside.json"},
		"relative ref, no $id":        {`{"properties": {"a": {"$ref": "beside.json"}}}`, "beside.json"},
		"relative ref with a pointer": {`{"properties": {"a": {"$ref": "beside.json#/type"}}}`, "beside.json"},
		"relative ref beside an $id":  {`{"$id": "https://schemas.example/p/settings.schema.json", "properties": {"a": {"$ref": "beside.json"}}}`, "https://schemas.example/p/beside.json"},
		"https ref":                   {`{"properties": {"a": {"$ref": "https://example.com/s.json"}}}`, "https://example.com/s.json"},
		"file $schema":                {`{"$schema": "file://` + filepath.ToSlash(beside) + `", "type": "object"}`, "beside.json"},
		"dynamic ref":                 {`{"properties": {"a": {"$dynamicRef": "beside.json"}}}`, "beside.json"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Compile([]byte(c.doc))
			if err == nil {
				t.Fatal("a schema with an external reference compiled")
			}
			msg := err.Error()
			if !strings.Contains(msg, c.ref) || !strings.Contains(msg, "outside the schema document") {
				t.Errorf("error %q does not name the reference %q as outside the schema", msg, c.ref)
			}
			if strings.Contains(msg, "root:") {
				t.Errorf("error %q quotes a file's content", msg)
			}
		})
	}
}

// TestCompileKeepsInternalRefs: references inside the document and the
// JSON Schema metaschemas still work.
func TestCompileKeepsInternalRefs(t *testing.T) {
	for _, doc := range []string{
		`{"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": {"name": {"type": "string", "maxLength": 3}}, "properties": {"a": {"$ref": "#/$defs/name"}}}`,
		`{"$id": "https://schemas.example/p/settings.schema.json", "$defs": {"name": {"type": "string", "maxLength": 3}}, "properties": {"a": {"$ref": "#/$defs/name"}}}`,
		`{"$id": "https://schemas.example/p/settings.schema.json", "$defs": {"name": {"type": "string", "maxLength": 3}}, "properties": {"a": {"$ref": "https://schemas.example/p/settings.schema.json#/$defs/name"}}}`,
		`{"$defs": {"name": {"$anchor": "short", "type": "string", "maxLength": 3}}, "properties": {"a": {"$ref": "#short"}}}`,
		`{"$schema": "https://json-schema.org/draft/2020-12/schema", "properties": {"a": {"$ref": "https://json-schema.org/draft/2020-12/meta/validation#/$defs/nonNegativeInteger"}}}`,
	} {
		s, err := Compile([]byte(doc))
		if err != nil {
			t.Errorf("Compile(%s): %v", doc, err)
			continue
		}
		if s.Validate(storage.Settings{"a": "abcd"}) == nil && !strings.Contains(doc, "nonNegativeInteger") {
			t.Errorf("the referenced definition was not applied: %s", doc)
		}
		if strings.Contains(doc, "nonNegativeInteger") && s.Validate(storage.Settings{"a": -1}) == nil {
			t.Errorf("the metaschema definition was not applied: %s", doc)
		}
	}
}
