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
	"regexp"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/magicads/r2storage/shared/storage"
)

// Schema is a compiled settings schema.
type Schema struct {
	compiled *jsonschema.Schema
	// messages holds each property's "x-pattern-message" annotation: the
	// message shown when its value does not match the pattern, in place of
	// the validator's wording (which quotes the regular expression).
	messages map[string]string
	// writeOnly lists the properties marked writeOnly (secrets).
	writeOnly []string
}

// Compile compiles a settings schema document. The document must be a JSON
// Schema 2020-12 object schema.
func Compile(doc []byte) (*Schema, error) {
	var raw struct {
		Properties map[string]struct {
			Pattern   string `json:"x-pattern-message"`
			WriteOnly bool   `json:"writeOnly"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		return nil, fmt.Errorf("settings schema is not valid JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	if err := c.AddResource("settings.schema.json", bytes.NewReader(doc)); err != nil {
		return nil, fmt.Errorf("settings schema: %w", err)
	}
	compiled, err := c.Compile("settings.schema.json")
	if err != nil {
		return nil, fmt.Errorf("settings schema does not compile: %w", err)
	}
	s := &Schema{compiled: compiled, messages: map[string]string{}}
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
