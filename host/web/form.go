package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
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
	// Complete is x-fully-configured: what must be set before the provider
	// is usable.
	Complete *struct {
		All []string `json:"all"`
		Any []string `json:"any"`
	} `json:"x-fully-configured"`
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
	// Missing names the empty fields x-fully-configured asks for, as the
	// problem banner lists them ("" when none is empty).
	Missing string
	// CompleteAll and CompleteAny are x-fully-configured's lists, for the
	// script to re-mark the fields after a save.
	CompleteAll, CompleteAny []string
	// Health is the provider's storage health when it is degraded or
	// failing.
	Health *optionJSON
}

// markMissing marks the fields x-fully-configured asks for that are empty
// (a secret: not stored), when the provider has a problem, and lists them
// in Missing.
func (f *form) markMissing() {
	if f.Problem == "" || (len(f.CompleteAll) == 0 && len(f.CompleteAny) == 0) {
		return
	}
	fields := map[string]*formField{}
	for i := range f.Sections {
		for j := range f.Sections[i].Fields {
			fl := &f.Sections[i].Fields[j]
			fields[fl.Key] = fl
		}
	}
	empty := func(k string) bool {
		fl, ok := fields[k]
		return ok && fl.empty()
	}
	var names []string
	for _, k := range f.CompleteAll {
		if empty(k) {
			fields[k].Missing = "Required before the provider can be used."
			names = append(names, fields[k].Label)
		}
	}
	anySet := len(f.CompleteAny) == 0
	var anyNames []string
	for _, k := range f.CompleteAny {
		if fl, ok := fields[k]; ok {
			anyNames = append(anyNames, fl.Label)
			anySet = anySet || !fl.empty()
		}
	}
	if !anySet && len(anyNames) > 0 {
		for _, k := range f.CompleteAny {
			if fl, ok := fields[k]; ok {
				fl.Missing = "Set " + joinOr(anyNames) + " before the provider can be used."
			}
		}
		names = append(names, joinOr(anyNames))
	}
	if len(names) > 0 {
		f.Missing = "Fill in the marked fields: " + joinAnd(names) + "."
	}
}

// joinAnd joins names as "a", "a and b" or "a, b and c".
func joinAnd(names []string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
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
	// Missing says the field must be filled in before the provider can be
	// used ("" when it need not be, or is).
	Missing string
	// R2Dev is set when the value is an r2.dev address: the warning shown
	// under it. The script keeps it in step with what is typed.
	R2Dev string
}

// R2DevWarning is shown under a URL field whose value is an r2.dev address.
const R2DevWarning = "r2.dev addresses are rate-limited and not meant for production: connect a custom domain to the bucket (R2 → your bucket → Settings → Custom Domains) and enter it here."

// isR2Dev is true when s is a URL whose host is r2.dev or one of its
// subdomains.
func isR2Dev(s string) bool {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" {
		return false
	}
	h := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	return h == "r2.dev" || strings.HasSuffix(h, ".r2.dev")
}

// empty is true when the field has no value: a secret that is not stored,
// a blank text, an unchecked box.
func (f formField) empty() bool {
	switch f.Control {
	case "password":
		return !f.SecretStored
	case "checkbox":
		return !f.Checked
	}
	return strings.TrimSpace(f.Value) == ""
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
	if s.Complete != nil {
		f.CompleteAll, f.CompleteAny = s.Complete.All, s.Complete.Any
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
		// Without a stored value, a placeholder that talks about keeping
		// the stored one would mislead: it says that nothing is stored.
		if talksAboutStored(p.Placeholder) {
			f.Placeholder, f.SchemaPlaceholder = UnsetSecretPlaceholder, UnsetSecretPlaceholder
		}
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
		if isR2Dev(f.Value) {
			f.R2Dev = R2DevWarning
		}
	}
	if f.Type == "" {
		f.Type = "string"
	}
	return f
}

// talksAboutStored is true for a placeholder that speaks of a stored
// value ("leave blank to keep the stored secret").
func talksAboutStored(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "stored") || strings.Contains(s, "keep")
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
