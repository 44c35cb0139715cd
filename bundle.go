// Package r2storage embeds the bundle files of the cloudflare-r2 storage
// plugin — manifest.json, schema/settings.schema.json and migrations/*.sql,
// at the paths they have in its archive — for the plugin binary, which
// reports its version and validates settings from them. The host never
// imports this package: it reads every plugin's bundle from the archive it
// installs, with shared/manifest.
package r2storage

import (
	"embed"
	"fmt"
	"io/fs"

	"github.com/magicads/r2storage/shared/manifest"
)

//go:embed manifest.json schema/settings.schema.json migrations/*.sql
var bundle embed.FS

// Files returns the embedded bundle, laid out as in the plugin's archive
// (without the binary).
func Files() fs.FS {
	return bundle
}

// LoadManifest checks the embedded bundle (manifest.CheckBundle) and
// returns its manifest.
func LoadManifest() (manifest.Manifest, error) {
	return manifest.CheckBundle(bundle)
}

// SettingsSchema returns the embedded settings schema document.
func SettingsSchema() ([]byte, error) {
	data, err := fs.ReadFile(bundle, "schema/settings.schema.json")
	if err != nil {
		return nil, fmt.Errorf("read the embedded settings schema: %w", err)
	}
	return data, nil
}
