package settingsschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// DocumentError reports the fields of a JSON document that its JSON Schema
// refused. Fields maps a field path ("bucket", "pricing.model",
// "executables.linux/amd64"; "" for the document as a whole) to the problem.
type DocumentError struct {
	// Document names what was validated, e.g. "manifest.json".
	Document string
	// Fields maps each offending field path to a message.
	Fields map[string]string
}

// Error lists every offending field, sorted by field path.
func (e *DocumentError) Error() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		name := k
		if name == "" {
			name = "(document)"
		}
		parts = append(parts, name+": "+e.Fields[k])
	}
	return fmt.Sprintf("%s is invalid: %s", e.Document, strings.Join(parts, "; "))
}

// DocumentSchema is a compiled JSON Schema that whole documents (a manifest,
// a settings schema) are checked against.
type DocumentSchema struct {
	compiled *jsonschema.Schema
	raw      any
}

// CompileDocumentSchema compiles a JSON Schema document that must carry an
// $id. Nothing is loaded from outside it (see NewCompiler).
func CompileDocumentSchema(schemaDoc []byte) (*DocumentSchema, error) {
	var head struct {
		ID string `json:"$id"`
	}
	if err := json.Unmarshal(schemaDoc, &head); err != nil {
		return nil, fmt.Errorf("schema is not valid JSON: %w", err)
	}
	if head.ID == "" {
		return nil, errors.New("schema has no $id")
	}
	c := NewCompiler()
	if err := c.AddResource(head.ID, bytes.NewReader(schemaDoc)); err != nil {
		return nil, fmt.Errorf("schema %s: %w", head.ID, err)
	}
	s, err := c.Compile(head.ID)
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", head.ID, err)
	}
	var raw any
	if err := json.Unmarshal(schemaDoc, &raw); err != nil {
		return nil, fmt.Errorf("schema %s: %w", head.ID, err)
	}
	return &DocumentSchema{compiled: s, raw: raw}, nil
}

// Check validates the JSON document data, called doc in messages. A refusal
// is a *DocumentError naming each bad field; a property's
// x-pattern-message replaces the validator's wording of a pattern mismatch.
func (s *DocumentSchema) Check(doc string, data []byte) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return &DocumentError{Document: doc, Fields: map[string]string{"": "is not valid JSON: " + err.Error()}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &DocumentError{Document: doc, Fields: map[string]string{"": "has trailing data after the JSON value"}}
	}
	err := s.compiled.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("validate %s: %w", doc, err)
	}
	fields := map[string]string{}
	collectFieldErrors(ve, s.raw, fields)
	if len(fields) == 0 {
		fields[""] = ve.Message
	}
	return &DocumentError{Document: doc, Fields: fields}
}

// quotedName matches the 'name' lists of the required and
// additionalProperties messages.
var quotedName = regexp.MustCompile(`'((?:[^'\\]|\\.)*)'`)

// collectFieldErrors walks the leaves of a jsonschema validation error and
// records one message per field path (the first one found wins).
func collectFieldErrors(ve *jsonschema.ValidationError, rawSchema any, out map[string]string) {
	if len(ve.Causes) > 0 {
		for _, c := range ve.Causes {
			collectFieldErrors(c, rawSchema, out)
		}
		return
	}
	field := pointerToField(ve.InstanceLocation)
	add := func(f, msg string) {
		if _, ok := out[f]; !ok {
			out[f] = msg
		}
	}
	keyword := ve.KeywordLocation[strings.LastIndex(ve.KeywordLocation, "/")+1:]
	switch keyword {
	case "required":
		for _, name := range quotedNames(ve.Message) {
			add(joinField(field, name), "is required")
		}
		return
	case "additionalProperties":
		if names := quotedNames(ve.Message); len(names) > 0 {
			for _, name := range names {
				add(joinField(field, name), "is not a known field")
			}
			return
		}
	case "pattern", "anyOf", "enum", "not":
		if msg := patternMessage(rawSchema, ve.AbsoluteKeywordLocation, keyword); msg != "" {
			add(field, msg)
			return
		}
	}
	add(field, ve.Message)
}

// quotedNames extracts the names quoted as 'name' in msg.
func quotedNames(msg string) []string {
	var out []string
	for _, m := range quotedName.FindAllStringSubmatch(msg, -1) {
		name := m[1]
		if u, err := strconv.Unquote(`"` + strings.ReplaceAll(name, `\'`, `'`) + `"`); err == nil {
			name = u
		}
		out = append(out, name)
	}
	return out
}

// patternMessage returns the x-pattern-message next to the keyword at
// absLoc ("https://…#/properties/bucket/pattern"), or "". For anyOf and
// enum it also looks one level up, where a propertyNames rule keeps it.
func patternMessage(rawSchema any, absLoc, keyword string) string {
	i := strings.Index(absLoc, "#")
	if i < 0 || rawSchema == nil {
		return ""
	}
	ptr := strings.TrimSuffix(absLoc[i+1:], "/"+keyword)
	toks := strings.Split(ptr, "/")[1:]
	for {
		if msg := messageAt(rawSchema, toks); msg != "" {
			return msg
		}
		if keyword == "pattern" || len(toks) == 0 {
			return ""
		}
		// anyOf/N/enum → anyOf: the message sits on the object holding anyOf.
		toks = toks[:len(toks)-1]
		if len(toks) > 0 && toks[len(toks)-1] == "anyOf" {
			toks = toks[:len(toks)-1]
		}
	}
}

// messageAt returns the x-pattern-message of the schema object at the JSON
// pointer tokens toks, or "".
func messageAt(rawSchema any, toks []string) string {
	node := rawSchema
	for _, tok := range toks {
		if u, err := url.PathUnescape(tok); err == nil {
			tok = u
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch n := node.(type) {
		case map[string]any:
			node = n[tok]
		case []any:
			idx, err := strconv.Atoi(tok)
			if err != nil || idx < 0 || idx >= len(n) {
				return ""
			}
			node = n[idx]
		default:
			return ""
		}
	}
	if obj, ok := node.(map[string]any); ok {
		if msg, ok := obj["x-pattern-message"].(string); ok {
			return msg
		}
	}
	return ""
}

// pointerToField turns a JSON pointer ("/executables/linux~1amd64") into a
// dotted field path ("executables.linux/amd64"); "" is the document.
func pointerToField(ptr string) string {
	if ptr == "" || ptr == "/" {
		return ""
	}
	toks := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	for i, t := range toks {
		if u, err := url.PathUnescape(t); err == nil {
			t = u
		}
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return strings.Join(toks, ".")
}

// joinField appends a child name to a field path.
func joinField(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "." + child
}
