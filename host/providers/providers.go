// Package providers is the host's view of its storage providers: which
// plugins are installed, their encrypted settings, whether each is enabled,
// fully configured and running, and which one is the Default Storage. It is
// the results service's Router.
package providers

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	r2storage "github.com/magicads/r2storage"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/settingsstore"
	"github.com/magicads/r2storage/shared/settingsschema"
	"github.com/magicads/r2storage/shared/storage"
)

// Local is the id of the local results disk, always a Default Storage option.
const Local = "local"

// LocalName is how the local option is shown.
const LocalName = "Local server (this machine)"

// defaultEntry is the settings entry holding the Default Storage choice.
const defaultEntry = "storage.default"

// EntryName is the settings entry of a provider's settings.
func EntryName(id string) string { return "storage.provider." + id }

// Errors the API maps to status codes.
var (
	// ErrNotInstalled: no installed plugin has this id.
	ErrNotInstalled = errors.New("no such storage provider is installed")
	// ErrNotAnOption: the provider cannot be the Default Storage now.
	ErrNotAnOption = errors.New("not a Default Storage option")
)

// Installed is an installed plugin: its files and pinned binary checksum.
type Installed struct {
	ID      string
	Version string
	// Dir holds manifest.json, schema/ and migrations/.
	Dir string
	// BinaryPath is the plugin executable.
	BinaryPath string
	// SHA256 is the binary's checksum recorded at install, checked at launch.
	SHA256 []byte
}

// Option is one choice of Default Storage.
type Option struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Manager tracks storage providers.
type Manager struct {
	db       *sql.DB
	dialect  dbmigrate.Dialect
	settings *settingsstore.Store
	rt       *pluginrt.Runtime
	log      *slog.Logger

	mu      sync.Mutex
	plugins map[string]*plugin
}

// plugin is the manager's state of one installed provider.
type plugin struct {
	inst   Installed
	name   string
	schema *settingsschema.Schema
	// configured is true once the running plugin accepted the stored settings.
	configured bool
	// problem explains why the provider cannot be used, for the admin.
	problem string
	secrets []string
}

// New returns a manager. Call Load to read installed plugins and start them.
func New(db *sql.DB, dialect dbmigrate.Dialect, settings *settingsstore.Store, rt *pluginrt.Runtime, logger *slog.Logger) *Manager {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{db: db, dialect: dialect, settings: settings, rt: rt, log: logger, plugins: map[string]*plugin{}}
}

// Register installs a plugin from a directory that is already in place:
// it runs the plugin's migrations (into its own migrations table), then
// Activates it. Tests and sideloading use it; the marketplace migrates,
// runs its canary and calls Activate itself.
func (m *Manager) Register(ctx context.Context, inst Installed) error {
	if _, err := m.open(inst); err != nil {
		return err
	}
	if err := dbmigrate.Up(ctx, m.db, m.dialect, MigrationsFS(inst.Dir), dbmigrate.PluginTable(inst.ID)); err != nil {
		return fmt.Errorf("registering %s: %w", inst.ID, err)
	}
	return m.Activate(ctx, inst)
}

// MigrationsFS is an installed plugin's migrations.
func MigrationsFS(dir string) fs.FS { return os.DirFS(filepath.Join(dir, "migrations")) }

// Activate records an installed plugin (replacing an older version's
// record) and starts it; a running older version is replaced.
func (m *Manager) Activate(ctx context.Context, inst Installed) error {
	p, err := m.open(inst)
	if err != nil {
		return err
	}
	_, err = m.db.ExecContext(ctx, `INSERT INTO plugins (id, version, dir, binary_path, sha256) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET version = excluded.version, dir = excluded.dir, binary_path = excluded.binary_path, sha256 = excluded.sha256`,
		inst.ID, inst.Version, inst.Dir, inst.BinaryPath, hex.EncodeToString(inst.SHA256))
	if err != nil {
		return fmt.Errorf("recording plugin %s: %w", inst.ID, err)
	}
	m.mu.Lock()
	m.plugins[inst.ID] = p
	m.mu.Unlock()
	return m.start(ctx, p)
}

// Installed returns an installed plugin's record.
func (m *Manager) Installed(id string) (Installed, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.plugins[id]
	if !ok {
		return Installed{}, false
	}
	return p.inst, true
}

// Remove stops a plugin and forgets it: its record is deleted, and if it
// was the Default Storage the default goes back to local first. Files,
// migrations and settings are the caller's (the marketplace's) business.
func (m *Manager) Remove(ctx context.Context, id string) error {
	if def, err := m.Default(ctx); err != nil || def == id {
		if err := m.settings.Save(ctx, defaultEntry, "host", map[string]any{"default": Local}); err != nil {
			return fmt.Errorf("resetting Default Storage to local: %w", err)
		}
	}
	if err := m.rt.Stop(ctx, id); err != nil && !errors.Is(err, pluginrt.ErrUnknownPlugin) {
		return fmt.Errorf("stopping plugin %s: %w", id, err)
	}
	if _, err := m.db.ExecContext(ctx, `DELETE FROM plugins WHERE id = $1`, id); err != nil {
		return fmt.Errorf("removing the record of plugin %s: %w", id, err)
	}
	m.mu.Lock()
	delete(m.plugins, id)
	m.mu.Unlock()
	return nil
}

// open reads an installed plugin's manifest and settings schema.
func (m *Manager) open(inst Installed) (*plugin, error) {
	data, err := os.ReadFile(filepath.Join(inst.Dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("plugin %s: reading manifest.json: %w", inst.ID, err)
	}
	man, err := r2storage.ValidateManifest(data)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", inst.ID, err)
	}
	if man.ID != inst.ID {
		return nil, fmt.Errorf("plugin %s: manifest says id %q", inst.ID, man.ID)
	}
	doc, err := os.ReadFile(filepath.Join(inst.Dir, filepath.FromSlash(man.SettingsSchema)))
	if err != nil {
		return nil, fmt.Errorf("plugin %s: reading its settings schema: %w", inst.ID, err)
	}
	schema, err := settingsschema.Compile(doc)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", inst.ID, err)
	}
	return &plugin{inst: inst, name: man.Name, schema: schema}, nil
}

// Load reads the installed plugins from the database and starts each. A
// plugin that fails to start is reported in its state; the host keeps
// serving (results stay local).
func (m *Manager) Load(ctx context.Context) error {
	rows, err := m.db.QueryContext(ctx, `SELECT id, version, dir, binary_path, sha256 FROM plugins ORDER BY id`)
	if err != nil {
		return fmt.Errorf("reading installed plugins: %w", err)
	}
	var list []Installed
	for rows.Next() {
		var inst Installed
		var sum string
		if err := rows.Scan(&inst.ID, &inst.Version, &inst.Dir, &inst.BinaryPath, &sum); err != nil {
			rows.Close()
			return fmt.Errorf("reading installed plugins: %w", err)
		}
		if inst.SHA256, err = hex.DecodeString(sum); err != nil {
			rows.Close()
			return fmt.Errorf("plugin %s: recorded sha256 is not hex", inst.ID)
		}
		list = append(list, inst)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading installed plugins: %w", err)
	}
	for _, inst := range list {
		p, err := m.open(inst)
		if err != nil {
			m.log.Error("installed plugin cannot be loaded; results stay local", "plugin", inst.ID, "error", err)
			continue
		}
		m.mu.Lock()
		m.plugins[inst.ID] = p
		m.mu.Unlock()
		if err := m.start(ctx, p); err != nil {
			m.log.Error("plugin did not start; the runtime keeps retrying", "plugin", inst.ID, "error", err)
		}
	}
	return nil
}

func (m *Manager) start(ctx context.Context, p *plugin) error {
	return m.rt.Start(ctx, pluginrt.Spec{ID: p.inst.ID, Path: p.inst.BinaryPath, SHA256: p.inst.SHA256})
}

// OnStart configures a freshly (re)started plugin with its stored settings.
// The runtime calls it after every start.
func (m *Manager) OnStart(ctx context.Context, id string, prov storage.Provider) error {
	m.mu.Lock()
	p := m.plugins[id]
	m.mu.Unlock()
	if p == nil {
		return nil
	}
	m.configure(ctx, p, prov)
	return nil
}

// configure applies the stored settings to the running plugin and records
// the outcome. Missing, incomplete or unreadable settings leave the
// provider unconfigured: never an error for the host.
func (m *Manager) configure(ctx context.Context, p *plugin, prov storage.Provider) {
	values, err := m.settings.Load(ctx, EntryName(p.inst.ID))
	configured, problem := false, ""
	var secrets []string
	switch {
	case errors.Is(err, settingsstore.ErrNotConfigured), errors.Is(err, settingsstore.ErrNotFound):
		problem = "not configured yet"
	case err != nil:
		problem = err.Error()
		m.log.Error("provider settings cannot be read; the provider is treated as unconfigured", "plugin", p.inst.ID, "error", err)
	case !p.schema.FullyConfigured(values):
		problem = "credentials incomplete: fill in access key, secret, bucket and account id (or a custom endpoint)"
		secrets = p.schema.SecretValuesOf(values)
	default:
		secrets = p.schema.SecretValuesOf(values)
		if _, err := prov.Configure(ctx, storage.Settings(values)); err != nil {
			problem = "the plugin refused its settings: " + err.Error()
		} else {
			configured = true
		}
	}
	m.mu.Lock()
	p.configured, p.problem, p.secrets = configured, problem, secrets
	m.mu.Unlock()
}

// Secrets returns every stored secret value, for redacting plugin logs.
func (m *Manager) Secrets() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, p := range m.plugins {
		out = append(out, p.secrets...)
	}
	return out
}
