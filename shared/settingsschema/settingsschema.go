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
			Pattern   string `json:"x-pattern-message"`
			WriteOnly bool   `json:"writeOnly"`
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
	s := &Schema{compiled: compiled, doc: append([]byte(nil), doc...), messages: map[string]string{}, complete: raw.FullyConfigured}
	for name, p := range raw.Properties {
		if p.Pattern != "" {
			s.messages[name] = p.Pattern
		}
		if p.WriteOnly {
			s.writeOnly = append(s.writeOnly, name)
		}
	}
	sort.Strings(s.writeOnly)
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
