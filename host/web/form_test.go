package web

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestBuildFormWithoutSections(t *testing.T) {
	schema := `{"properties": {"b": {"type": "string", "x-order": 2}, "a": {"type": "string", "x-order": 1}, "z": {"type": "boolean"}},
		"x-sections": [{"id": "s"}, {"id": "s", "title": "duplicate"}]}`
	f, err := buildForm("p", []byte(schema), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Title != "p" {
		t.Errorf("title %q, want the plugin id", f.Title)
	}
	if len(f.Sections) != 1 || f.Sections[0].Title != "Settings" {
		t.Fatalf("sections %+v, want one \"Settings\" section", f.Sections)
	}
	var keys []string
	for _, fl := range f.Sections[0].Fields {
		keys = append(keys, fl.Key+":"+fl.Control)
	}
	if got := strings.Join(keys, ","); got != "a:text,b:text,z:checkbox" {
		t.Errorf("fields %s: x-order first, then by key", got)
	}
}

func TestBuildFormSecretNeverEchoed(t *testing.T) {
	schema := `{"properties": {"k": {"type": "string", "writeOnly": true, "x-placeholder": "enter it"}}}`
	f, err := buildForm("p", []byte(schema), map[string]any{"k": "leaked"}, []string{"k"})
	if err != nil {
		t.Fatal(err)
	}
	fl := f.Sections[0].Fields[0]
	if fl.Control != "password" || fl.Value != "" || fl.Placeholder != StoredSecretPlaceholder || fl.SchemaPlaceholder != "enter it" {
		t.Errorf("secret field %+v", fl)
	}
}

func TestBuildFormRefusesBadSchemas(t *testing.T) {
	for _, s := range []string{"", "[]", "{", `{"properties": 3}`} {
		if _, err := buildForm("p", []byte(s), nil, nil); err == nil {
			t.Errorf("schema %q accepted", s)
		}
	}
	if _, err := buildForm("p", json.RawMessage(`{}`), nil, nil); err != nil {
		t.Errorf("an empty schema: %v", err)
	}
}
