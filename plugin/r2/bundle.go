package r2

import (
	"fmt"

	"github.com/hashicorp/go-hclog"

	r2storage "github.com/magicads/r2storage"
	"github.com/magicads/r2storage/shared/settingsschema"
)

// NewFromBundle returns a provider that reports the version in the embedded
// manifest.json and validates settings against the embedded settings schema.
func NewFromBundle(logger hclog.Logger) (*Provider, error) {
	m, err := r2storage.LoadManifest()
	if err != nil {
		return nil, fmt.Errorf("checking the embedded bundle: %w", err)
	}
	doc, err := r2storage.SettingsSchema()
	if err != nil {
		return nil, err
	}
	schema, err := settingsschema.Compile(doc)
	if err != nil {
		return nil, err
	}
	return New(Options{Version: m.Version, Logger: logger, ValidateSchema: schema.Validate}), nil
}
