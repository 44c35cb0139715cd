package settingsschema

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
)

// vocabularyDoc is the meta-schema every provider's settings schema is
// checked against before a host installs it.
//
//go:embed vocabulary.schema.json
var vocabularyDoc []byte

// VocabularySchema returns the meta-schema of settings schemas: the JSON
// Schema that defines the console's x- keywords and refuses unknown ones.
func VocabularySchema() []byte { return append([]byte(nil), vocabularyDoc...) }

// SchemaDocument is how problems in a settings schema are named.
const SchemaDocument = "settings schema"

// CheckDocument checks a provider's settings schema the way a host does at
// install: it must match the vocabulary meta-schema (VocabularySchema), its
// x-section, x-fully-configured and x-enum-labels must name sections,
// properties and enum values it declares, writeOnly is for string
// properties only, and it must compile (Compile). A refusal is a
// *DocumentError whose fields are paths such as
// "properties.bucket.x-section".
func CheckDocument(doc []byte) error {
	meta, err := CompileDocumentSchema(vocabularyDoc)
	if err != nil {
		return fmt.Errorf("the settings vocabulary meta-schema: %w", err)
	}
	if err := meta.Check(SchemaDocument, doc); err != nil {
		return err
	}
	var raw struct {
		Sections []struct {
			ID string `json:"id"`
		} `json:"x-sections"`
		Complete *Completeness `json:"x-fully-configured"`
		Props    map[string]struct {
			Type       any               `json:"type"`
			Enum       []any             `json:"enum"`
			WriteOnly  bool              `json:"writeOnly"`
			Section    string            `json:"x-section"`
			EnumLabels map[string]string `json:"x-enum-labels"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		return &DocumentError{Document: SchemaDocument, Fields: map[string]string{"": "is not valid JSON: " + err.Error()}}
	}
	fields := map[string]string{}
	sections := map[string]bool{}
	for i, s := range raw.Sections {
		if sections[s.ID] {
			fields[fmt.Sprintf("x-sections.%d.id", i)] = fmt.Sprintf("section %q is declared twice", s.ID)
		}
		sections[s.ID] = true
	}
	for name, p := range raw.Props {
		at := "properties." + name
		if p.Section != "" && !sections[p.Section] {
			fields[at+".x-section"] = fmt.Sprintf("names section %q, which x-sections does not declare", p.Section)
		}
		if p.WriteOnly && p.Type != "string" {
			fields[at+".writeOnly"] = `is only for secrets of "type": "string"`
		}
		if len(p.EnumLabels) > 0 {
			values := map[string]bool{}
			for _, v := range p.Enum {
				values[fmt.Sprint(v)] = true
			}
			for k := range p.EnumLabels {
				if !values[k] {
					fields[at+".x-enum-labels"] = fmt.Sprintf("labels %q, which is not one of the property's enum values", k)
				}
			}
		}
	}
	if raw.Complete != nil {
		for _, list := range []struct {
			name  string
			names []string
		}{{"all", raw.Complete.All}, {"any", raw.Complete.Any}} {
			for _, n := range list.names {
				if _, ok := raw.Props[n]; !ok {
					fields["x-fully-configured."+list.name] = fmt.Sprintf("names %q, which is not a declared property", n)
				}
			}
		}
	}
	if len(fields) > 0 {
		return &DocumentError{Document: SchemaDocument, Fields: fields}
	}
	if _, err := Compile(doc); err != nil {
		var de *DocumentError
		if errors.As(err, &de) {
			return err
		}
		return &DocumentError{Document: SchemaDocument, Fields: map[string]string{"": err.Error()}}
	}
	return nil
}
