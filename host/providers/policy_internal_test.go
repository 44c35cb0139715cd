package providers

import (
	"encoding/json"
	"testing"

	"github.com/magicads/r2storage/shared/settingsschema"
	"github.com/magicads/r2storage/shared/storage"
)

// TestHostSchemaAddsTheHostsSettings: the host's settings come before the
// provider's own (whatever x-order those start at), in a General section
// that is added when the provider's schema has none; a document that is
// not an object schema is refused with an error, never a panic.
func TestHostSchemaAddsTheHostsSettings(t *testing.T) {
	doc, err := HostSchema([]byte(`{"type":"object","additionalProperties":false,"properties":{"a":{"type":"string","x-order":1},"b":{"type":"string"}}}`), "Tiny Store")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Sections   []map[string]string `json:"x-sections"`
		Properties map[string]struct {
			Title string   `json:"title"`
			Order *float64 `json:"x-order"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Sections) != 1 || got.Sections[0]["id"] != "general" || got.Sections[0]["title"] != "General" {
		t.Errorf("x-sections %v, want the General section", got.Sections)
	}
	en, dl := got.Properties["enabled"], got.Properties["delete_local"]
	if en.Title != "Enable Tiny Store" || en.Order == nil || dl.Order == nil || !(*en.Order < *dl.Order && *dl.Order < 1) {
		t.Errorf("enabled %+v, delete_local %+v: want them first", en, dl)
	}
	s, err := settingsschema.Compile(doc)
	if err != nil {
		t.Fatal(err)
	}
	if fe := s.Validate(storage.Settings{"enabled": true, "delete_local": false, "a": "x"}); fe != nil {
		t.Errorf("the host's settings refused: %v", fe)
	}
	if fe := s.Validate(storage.Settings{"c": 1}); len(fe) != 1 || fe[0].Field != "c" {
		t.Errorf("an unknown field: %v", fe)
	}
	for _, bad := range []string{`[]`, `null`, `{"properties": 3}`, `{"x-sections": {}}`, `{`} {
		if _, err := HostSchema([]byte(bad), "X"); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestMissingSettingsWording: only the missing settings are named, by title.
func TestMissingSettingsWording(t *testing.T) {
	s, err := settingsschema.Compile([]byte(`{"type":"object","x-fully-configured":{"all":["a","b","c"],"any":["d","e"]},
		"properties":{"a":{"title":"Alpha"},"b":{"title":"Beta"},"c":{},"d":{"title":"Delta"},"e":{"title":"Echo"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		values map[string]any
		want   string
	}{
		{map[string]any{}, "settings incomplete: fill in Alpha, Beta and c, and Delta or Echo"},
		{map[string]any{"a": "1", "c": " ", "e": "1"}, "settings incomplete: fill in Beta and c"},
		{map[string]any{"a": "1", "b": "1", "c": "1"}, "settings incomplete: fill in Delta or Echo"},
	} {
		if got := incompleteMessage(s, c.values); got != c.want {
			t.Errorf("%v: %q, want %q", c.values, got, c.want)
		}
	}
	if got := missingSettings(s, map[string]any{"a": "1", "b": "1", "c": "1", "d": "1"}); got != "" {
		t.Errorf("nothing missing: %q", got)
	}
}
