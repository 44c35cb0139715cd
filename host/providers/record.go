package providers

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/magicads/r2storage/shared/manifest"
	"github.com/magicads/r2storage/shared/settingsschema"
)

// recordPurpose is what the install record's MAC is for (see
// settingsstore.Keyring.MAC).
const recordPurpose = "plugin install record v1"

// reinstall is the fix every refused record's message ends with.
const reinstall = "reinstall the plugin from the marketplace"

var (
	// validID is the manifest's id pattern.
	validID = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,62}$`)
	// validVersion is a folder name a semantic version can be: no separator,
	// never "." or "..".
	validVersion = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+-]{0,127}$`)
)

// record is a row of the plugins table: only what Load trusts after the
// MAC check (dir and binary_path are never read).
type record struct {
	id, version, sha256, mac string
}

// versionDir returns <plugins dir>/<id>/<version> after checking that id and
// version are names, not paths.
func (m *Manager) versionDir(id, version string) (string, error) {
	if !validID.MatchString(id) {
		return "", fmt.Errorf("plugin id %q is not valid (2–63 lowercase letters, digits or hyphens)", id)
	}
	if !validVersion.MatchString(version) || strings.Contains(version, "..") {
		return "", fmt.Errorf("plugin %s: version %q is not valid", id, version)
	}
	if m.pluginsDir == "" {
		return "", fmt.Errorf("plugin %s: the host has no plugins dir", id)
	}
	return filepath.Join(m.pluginsDir, id, version), nil
}

// load reads plugin id's installed version: its manifest (which must name
// id and version) and settings schema, and the binary the manifest names
// for this platform, which must be a regular file whose real path is
// exactly <plugins dir>/<id>/<version>/<executable> with every link
// resolved (no symbolic link anywhere below the plugins dir). The returned
// plugin's inst has ID, Version, Dir and BinaryPath set, not SHA256.
func (m *Manager) load(id, version string) (*plugin, error) {
	dir, err := m.versionDir(id, version)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, manifest.Path))
	if err != nil {
		return nil, fmt.Errorf("plugin %s %s: reading manifest.json: %w", id, version, err)
	}
	man, err := manifest.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("plugin %s %s: %w", id, version, err)
	}
	if man.ID != id || man.Version != version {
		return nil, fmt.Errorf("plugin %s %s: its manifest says %s %s", id, version, man.ID, man.Version)
	}
	exe, ok := man.Executable(runtime.GOOS, runtime.GOARCH)
	if !ok {
		return nil, fmt.Errorf("plugin %s %s: the manifest names no executable for %s/%s", id, version, runtime.GOOS, runtime.GOARCH)
	}
	bin := filepath.Join(dir, filepath.FromSlash(exe))
	if err := m.inside(bin, filepath.Join(id, version, filepath.FromSlash(exe))); err != nil {
		return nil, fmt.Errorf("plugin %s %s: %w", id, version, err)
	}
	doc, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(man.SettingsSchema)))
	if err != nil {
		return nil, fmt.Errorf("plugin %s %s: reading its settings schema: %w", id, version, err)
	}
	schema, err := settingsschema.Compile(doc)
	if err != nil {
		return nil, fmt.Errorf("plugin %s %s: %w", id, version, err)
	}
	return &plugin{inst: Installed{ID: id, Version: version, Dir: dir, BinaryPath: bin}, name: man.Name, schema: schema}, nil
}

// inside checks that bin is a regular file (not a link) whose real path is
// the real plugins dir joined with rel.
func (m *Manager) inside(bin, rel string) error {
	fi, err := os.Lstat(bin)
	if err != nil {
		return fmt.Errorf("its executable: %w", err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("its executable %s is a symbolic link, not a regular file in the plugins dir", bin)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("its executable %s is not a regular file (%s)", bin, fi.Mode().Type())
	}
	root, err := filepath.EvalSymlinks(m.pluginsDir)
	if err != nil {
		return fmt.Errorf("the plugins dir: %w", err)
	}
	real, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return fmt.Errorf("its executable: %w", err)
	}
	if real != filepath.Join(root, rel) {
		return fmt.Errorf("its executable %s resolves to %s, not to its place in the plugins dir %s (a symbolic link?)", bin, real, root)
	}
	return nil
}

// recordMessage is what an install record's MAC covers: id, version, the
// binary's path relative to the plugins dir and its sha256, each length-
// prefixed.
func (m *Manager) recordMessage(inst Installed) ([]byte, error) {
	rel, err := filepath.Rel(m.pluginsDir, inst.BinaryPath)
	if err != nil {
		return nil, err
	}
	var b []byte
	for _, f := range []string{inst.ID, inst.Version, filepath.ToSlash(rel), hex.EncodeToString(inst.SHA256)} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b, nil
}

// recordMAC authenticates an install record under the current APP_KEY.
func (m *Manager) recordMAC(inst Installed) ([]byte, error) {
	if m.keys == nil {
		return nil, errors.New("the host has no APP_KEY keyring to authenticate install records with")
	}
	if len(inst.SHA256) != sha256.Size {
		return nil, fmt.Errorf("the sha256 recorded at install must be %d bytes, got %d", sha256.Size, len(inst.SHA256))
	}
	msg, err := m.recordMessage(inst)
	if err != nil {
		return nil, err
	}
	return m.keys.MAC(recordPurpose, msg)
}

// verify turns a plugins row into a plugin to start, or into a refused one
// (refused set, nothing launched) when the record does not authenticate or
// its files are not what the record says.
func (m *Manager) verify(ctx context.Context, r record) *plugin {
	refuse := func(p *plugin, why string) *plugin {
		if p == nil {
			p = &plugin{inst: Installed{ID: r.id, Version: r.version}, name: r.id}
		}
		p.refused = why
		return p
	}
	p, err := m.load(r.id, r.version)
	if err != nil {
		return refuse(nil, fmt.Sprintf("the installed plugin cannot be started: %v; %s", err, reinstall))
	}
	sum, err := hex.DecodeString(r.sha256)
	if err != nil || len(sum) != sha256.Size {
		return refuse(p, fmt.Sprintf("the install record of %s holds no valid sha256, so it was not started; %s", r.id, reinstall))
	}
	p.inst.SHA256 = sum
	got, err := hex.DecodeString(r.mac)
	if m.keys == nil || err != nil || r.mac == "" {
		return refuse(p, fmt.Sprintf("the install record of %s carries no valid MAC (it was written by an older host or changed outside the host), so it was not started; %s", r.id, reinstall))
	}
	msg, err := m.recordMessage(p.inst)
	if err != nil {
		return refuse(p, fmt.Sprintf("the install record of %s cannot be checked: %v; %s", r.id, err, reinstall))
	}
	ok, current := m.keys.VerifyMAC(recordPurpose, msg, got)
	if !ok {
		return refuse(p, fmt.Sprintf("the install record of %s does not verify against APP_KEY: it was changed outside the host (its version, binary or sha256), or APP_KEY changed without the old key in APP_KEY_PREVIOUS; the plugin was not started: %s (or restore the APP_KEY it was installed under)", r.id, reinstall))
	}
	if !current {
		// Authenticated by a previous key: re-authenticate with the current
		// one so the previous key can be retired.
		fresh, err := m.recordMAC(p.inst)
		if err == nil {
			_, err = m.db.ExecContext(ctx, `UPDATE plugins SET mac = $1 WHERE id = $2 AND mac = $3`, hex.EncodeToString(fresh), r.id, r.mac)
		}
		if err != nil {
			m.log.Warn("re-authenticating the install record with the current APP_KEY failed; it still verifies with APP_KEY_PREVIOUS", "plugin", r.id, "error", err)
		} else {
			m.log.Info("install record re-authenticated with the current APP_KEY", "plugin", r.id)
		}
	}
	return p
}

// fileSHA256 hashes a file.
func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// copyBundle copies a plugin bundle into dst: manifest.json, the settings
// schema and the migrations folder's files from src, and bin to the
// manifest's executable path for this platform. src == dst copies nothing.
func copyBundle(src, bin, dst string) error {
	if filepath.Clean(src) == filepath.Clean(dst) {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(src, manifest.Path))
	if err != nil {
		return fmt.Errorf("reading the bundle's manifest.json: %w", err)
	}
	man, err := manifest.Parse(data)
	if err != nil {
		return err
	}
	exe, ok := man.Executable(runtime.GOOS, runtime.GOARCH)
	if !ok {
		return fmt.Errorf("the manifest names no executable for %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	type copying struct {
		from, to string
		mode     os.FileMode
	}
	copies := []copying{
		{filepath.Join(src, manifest.Path), manifest.Path, 0o644},
		{filepath.Join(src, filepath.FromSlash(man.SettingsSchema)), man.SettingsSchema, 0o644},
		{bin, exe, 0o755},
	}
	entries, err := os.ReadDir(filepath.Join(src, filepath.FromSlash(man.Migrations)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			copies = append(copies, copying{filepath.Join(src, filepath.FromSlash(man.Migrations), e.Name()), man.Migrations + "/" + e.Name(), 0o644})
		}
	}
	for _, c := range copies {
		if err := copyFile(c.from, filepath.Join(dst, filepath.FromSlash(c.to)), c.mode); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies one regular file, creating dst's folders.
func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
