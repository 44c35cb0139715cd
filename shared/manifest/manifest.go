// Package manifest is a plugin bundle's manifest.json: its types, the JSON
// Schema it is validated against, and the checks a host runs on a bundle
// before it installs it. Publishers, the packaging command, the conformance
// command and the host's marketplace all use it, so a bundle that passes
// CheckBundle here is not refused for its manifest or settings schema at
// install.
package manifest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/magicads/r2storage/shared/settingsschema"
)

// Path is where manifest.json sits in a bundle and in every plugin archive.
const Path = "manifest.json"

// schemaDoc is the JSON Schema of manifest.json.
//
//go:embed manifest.schema.json
var schemaDoc []byte

// Schema returns the JSON Schema (2020-12) every manifest is validated
// against.
func Schema() []byte { return append([]byte(nil), schemaDoc...) }

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

// Parse parses a manifest.json document and validates it against Schema. A
// refusal is a *settingsschema.DocumentError naming each bad field.
func Parse(data []byte) (Manifest, error) {
	schema, err := settingsschema.CompileDocumentSchema(schemaDoc)
	if err != nil {
		return Manifest{}, fmt.Errorf("the manifest schema: %w", err)
	}
	if err := schema.Check(Path, data); err != nil {
		return Manifest{}, err
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%s: decode: %w", Path, err)
	}
	return m, nil
}

// migrationName is a golang-migrate file name: 000001_init.up.sql.
var migrationName = regexp.MustCompile(`^[0-9]+_[A-Za-z0-9_-]+\.(?:up|down)\.sql$`)

// CheckBundle checks a bundle folder (manifest.json, the settings schema
// and the migrations folder it names, as laid out in an archive without its
// binaries): the manifest is valid, the settings schema passes
// settingsschema.CheckDocument, and the migrations folder holds only
// golang-migrate SQL files in up/down pairs. It returns the manifest; every
// refusal names the file and what to fix.
func CheckBundle(fsys fs.FS) (Manifest, error) {
	data, err := fs.ReadFile(fsys, Path)
	if err != nil {
		return Manifest{}, fmt.Errorf("the bundle has no readable %s at its root: %w", Path, err)
	}
	m, err := Parse(data)
	if err != nil {
		return Manifest{}, err
	}
	doc, err := fs.ReadFile(fsys, m.SettingsSchema)
	if err != nil {
		return m, fmt.Errorf("%s names settings_schema %q, which the bundle lacks: %w", Path, m.SettingsSchema, err)
	}
	if err := settingsschema.CheckDocument(doc); err != nil {
		var de *settingsschema.DocumentError
		if errors.As(err, &de) {
			de.Document = m.SettingsSchema
		}
		return m, err
	}
	if err := checkMigrations(fsys, m.Migrations); err != nil {
		return m, err
	}
	return m, nil
}

// checkMigrations checks the bundle's migrations folder.
func checkMigrations(fsys fs.FS, dir string) error {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return fmt.Errorf("%s names migrations %q, which is not a folder in the bundle (an empty folder is fine): %w", Path, dir, err)
	}
	ups, downs := map[string]bool{}, map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !migrationName.MatchString(name) {
			return fmt.Errorf("%s: %q is not a golang-migrate SQL file such as 000001_init.up.sql", dir, path.Join(dir, name))
		}
		if base, ok := strings.CutSuffix(name, ".up.sql"); ok {
			ups[base] = true
		} else if base, ok := strings.CutSuffix(name, ".down.sql"); ok {
			downs[base] = true
		}
	}
	for base := range ups {
		if !downs[base] {
			return fmt.Errorf("%s: %s.up.sql has no %s.down.sql", dir, base, base)
		}
	}
	for base := range downs {
		if !ups[base] {
			return fmt.Errorf("%s: %s.down.sql has no %s.up.sql", dir, base, base)
		}
	}
	return nil
}
