package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// schemaJSON is the part of a settings JSON Schema the form is built from.
type schemaJSON struct {
	Title      string          `json:"title"`
	Sections   []sectionJSON   `json:"x-sections"`
	Properties map[string]prop `json:"properties"`
	Required   []string        `json:"required"`
}

// sectionJSON is one entry of x-sections.
type sectionJSON struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description"`
}

// prop is one property of the schema.
type prop struct {
	Type        json.RawMessage   `json:"type"`
	Title       string            `json:"title"`
	Description string            `json:"description"`
	Default     any               `json:"default"`
	Enum        []any             `json:"enum"`
	EnumLabels  map[string]string `json:"x-enum-labels"`
	WriteOnly   bool              `json:"writeOnly"`
	ReadOnly    bool              `json:"readOnly"`
	Section     string            `json:"x-section"`
	Order       *float64          `json:"x-order"`
	Placeholder string            `json:"x-placeholder"`
	// BindsSecrets marks a property that says where the secrets are sent
	// (an endpoint): changing it needs the secrets entered again.
	BindsSecrets bool `json:"x-binds-secrets"`
}

// form is a plugin's config screen, built from its settings schema.
type form struct {
	// PluginID is the plugin the settings belong to.
	PluginID string
	// Title is the schema's title (the plugin id without one).
	Title string
	// Sections are in x-sections order; fields without a known section
	// follow in a last "Other settings" section.
	Sections []formSection
	// Problem says why the provider cannot be used yet, if it cannot.
	Problem string
}

// formSection is one section of the form.
type formSection struct {
	ID, Title, Description string
	Fields                 []formField
}

// formField is one input of the form.
type formField struct {
	// Key is the settings key; the input's id is "field-" + Key.
	Key string
	// Label is the property's title (the key without one).
	Label string
	// Help is the property's description.
	Help string
	// Control is checkbox, select, password, number, textarea or text.
	Control string
	// Type is the JSON type the browser sends: boolean, string, number,
	// integer or json.
	Type string
	// Value is the current value as text (always "" for a write-only field).
	Value string
	// Checked is a checkbox's state.
	Checked bool
	// Placeholder is x-placeholder, or the stored-secret placeholder.
	Placeholder string
	// SchemaPlaceholder is x-placeholder, kept for after a secret is cleared.
	SchemaPlaceholder string
	// Options are a select's choices.
	Options []formOption
	// Required marks a property the schema requires.
	Required bool
	// ReadOnly fields are shown but never sent.
	ReadOnly bool
	// BindsSecrets marks an input that says where the secrets are sent
	// (x-binds-secrets); Stored is its stored value as text (the default
	// when unset) and Default the schema default, so the page can tell
	// when it was changed.
	BindsSecrets    bool
	Stored, Default string
	// SecretStored marks a write-only field whose value is stored.
	SecretStored bool
	// Warning, on a write-only field of a schema with x-binds-secrets, says
	// that changing those fields needs the secret entered again; the page
	// shows it once one of them is edited while the secret is blank.
	Warning string
}

// formOption is one choice of a select.
type formOption struct {
	Value, Label string
	Selected     bool
}

// buildForm builds the config form of plugin id from its settings schema,
// its stored values and the names of its stored secrets.
func buildForm(id string, schema []byte, values map[string]any, secretsSet []string) (form, error) {
	var s schemaJSON
	dec := json.NewDecoder(bytes.NewReader(schema))
	dec.UseNumber()
	if len(bytes.TrimSpace(schema)) == 0 {
		return form{}, fmt.Errorf("plugin %s has no settings schema", id)
	}
	if err := dec.Decode(&s); err != nil {
		return form{}, fmt.Errorf("the settings schema of plugin %s cannot be read: %w", id, err)
	}
	f := form{PluginID: id, Title: s.Title}
	if f.Title == "" {
		f.Title = id
	}

	keys := make([]string, 0, len(s.Properties))
	for k := range s.Properties {
		keys = append(keys, k)
	}
	sort.SliceStable(keys, func(i, j int) bool {
		oi, oj := s.Properties[keys[i]].Order, s.Properties[keys[j]].Order
		switch {
		case oi != nil && oj != nil && *oi != *oj:
			return *oi < *oj
		case oi != nil && oj == nil:
			return true
		case oi == nil && oj != nil:
			return false
		}
		return keys[i] < keys[j]
	})

	index := map[string]int{}
	for _, sec := range s.Sections {
		if _, dup := index[sec.ID]; dup {
			continue
		}
		index[sec.ID] = len(f.Sections)
		title := sec.Title
		if title == "" {
			title = sec.ID
		}
		f.Sections = append(f.Sections, formSection{ID: sec.ID, Title: title, Description: sec.Description})
	}
	var binding []string
	for _, k := range keys {
		if p := s.Properties[k]; p.BindsSecrets && !p.WriteOnly {
			binding = append(binding, labelOf(k, p))
		}
	}
	var other []formField
	for _, k := range keys {
		field := buildField(k, s.Properties[k], values, secretsSet, slices.Contains(s.Required, k))
		if field.Control == "password" && len(binding) > 0 {
			field.Warning = "Changing " + joinOr(binding) + " does not keep the stored " + field.Label + ": enter it again before you save."
		}
		if i, ok := index[s.Properties[k].Section]; ok {
			f.Sections[i].Fields = append(f.Sections[i].Fields, field)
		} else {
			other = append(other, field)
		}
	}
	f.Sections = slices.DeleteFunc(f.Sections, func(sec formSection) bool { return len(sec.Fields) == 0 })
	if len(other) > 0 {
		title := "Other settings"
		if len(f.Sections) == 0 {
			title = "Settings"
		}
		f.Sections = append(f.Sections, formSection{ID: "other", Title: title, Fields: other})
	}
	return f, nil
}

// buildField builds one input from its property.
func buildField(key string, p prop, values map[string]any, secretsSet []string, required bool) formField {
	f := formField{Key: key, Label: p.Title, Help: p.Description, Placeholder: p.Placeholder,
		SchemaPlaceholder: p.Placeholder, Required: required, ReadOnly: p.ReadOnly}
	f.Label = labelOf(key, p)
	value, ok := values[key]
	if !ok || value == nil {
		value = p.Default
	}
	if p.BindsSecrets && !p.WriteOnly {
		f.BindsSecrets, f.Stored, f.Default = true, text(value), text(p.Default)
	}
	f.Type = jsonType(p.Type)
	switch {
	case len(p.Enum) > 0:
		f.Control = "select"
		if f.Type == "" {
			f.Type = jsonType(nil, p.Enum...)
		}
		cur := text(value)
		for _, e := range p.Enum {
			v := text(e)
			label := p.EnumLabels[v]
			if label == "" {
				label = v
			}
			f.Options = append(f.Options, formOption{Value: v, Label: label, Selected: v == cur})
		}
	case p.WriteOnly:
		// A secret is never echoed back, whatever the values say.
		f.Control = "password"
		if slices.Contains(secretsSet, key) {
			f.Placeholder = StoredSecretPlaceholder
			f.SecretStored = true
		}
	case f.Type == "boolean":
		f.Control = "checkbox"
		f.Checked = value == true
	case f.Type == "number" || f.Type == "integer":
		f.Control = "number"
		f.Value = text(value)
	case f.Type == "object" || f.Type == "array":
		f.Control, f.Type = "textarea", "json"
		if value != nil {
			b, err := json.MarshalIndent(value, "", "  ")
			if err == nil {
				f.Value = string(b)
			}
		}
	default:
		f.Control, f.Type = "text", "string"
		f.Value = text(value)
	}
	if f.Type == "" {
		f.Type = "string"
	}
	return f
}

// labelOf returns a property's title, or its key without one.
func labelOf(key string, p prop) string {
	if p.Title != "" {
		return p.Title
	}
	return key
}

// joinOr joins names as "a", "a or b" or "a, b or c".
func joinOr(names []string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// jsonType returns a schema type's first non-null name, or the type of the
// first enum value when the schema gives none.
func jsonType(raw json.RawMessage, enum ...any) string {
	var one string
	if json.Unmarshal(raw, &one) == nil && one != "" {
		return one
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, t := range many {
			if t != "null" {
				return t
			}
		}
	}
	for _, e := range enum {
		switch e.(type) {
		case bool:
			return "boolean"
		case json.Number, float64:
			return "number"
		case string:
			return "string"
		}
	}
	return ""
}

// text returns a JSON scalar as the text an input shows.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool, float64, int, int64:
		return fmt.Sprint(x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(string(b))
}
