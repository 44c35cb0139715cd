// Package settingsschema validates a provider's settings against its JSON
// Schema (2020-12) and reports problems per field, the way a config form
// shows them. Providers use it in ValidateSettings; the host uses it before
// it stores settings.
package settingsschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/magicads/r2storage/shared/storage"
)

// Schema is a compiled settings schema.
type Schema struct {
	compiled *jsonschema.Schema
	doc      []byte
	// messages holds each property's "x-pattern-message" annotation: the
	// message shown when its value does not match the pattern, in place of
	// the validator's wording (which quotes the regular expression).
	messages map[string]string
	// writeOnly lists the properties marked writeOnly (secrets).
	writeOnly []string
	// complete is the x-fully-configured annotation, if any.
	complete *Completeness
	// binds lists the properties marked x-binds-secrets: they say where
	// the secrets are sent (an endpoint, an account), so changing one needs
	// the secrets entered again.
	binds []string
	// titles holds each property's title, for messages.
	titles map[string]string
	// defaults holds each property's default value, if it has one.
	defaults map[string]any
}

// Completeness is a schema's "x-fully-configured" annotation: the settings a
// provider needs before it can be used.
type Completeness struct {
	// All must all be set.
	All []string `json:"all"`
	// Any needs at least one set.
	Any []string `json:"any"`
}

// FullyConfigured reports whether values set everything the schema's
// x-fully-configured annotation asks for. A schema without the annotation
// is always fully configured.
func (s *Schema) FullyConfigured(values map[string]any) bool {
	if s.complete == nil {
		return true
	}
	set := func(k string) bool { return isSet(values[k]) }
	for _, k := range s.complete.All {
		if !set(k) {
			return false
		}
	}
	if len(s.complete.Any) == 0 {
		return true
	}
	for _, k := range s.complete.Any {
		if set(k) {
			return true
		}
	}
	return false
}

// baseURL is where a settings schema document without an $id sits.
const baseURL = "bundle:///schema/settings.schema.json"

// Compile compiles a settings schema document. The document must be a JSON
// Schema 2020-12 object schema.
func Compile(doc []byte) (*Schema, error) {
	var raw struct {
		FullyConfigured *Completeness `json:"x-fully-configured"`
		Properties      map[string]struct {
			Pattern      string          `json:"x-pattern-message"`
			WriteOnly    bool            `json:"writeOnly"`
			Title        string          `json:"title"`
			Default      json.RawMessage `json:"default"`
			BindsSecrets json.RawMessage `json:"x-binds-secrets"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		return nil, fmt.Errorf("settings schema is not valid JSON: %w", err)
	}
	c := NewCompiler()
	// The document's base is not a file: a relative reference resolves to
	// bundle:///…, never to a path on this machine.
	if err := c.AddResource(baseURL, bytes.NewReader(doc)); err != nil {
		return nil, fmt.Errorf("settings schema: %w", err)
	}
	compiled, err := c.Compile(baseURL)
	if err != nil {
		return nil, fmt.Errorf("settings schema does not compile: %w", err)
	}
	s := &Schema{compiled: compiled, doc: append([]byte(nil), doc...), messages: map[string]string{}, complete: raw.FullyConfigured,
		titles: map[string]string{}, defaults: map[string]any{}}
	for name, p := range raw.Properties {
		if p.Pattern != "" {
			s.messages[name] = p.Pattern
		}
		if p.WriteOnly {
			s.writeOnly = append(s.writeOnly, name)
		}
		if p.Title != "" {
			s.titles[name] = p.Title
		}
		if len(p.Default) > 0 {
			var d any
			if err := json.Unmarshal(p.Default, &d); err != nil {
				return nil, fmt.Errorf("settings schema: property %q: default: %w", name, err)
			}
			s.defaults[name] = d
		}
		if len(p.BindsSecrets) > 0 {
			var binds bool
			if err := json.Unmarshal(p.BindsSecrets, &binds); err != nil {
				return nil, fmt.Errorf("settings schema: property %q: x-binds-secrets must be true or false, not %s", name, p.BindsSecrets)
			}
			if binds && p.WriteOnly {
				return nil, fmt.Errorf("settings schema: property %q: a write-only (secret) property cannot carry x-binds-secrets; mark the properties that say where secrets are sent instead", name)
			}
			if binds {
				s.binds = append(s.binds, name)
			}
		}
	}
	sort.Strings(s.writeOnly)
	sort.Strings(s.binds)
	return s, nil
}

// NewCompiler returns a JSON Schema 2020-12 compiler that never loads a
// document: a $ref, $dynamicRef or $schema that leaves the documents added
// to it (a file:// or http(s):// URL, or a relative path such as
// other.json) fails compilation with an error naming it. References inside
// a document (#/$defs/…, #anchor) and the JSON Schema metaschemas, which
// the compiler carries, still work. Every JSON Schema a plugin or the host
// compiles goes through it, so a schema from a plugin archive cannot make
// the host read its files or reach the network.
func NewCompiler() *jsonschema.Compiler {
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	c.LoadURL = refuseExternal
	return c
}

// refuseExternal is the compilers' LoadURL: it loads nothing.
func refuseExternal(url string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("the reference %s points outside the schema document: only references inside it (#/$defs/…) are allowed; copy the definition under $defs and refer to it there", url)
}

// Document returns the schema document as compiled, for a host to render.
func (s *Schema) Document() []byte { return append([]byte(nil), s.doc...) }

// WriteOnly returns the names of the write-only (secret) properties.
func (s *Schema) WriteOnly() []string { return append([]string(nil), s.writeOnly...) }

var quoted = regexp.MustCompile(`'([^']*)'`)

// Validate returns the field problems in settings, sorted by field, or nil.
func (s *Schema) Validate(settings storage.Settings) []storage.FieldError {
	// Round-trip through JSON so the validator sees plain JSON values.
	data, err := json.Marshal(map[string]any(settings))
	if err != nil {
		return []storage.FieldError{{Field: "settings", Message: "cannot be encoded as JSON"}}
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return []storage.FieldError{{Field: "settings", Message: "cannot be decoded as JSON"}}
	}
	if v == nil {
		v = map[string]any{}
	}
	err = s.compiled.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []storage.FieldError{{Field: "settings", Message: err.Error()}}
	}
	byField := map[string]string{}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		field := topField(e.InstanceLocation)
		if field == "" {
			if strings.Contains(e.KeywordLocation, "additionalProperties") {
				for _, m := range quoted.FindAllStringSubmatch(e.Message, -1) {
					byField[m[1]] = "is not a known setting"
				}
				return
			}
			field = "settings"
		}
		if _, seen := byField[field]; seen {
			return
		}
		if msg, ok := s.messages[field]; ok && strings.HasSuffix(e.KeywordLocation, "/pattern") {
			byField[field] = msg
		} else {
			byField[field] = e.Message
		}
	}
	walk(ve)
	out := make([]storage.FieldError, 0, len(byField))
	for f, m := range byField {
		out = append(out, storage.FieldError{Field: f, Message: m})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return out
}

// topField returns the first segment of a JSON pointer ("/bucket" → "bucket").
func topField(ptr string) string {
	ptr = strings.TrimPrefix(ptr, "/")
	if i := strings.IndexByte(ptr, '/'); i >= 0 {
		ptr = ptr[:i]
	}
	return strings.NewReplacer("~1", "/", "~0", "~").Replace(ptr)
}

// isSet reports whether a settings value counts as given.
func isSet(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return strings.TrimSpace(v) != ""
	default:
		return true
	}
}

// Public returns values without the write-only (secret) fields: what an API
// may return.
func (s *Schema) Public(values map[string]any) map[string]any {
	out := make(map[string]any, len(values))
	for k, v := range values {
		out[k] = v
	}
	for _, k := range s.writeOnly {
		delete(out, k)
	}
	return out
}

// SecretsSet lists the write-only fields that hold a value.
func (s *Schema) SecretsSet(values map[string]any) []string {
	out := []string{}
	for _, k := range s.writeOnly {
		if isSet(values[k]) {
			out = append(out, k)
		}
	}
	return out
}

// SecretValuesOf returns the values of the write-only fields, for redaction.
func (s *Schema) SecretValuesOf(values map[string]any) []string {
	var out []string
	for _, k := range s.writeOnly {
		if str, ok := values[k].(string); ok && strings.TrimSpace(str) != "" {
			out = append(out, str)
		}
	}
	return out
}

// BindsSecrets returns the names of the properties marked x-binds-secrets:
// those that say where the secrets are sent.
func (s *Schema) BindsSecrets() []string { return append([]string(nil), s.binds...) }

// SecretsToReenter applies the x-binds-secrets rule to a save of incoming
// over stored: a secret is only ever sent to where it was entered. When a
// property marked x-binds-secrets differs between stored and incoming
// (missing, null, "" and the property's default count as one value; set to
// unset is a change), every write-only field that the save would keep from
// stored (it holds a value there and is missing, null or "" in incoming)
// gets a field error asking to enter it again. Nil when nothing needs
// re-entering. The messages never contain a value.
func (s *Schema) SecretsToReenter(stored, incoming map[string]any) []storage.FieldError {
	var changed []string
	for _, k := range s.binds {
		if s.canonical(k, stored[k]) != s.canonical(k, incoming[k]) {
			changed = append(changed, s.label(k))
		}
	}
	if len(changed) == 0 {
		return nil
	}
	var out []storage.FieldError
	for _, k := range s.writeOnly {
		if !isSet(stored[k]) || !Blank(incoming[k]) {
			continue
		}
		title := k
		if t := s.titles[k]; t != "" {
			title = t
		}
		out = append(out, storage.FieldError{Field: k, Message: "re-enter the " + title + ": " + joinAnd(changed) +
			" changed, and a stored secret is only sent to where it was entered"})
	}
	return out
}

// Blank reports whether a write-only value in a save keeps the stored one:
// it is missing, null or "" (the merge rule of the host's settings store).
func Blank(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	}
	return false
}

// canonical returns property k's value v as comparable JSON text: missing,
// null and "" stand for the property's default, and numbers compare by
// value whatever their Go type.
func (s *Schema) canonical(k string, v any) string {
	if v == nil || v == "" {
		v = s.defaults[k]
	}
	if v == nil || v == "" {
		return ""
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	var plain any
	if err := json.Unmarshal(data, &plain); err != nil {
		return string(data)
	}
	if data, err = json.Marshal(plain); err != nil {
		return fmt.Sprintf("%#v", plain)
	}
	return string(data)
}

// label names property k for a message: "Title (key)", or the key alone.
func (s *Schema) label(k string) string {
	if t := s.titles[k]; t != "" {
		return t + " (" + k + ")"
	}
	return k
}

// joinAnd joins names as "a", "a and b" or "a, b and c".
func joinAnd(names []string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
