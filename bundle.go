// Package r2storage embeds the plugin bundle files of the cloudflare-r2
// storage plugin — manifest.json, its JSON Schemas and its SQL migrations —
// and validates manifests and settings against those schemas.
package r2storage

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/magicads/r2storage/shared/settingsschema"
)

//go:embed manifest.json schema/*.json migrations/*.sql
var bundle embed.FS

// Paths of the bundle files inside Files() and inside every plugin archive.
const (
	// ManifestPath is the manifest file.
	ManifestPath = "manifest.json"
	// ManifestSchemaPath is the JSON Schema every manifest is validated against.
	ManifestSchemaPath = "schema/manifest.schema.json"
	// SettingsSchemaPath is the JSON Schema of the plugin's settings.
	SettingsSchemaPath = "schema/settings.schema.json"
)

// Manifest is manifest.json: what the host needs to know about a plugin
// before it starts it.
type Manifest struct {
	// ID is the stable plugin id, e.g. "cloudflare-r2".
	ID string `json:"id"`
	// Name is the display name.
	Name string `json:"name"`
	// Description is the marketplace card text.
	Description string `json:"description"`
	// Version is the plugin's semantic version.
	Version string `json:"version"`
	// Kind is what the plugin plugs into ("storage-provider").
	Kind string `json:"kind"`
	// ProtocolVersions are the go-plugin protocol versions the binary speaks.
	ProtocolVersions []int `json:"protocol_versions"`
	// MinHostVersion is the oldest host version the plugin runs on.
	MinHostVersion string `json:"min_host_version"`
	// Executables maps "os/arch" to the binary's path inside the archive.
	Executables map[string]string `json:"executables"`
	// SettingsSchema is the path of the settings JSON Schema in the archive.
	SettingsSchema string `json:"settings_schema"`
	// Migrations is the folder of golang-migrate SQL files in the archive.
	Migrations string `json:"migrations"`
	// Pricing says how the plugin is sold.
	Pricing Pricing `json:"pricing"`
	// Publisher names who publishes the plugin (optional).
	Publisher string `json:"publisher,omitempty"`
	// Homepage is the plugin's documentation page (optional).
	Homepage string `json:"homepage,omitempty"`
}

// Pricing is the manifest's pricing block.
type Pricing struct {
	// Model is "free" or "paid".
	Model string `json:"model"`
	// FreeForExtendedLicense lets Extended License holders install a paid
	// plugin without buying it.
	FreeForExtendedLicense bool `json:"free_for_extended_license"`
	// Price is the list price (optional).
	Price *Price `json:"price,omitempty"`
}

// Price is an amount in a currency, e.g. {"amount": "29.00", "currency": "USD"}.
type Price struct {
	// Amount is a decimal string with two decimals.
	Amount string `json:"amount"`
	// Currency is an ISO 4217 code.
	Currency string `json:"currency"`
}

// Executable returns the archive path of the binary for goos/goarch.
func (m Manifest) Executable(goos, goarch string) (string, bool) {
	p, ok := m.Executables[goos+"/"+goarch]
	return p, ok
}

// Platforms returns the manifest's "os/arch" keys, sorted.
func (m Manifest) Platforms() []string {
	out := make([]string, 0, len(m.Executables))
	for k := range m.Executables {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ValidationError reports the fields of a JSON document that its JSON Schema
// refused. Fields maps a field path ("bucket", "pricing.model",
// "executables.linux/amd64"; "" for the document as a whole) to the problem.
type ValidationError struct {
	// Document names what was validated, e.g. "manifest.json".
	Document string
	// Fields maps each offending field path to a message.
	Fields map[string]string
}

// Error lists every offending field, sorted by field path.
func (e *ValidationError) Error() string {
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

// Files returns the embedded bundle: manifest.json, schema/*.json and
// migrations/*.sql, at the paths they have in a plugin archive.
func Files() fs.FS {
	return bundle
}

// MigrationsFS returns the plugin's golang-migrate folder (the manifest's
// migrations path) from the embedded bundle.
func MigrationsFS() (fs.FS, error) {
	m, err := LoadManifest()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(bundle, m.Migrations)
	if err != nil {
		return nil, fmt.Errorf("plugin migrations %q: %w", m.Migrations, err)
	}
	return sub, nil
}

// LoadManifest reads and validates the embedded manifest.json.
func LoadManifest() (Manifest, error) {
	data, err := fs.ReadFile(bundle, ManifestPath)
	if err != nil {
		return Manifest{}, fmt.Errorf("read embedded %s: %w", ManifestPath, err)
	}
	return ValidateManifest(data)
}

// SettingsSchema returns the raw settings JSON Schema
// (schema/settings.schema.json).
func SettingsSchema() ([]byte, error) {
	data, err := fs.ReadFile(bundle, SettingsSchemaPath)
	if err != nil {
		return nil, fmt.Errorf("read embedded %s: %w", SettingsSchemaPath, err)
	}
	return data, nil
}

// ValidateManifest parses a manifest.json document and validates it against
// schema/manifest.schema.json. A refusal is a *ValidationError naming each
// bad field.
func ValidateManifest(data []byte) (Manifest, error) {
	schema, err := compileEmbedded(ManifestSchemaPath)
	if err != nil {
		return Manifest{}, err
	}
	raw, err := fs.ReadFile(bundle, ManifestSchemaPath)
	if err != nil {
		return Manifest{}, fmt.Errorf("read embedded %s: %w", ManifestSchemaPath, err)
	}
	if err := validateJSON(schema, raw, ManifestPath, data); err != nil {
		return Manifest{}, err
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%s: decode: %w", ManifestPath, err)
	}
	return m, nil
}

// compileEmbedded compiles one of the embedded schemas under its $id.
func compileEmbedded(path string) (*jsonschema.Schema, error) {
	data, err := fs.ReadFile(bundle, path)
	if err != nil {
		return nil, fmt.Errorf("read embedded %s: %w", path, err)
	}
	var head struct {
		ID string `json:"$id"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %w", path, err)
	}
	if head.ID == "" {
		return nil, fmt.Errorf("%s: missing $id", path)
	}
	// Never load anything: every schema this package uses is embedded, and
	// a $ref may only point inside its own document.
	c := settingsschema.NewCompiler()
	if err := c.AddResource(head.ID, bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, err := c.Compile(head.ID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// validateJSON validates the JSON document data against schema (whose source
// is rawSchema, used for x-pattern-message look-ups) and turns a refusal into
// a *ValidationError.
func validateJSON(schema *jsonschema.Schema, rawSchema []byte, doc string, data []byte) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return &ValidationError{Document: doc, Fields: map[string]string{"": "is not valid JSON: " + err.Error()}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &ValidationError{Document: doc, Fields: map[string]string{"": "has trailing data after the JSON value"}}
	}
	err := schema.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("validate %s: %w", doc, err)
	}
	var rawDoc any
	if err := json.Unmarshal(rawSchema, &rawDoc); err != nil {
		rawDoc = nil
	}
	fields := map[string]string{}
	collectFieldErrors(ve, rawDoc, fields)
	if len(fields) == 0 {
		fields[""] = ve.Message
	}
	return &ValidationError{Document: doc, Fields: fields}
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
	case "pattern":
		if msg := patternMessage(rawSchema, ve.AbsoluteKeywordLocation); msg != "" {
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

// patternMessage returns the x-pattern-message next to the pattern keyword
// at absLoc ("https://…#/properties/bucket/pattern"), or "".
func patternMessage(rawSchema any, absLoc string) string {
	i := strings.Index(absLoc, "#")
	if i < 0 || rawSchema == nil {
		return ""
	}
	ptr := absLoc[i+1:]
	if !strings.HasSuffix(ptr, "/pattern") {
		return ""
	}
	node := rawSchema
	for _, tok := range strings.Split(strings.TrimSuffix(ptr, "/pattern"), "/")[1:] {
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
