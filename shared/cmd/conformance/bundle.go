package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/magicads/r2storage/shared/manifest"
	"github.com/magicads/r2storage/shared/settingsschema"
)

// bundleCaseName is the case under which --bundle's checks are reported.
const bundleCaseName = "bundle"

// bundleDir checks that dir is a folder and returns it as a file system.
func bundleDir(dir string) (fs.FS, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("--bundle: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("--bundle %s is not a folder: give the folder holding manifest.json, the settings schema and the migrations", dir)
	}
	return os.DirFS(dir), nil
}

// checkBundle checks a bundle folder with manifest.CheckBundle: its
// manifest.json, the settings schema it names and its migrations. Every
// problem names the file, the field and what is wrong. When manifest.json
// itself is refused, the settings schema it names (if it names one) is
// checked too, so both are reported at once.
func checkBundle(fsys fs.FS) (manifest.Manifest, error) {
	m, err := manifest.CheckBundle(fsys)
	var de *settingsschema.DocumentError
	if err == nil || !errors.As(err, &de) || de.Document != manifest.Path {
		return m, err
	}
	errs := []error{err}
	if serr := checkNamedSchema(fsys); serr != nil {
		errs = append(errs, serr)
	}
	return m, errors.Join(errs...)
}

// checkNamedSchema checks the settings schema that a refused manifest.json
// names, when it names one the bundle has.
func checkNamedSchema(fsys fs.FS) error {
	data, err := fs.ReadFile(fsys, manifest.Path)
	if err != nil {
		return nil
	}
	var loose struct {
		SettingsSchema string `json:"settings_schema"`
	}
	if json.Unmarshal(data, &loose) != nil || loose.SettingsSchema == "" || !fs.ValidPath(loose.SettingsSchema) {
		return nil
	}
	doc, err := fs.ReadFile(fsys, loose.SettingsSchema)
	if err != nil {
		return nil
	}
	err = settingsschema.CheckDocument(doc)
	var de *settingsschema.DocumentError
	if errors.As(err, &de) {
		de.Document = loose.SettingsSchema
	}
	return err
}
