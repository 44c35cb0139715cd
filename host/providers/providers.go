// Package providers is the host's view of its storage providers: which
// plugins are installed, their encrypted settings, whether each is enabled,
// fully configured and running, and which one is the Default Storage. It is
// the results service's Router.
package providers

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/results"
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
	// ErrRefused: the plugin's install record failed its check; it must be
	// installed again before it can be configured.
	ErrRefused = errors.New("the plugin's install record was refused")
)

// Installed is an installed plugin: its files and pinned binary checksum.
type Installed struct {
	ID      string
	Version string
	// Dir holds manifest.json, schema/ and migrations/. The manager derives
	// it, <plugins dir>/<id>/<version>; a value given to Activate is ignored.
	Dir string
	// BinaryPath is the plugin executable: the manifest's executable for this
	// platform inside Dir, derived by the manager like Dir.
	BinaryPath string
	// SHA256 is the binary's checksum recorded at install, checked at launch.
	SHA256 []byte
}

// Options say where installed plugins live and which key authenticates
// their install records.
type Options struct {
	// PluginsDir holds the installed plugins, <dir>/<id>/<version>/, and
	// (on SQLite) each plugin's database, <dir>/<id>/plugin.db. Every
	// binary the manager launches resolves inside it.
	PluginsDir string
	// Keys is the APP_KEY keyring: each install record (id, version, binary
	// path, sha256) carries a MAC under a key derived from it.
	Keys *settingsstore.Keyring
	// Drain, when set, is called by Remove after Default Storage left the
	// provider and before its plugin is stopped: it must stop new uploads
	// and deletes to it and return once those in flight are over and
	// recorded (or cut, with what they may have stored removed). Remove
	// calls the returned reopen once the plugin is gone (or the removal
	// failed). The results service's Drain fits.
	Drain func(ctx context.Context, id string) (reopen func())
	// SettingsChanged, when set, is called after a provider's settings
	// were saved and applied (SaveSettings, Test): the results service's
	// RetryFailed fits, so jobs parked by a permanent error run again.
	SettingsChanged func(ctx context.Context, id string)
	// Configured, when set, is called each time a provider accepted its
	// settings and reported the bucket it puts objects in, with its
	// placement: the results service's Configured fits (it adopts the
	// results stored before the provider reported locations, each only
	// once found where the placement says, and records a moved public URL).
	Configured func(ctx context.Context, id string, p results.Placement)
	// NodeID names this node in the rollouts it answers (on PostgreSQL,
	// an update through another node waits for every live node's check);
	// "" answers none.
	NodeID string
	// CanaryTimeout bounds the handshake and describe of the canary a
	// node runs for a rollout; 0 is DefaultCanaryTimeout.
	CanaryTimeout time.Duration
	// RolloutStaged, when set, is called with the folder a rollout's bundle
	// was unpacked into on this node, before it is checked (tests damage
	// it there, or hold the check).
	RolloutStaged func(ctx context.Context, id, version, dir string)
}

// Option is one choice of Default Storage.
type Option struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Manager tracks storage providers.
type Manager struct {
	db         *sql.DB
	dialect    dbmigrate.Dialect
	settings   *settingsstore.Store
	rt         *pluginrt.Runtime
	log        *slog.Logger
	pluginsDir string
	keys       *settingsstore.Keyring
	ns         *dbmigrate.Namespaces
	drain      func(ctx context.Context, id string) (reopen func())
	changed    func(ctx context.Context, id string)
	configured func(ctx context.Context, id string, p results.Placement)
	// nodeID, canaryTimeout and rolloutStaged are Options'.
	nodeID        string
	canaryTimeout time.Duration
	rolloutStaged func(ctx context.Context, id, version, dir string)

	// syncMu runs one change of the installed plugins at a time on this
	// node: Activate, Remove, or applying another node's (syncPlugins).
	syncMu sync.Mutex

	mu      sync.Mutex
	plugins map[string]*plugin
	// lastDefault is the Default Storage last read ("" before the first read).
	lastDefault string
	// cfgLocks hold, per provider id, the turn of its one configure in
	// flight (a channel with room for one token): taken from loading the
	// settings to recording the outcome. Kept across reinstalls.
	cfgLocks map[string]chan struct{}
	// cfgAgain holds, per id, the provider handle of the last configure
	// that stopped waiting for its turn (its ctx ended): the configure in
	// flight runs once more, on that handle.
	cfgAgain map[string]storage.Provider
}

// plugin is the manager's state of one installed provider.
type plugin struct {
	inst   Installed
	name   string
	schema *settingsschema.Schema
	// configured is true once the running plugin accepted the stored settings.
	configured bool
	// placement is what its last successful Configure (and Describe)
	// said; placed is false until one succeeded.
	placement results.Placement
	placed    bool
	// listing is Capabilities.Listing, from the Describe of the last
	// successful Configure.
	listing bool
	// problem explains why the provider cannot be used, for the admin.
	problem string
	secrets []string
	// refused says why the install record was not launched ("" when it was
	// authenticated); the plugin shows as failed with this message.
	refused string
	// applied is the stamp (settingsstore.Stamps) of the settings the
	// running plugin was last given, and appliedAt when; "" before any.
	applied   string
	appliedAt time.Time
	// tried is the stamp a configure last ran for, even one that failed.
	tried string
	// record is the MAC (hex) of the install record this plugin was
	// loaded from: a different one in the plugins table means it was
	// installed again through another node (syncPlugins).
	record string
}

// New returns a manager. Call Load to read installed plugins and start them.
func New(db *sql.DB, dialect dbmigrate.Dialect, settings *settingsstore.Store, rt *pluginrt.Runtime, logger *slog.Logger, opts Options) *Manager {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{db: db, dialect: dialect, settings: settings, rt: rt, log: logger,
		pluginsDir: opts.PluginsDir, keys: opts.Keys, ns: dbmigrate.NewNamespaces(db, dialect, opts.PluginsDir),
		drain: opts.Drain, changed: opts.SettingsChanged, configured: opts.Configured, plugins: map[string]*plugin{},
		cfgLocks: map[string]chan struct{}{}, cfgAgain: map[string]storage.Provider{},
		nodeID: opts.NodeID, canaryTimeout: opts.CanaryTimeout, rolloutStaged: opts.RolloutStaged}
}

// Namespaces runs the plugins' migrations, each in a namespace of its own.
func (m *Manager) Namespaces() *dbmigrate.Namespaces { return m.ns }

// Register installs a plugin from a bundle outside the plugins dir (tests,
// sideloading): it copies the bundle's manifest.json, settings schema and
// migrations from inst.Dir, and the binary from inst.BinaryPath, to
// <plugins dir>/<id>/<version>/ (the binary at the manifest's executable
// path for this platform), checks the copy against inst.SHA256, runs the
// plugin's migrations in its namespace, then Activates it. The marketplace
// migrates, runs its canary and calls Activate itself.
func (m *Manager) Register(ctx context.Context, inst Installed) error {
	dir, err := m.versionDir(inst.ID, inst.Version)
	if err != nil {
		return err
	}
	copied := filepath.Clean(inst.Dir) != filepath.Clean(dir)
	if err := copyBundle(inst.Dir, inst.BinaryPath, dir); err != nil {
		return fmt.Errorf("registering %s: %w", inst.ID, err)
	}
	err = m.register(ctx, inst, dir)
	if err != nil && copied {
		_ = os.RemoveAll(dir)
	}
	return err
}

// register checks, migrates and activates a bundle copied to dir.
func (m *Manager) register(ctx context.Context, inst Installed, dir string) error {
	p, err := m.load(inst.ID, inst.Version)
	if err != nil {
		return err
	}
	sum, err := fileSHA256(p.inst.BinaryPath)
	if err != nil {
		return fmt.Errorf("registering %s: %w", inst.ID, err)
	}
	if !bytes.Equal(sum, inst.SHA256) {
		return fmt.Errorf("registering %s: the binary %s does not match the sha256 given: pass that binary's sha256", inst.ID, inst.BinaryPath)
	}
	if err := m.ns.Up(ctx, inst.ID, MigrationsFS(dir)); err != nil {
		return fmt.Errorf("registering %s: %w", inst.ID, err)
	}
	return m.Activate(ctx, inst)
}

// MigrationsFS is an installed plugin's migrations.
func MigrationsFS(dir string) fs.FS { return os.DirFS(filepath.Join(dir, "migrations")) }

// Activate records a plugin installed at <plugins dir>/<id>/<version>
// (replacing an older version's record) with a MAC over id, version,
// binary path and sha256, creates its settings entry unless it exists, and
// starts it; a running older version is replaced. Dir and BinaryPath are
// derived from the plugins dir, id, version and manifest.
func (m *Manager) Activate(ctx context.Context, inst Installed) error {
	p, err := m.load(inst.ID, inst.Version)
	if err != nil {
		return err
	}
	if err := ownSettings(p); err != nil {
		return err
	}
	p.inst.SHA256 = append([]byte(nil), inst.SHA256...)
	mac, err := m.recordMAC(p.inst)
	if err != nil {
		return fmt.Errorf("recording plugin %s: %w", inst.ID, err)
	}
	p.record = hex.EncodeToString(mac)
	if err := m.recordInstall(ctx, p, mac); err != nil {
		return err
	}
	// Started outside syncMu: a start waits for the plugin's first
	// configure, which must never hold up a Remove.
	return m.start(ctx, p)
}

// recordInstall writes p's install record (MAC mac), its settings entry
// and, on a shared database, its bundle for the other nodes, and makes p
// this node's installed version of its id, under syncMu.
func (m *Manager) recordInstall(ctx context.Context, p *plugin, mac []byte) error {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	inst := p.inst
	if m.shared() {
		// Before the record: a node that sees the record finds the bundle.
		if err := m.shareBundle(ctx, p); err != nil {
			return err
		}
	}
	_, err := m.db.ExecContext(ctx, `INSERT INTO plugins (id, version, dir, binary_path, sha256, mac) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO UPDATE SET version = excluded.version, dir = excluded.dir, binary_path = excluded.binary_path, sha256 = excluded.sha256, mac = excluded.mac`,
		p.inst.ID, p.inst.Version, p.inst.Dir, p.inst.BinaryPath, hex.EncodeToString(p.inst.SHA256), hex.EncodeToString(mac))
	if err != nil {
		return fmt.Errorf("recording plugin %s: %w", inst.ID, err)
	}
	if err := m.settings.Register(ctx, EntryName(inst.ID), inst.ID); err != nil {
		return fmt.Errorf("creating the settings entry of plugin %s: %w", inst.ID, err)
	}
	m.mu.Lock()
	if old := m.plugins[inst.ID]; old != nil {
		// Until the new version is configured, results keep the URLs and
		// bucket checks the running one gave.
		p.placement, p.placed, p.listing = old.placement, old.placed, old.listing
	}
	m.plugins[inst.ID] = p
	m.mu.Unlock()
	if m.shared() {
		m.dropBundles(ctx, inst.ID, inst.Version)
		m.announcePlugins(ctx, inst.ID)
	}
	return nil
}

// Verified reports whether plugin id is installed with an authenticated
// install record. A record that failed the check is installed but was not
// started: installing it again replaces it.
func (m *Manager) Verified(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.plugins[id]
	return ok && p.refused == ""
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
// was the Default Storage the default goes back to local first. Before the
// plugin is stopped, uploads and deletes in flight to it are drained
// (Options.Drain), so nothing it stored is left without a record. Files,
// migrations and settings are the caller's (the marketplace's) business.
func (m *Manager) Remove(ctx context.Context, id string) error {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	def, err := m.Default(ctx)
	if err != nil {
		// Resetting it blindly could drop the queued jobs of another
		// provider that is the Default Storage.
		return fmt.Errorf("removing %s: Default Storage cannot be read, so it is not known whether it must go back to local; try again once the database answers: %w", id, err)
	}
	if def == id {
		if err := m.settings.Save(ctx, defaultEntry, "host", map[string]any{"default": Local}); err != nil {
			return fmt.Errorf("resetting Default Storage to local: %w", err)
		}
	}
	if m.drain != nil {
		// The drain and the stop run to their end even if the caller
		// leaves (an admin's request that timed out): a plugin stopped
		// half-way through the drain could leave objects without rows.
		ctx = context.WithoutCancel(ctx)
		reopen := m.drain(ctx, id)
		defer reopen()
	}
	if err := m.rt.Stop(ctx, id); err != nil && !errors.Is(err, pluginrt.ErrUnknownPlugin) {
		return fmt.Errorf("stopping plugin %s: %w", id, err)
	}
	if _, err := m.db.ExecContext(ctx, `DELETE FROM plugins WHERE id = $1`, id); err != nil {
		return fmt.Errorf("removing the record of plugin %s: %w", id, err)
	}
	if m.shared() {
		m.dropBundles(ctx, id, "")
		m.announcePlugins(ctx, id)
	}
	m.mu.Lock()
	delete(m.plugins, id)
	m.mu.Unlock()
	return nil
}

// Load reads the installed plugins from the database and starts each whose
// install record is authentic: its binary is derived from the plugins dir,
// id, version and manifest (never read from the record) and its record's
// MAC verifies under APP_KEY (or a previous key, after which the record is
// re-authenticated with the current one). A record that fails is not
// launched and the plugin shows as failed, saying why and that a reinstall
// fixes it. A plugin that fails to start is reported in its state; the host
// keeps serving (results stay local).
func (m *Manager) Load(ctx context.Context) error {
	if _, err := m.Default(ctx); err != nil {
		m.log.Warn("Default Storage cannot be read yet", "error", err)
	}
	// Load runs before Watch, so no sync runs meanwhile.
	list, err := m.records(ctx)
	if err != nil {
		return err
	}
	for _, r := range list {
		// Installed through another node while this one was down: its
		// bundle is unpacked from the database.
		if err := m.ensureLocal(ctx, r); err != nil {
			m.log.Error("an installed plugin cannot run on this node", "plugin", r.id, "version", r.version, "error", err)
		}
		p := m.verify(ctx, r)
		p.record = r.mac
		if err := ownSettings(p); err != nil && p.refused == "" {
			p.refused = fmt.Sprintf("%v; %s", err, reinstall)
		}
		m.mu.Lock()
		m.plugins[r.id] = p
		m.mu.Unlock()
		if p.refused != "" {
			m.log.Error("installed plugin not started: its install record is refused", "plugin", r.id, "reason", p.refused)
			continue
		}
		if err := m.start(ctx, p); err != nil {
			m.log.Error("plugin did not start; the runtime keeps retrying", "plugin", r.id, "error", err)
		}
	}
	return nil
}

func (m *Manager) start(ctx context.Context, p *plugin) error {
	if p.refused != "" {
		return fmt.Errorf("plugin %s: %s", p.inst.ID, p.refused)
	}
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
// the outcome on the plugin installed under p's id (nothing happens once
// it is removed). Missing, incomplete or unreadable settings leave the
// provider unconfigured: never an error for the host. The configures of
// one provider run one at a time, each loading the settings when its turn
// comes, so the last one applies the settings stored last and the state,
// the placement and Options.Configured follow it. The turn is waited for
// until ctx ends (a stopped plugin's start ends, so Remove never waits on
// it; a start is not failed for it either): the configure in flight then
// runs once more, on prov, with the settings stored by then.
func (m *Manager) configure(ctx context.Context, p *plugin, prov storage.Provider) {
	id := p.inst.ID
	m.mu.Lock()
	turn := m.cfgLocks[id]
	if turn == nil {
		turn = make(chan struct{}, 1)
		m.cfgLocks[id] = turn
	}
	m.mu.Unlock()
	select {
	case turn <- struct{}{}:
	default:
		select {
		case turn <- struct{}{}:
		case <-ctx.Done():
			m.mu.Lock()
			m.cfgAgain[id] = prov
			m.mu.Unlock()
			m.log.Warn("another configure of the provider is in flight: this one stopped waiting for it, that one applies the stored settings again once done", "plugin", id, "error", ctx.Err())
			return
		}
	}
	for {
		m.configureTurn(ctx, id, prov)
		m.mu.Lock()
		next := m.cfgAgain[id]
		delete(m.cfgAgain, id)
		done := next == nil || ctx.Err() != nil
		if done {
			<-turn
		}
		m.mu.Unlock()
		if done {
			return
		}
		prov = next
	}
}

// configureTurn is configure once its turn came.
func (m *Manager) configureTurn(ctx context.Context, id string, prov storage.Provider) {
	m.mu.Lock()
	p := m.plugins[id]
	m.mu.Unlock()
	if p == nil || p.schema == nil {
		return
	}
	// The stamp is read first: settings saved between the two reads are
	// applied again at the next check (WatchSettings), never missed.
	stamp, stampErr := m.settings.Stamp(ctx, EntryName(id))
	values, err := m.settings.Load(ctx, EntryName(id))
	configured, problem := false, ""
	var secrets []string
	var placement results.Placement
	switch {
	case errors.Is(err, settingsstore.ErrNotConfigured), errors.Is(err, settingsstore.ErrNotFound):
		problem = "not configured yet"
	case err != nil:
		problem = err.Error()
		m.log.Error("provider settings cannot be read; the provider is treated as unconfigured", "plugin", id, "error", err)
	case !p.schema.FullyConfigured(values):
		problem = incompleteMessage(p.schema, values)
		secrets = p.schema.SecretValuesOf(values)
	default:
		secrets = p.schema.SecretValuesOf(values)
		// The plugin's log lines and errors are scrubbed of Secrets: from
		// now on, of these too (and still of those it had).
		m.mu.Lock()
		known := slices.Clone(p.secrets)
		p.secrets = append(slices.Clone(known), secrets...)
		m.mu.Unlock()
		// The host's own settings (enabled, delete_local) are not the
		// plugin's: it is never given them.
		if res, err := prov.Configure(ctx, pluginSettings(values)); err != nil {
			// A plugin may quote what it was given.
			problem = "the plugin refused its settings: " + Redact(err.Error(), append(known, secrets...))
		} else {
			configured = true
			placement = m.placementOf(ctx, id, prov, res)
		}
	}
	m.mu.Lock()
	p.configured, p.problem, p.secrets = configured, problem, secrets
	if configured {
		p.placement, p.placed = placement, true
	}
	if stampErr == nil {
		p.tried = stamp
		if configured || problem == "not configured yet" {
			p.applied, p.appliedAt = stamp, time.Now()
		}
	}
	m.mu.Unlock()
	if configured && placement.Bucket != "" && m.configured != nil {
		m.configured(ctx, id, placement)
	}
}

// placementOf is a provider's placement after Configure answered res:
// where it puts objects, and (from Describe) what it accepts. A Describe
// that fails leaves the capabilities unknown (no size limit, no
// locations).
func (m *Manager) placementOf(ctx context.Context, id string, prov storage.Provider, res storage.ConfigureResult) results.Placement {
	pl := results.Placement{Bucket: res.Bucket, PublicBaseURL: res.PublicBaseURL, KeyPrefix: res.KeyPrefix}
	info, err := prov.Describe(ctx)
	if err != nil {
		m.log.Warn("the provider's capabilities cannot be read; results are sent to it without checking its size limit", "plugin", id, "error", err)
		return pl
	}
	pl.MaxObjectSize, pl.Locations = info.Capabilities.MaxObjectSize, info.Capabilities.Locations
	m.mu.Lock()
	if p := m.plugins[id]; p != nil {
		p.listing = info.Capabilities.Listing
	}
	m.mu.Unlock()
	return pl
}

// listing reports whether provider id declared Capabilities.Listing at
// its last successful Configure on this node.
func (m *Manager) listing(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.plugins[id]
	return p != nil && p.placed && p.listing
}

// settingsChanged tells Options.SettingsChanged that id's settings were
// saved and applied.
func (m *Manager) settingsChanged(ctx context.Context, id string) {
	if m.changed != nil {
		m.changed(ctx, id)
	}
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
