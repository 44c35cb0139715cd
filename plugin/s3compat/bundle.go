package s3compat

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"

	"github.com/hashicorp/go-hclog"

	"github.com/magicads/r2storage/shared/settingsschema"
)

//go:embed bundle/manifest.json bundle/schema/*.json bundle/migrations/*.sql
var bundle embed.FS

// Bundle returns the plugin's bundle files, laid out as in its archive:
// manifest.json, schema/settings.schema.json and migrations/.
func Bundle() (fs.FS, error) {
	sub, err := fs.Sub(bundle, "bundle")
	if err != nil {
		return nil, fmt.Errorf("opening the embedded bundle: %w", err)
	}
	return sub, nil
}

// NewFromBundle returns a provider that reports the version in the embedded
// manifest.json and validates settings against the embedded settings schema.
func NewFromBundle(logger hclog.Logger) (*Provider, error) {
	files, err := Bundle()
	if err != nil {
		return nil, err
	}
	data, err := fs.ReadFile(files, "manifest.json")
	if err != nil {
		return nil, fmt.Errorf("reading the embedded manifest: %w", err)
	}
	var m struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("reading the embedded manifest: %w", err)
	}
	doc, err := fs.ReadFile(files, "schema/settings.schema.json")
	if err != nil {
		return nil, fmt.Errorf("reading the embedded settings schema: %w", err)
	}
	schema, err := settingsschema.Compile(doc)
	if err != nil {
		return nil, fmt.Errorf("compiling the embedded settings schema: %w", err)
	}
	return New(Options{Version: m.Version, Logger: logger, ValidateSchema: schema.Validate}), nil
}
