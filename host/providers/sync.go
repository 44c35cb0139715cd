package providers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/magicads/r2storage/host/archive"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/pluginrt"
)

// PluginsChannel is the PostgreSQL notification channel on which a node
// announces that it installed, updated or uninstalled a plugin; the
// payload is the plugin id.
const PluginsChannel = "magicads_plugins"

// shared reports whether several nodes may share this database: only
// PostgreSQL (SQLite runs one node).
func (m *Manager) shared() bool { return m.dialect == dbmigrate.Postgres }

// shareBundle stores the installed folder of p in plugin_bundles, so that
// the other nodes can unpack the same version (see syncPlugins).
func (m *Manager) shareBundle(ctx context.Context, p *plugin) error {
	var buf bytes.Buffer
	if err := archive.Pack(ctx, p.inst.Dir, &buf); err != nil {
		return fmt.Errorf("packing plugin %s %s for the other nodes: %w", p.inst.ID, p.inst.Version, err)
	}
	sum := sha256.Sum256(buf.Bytes())
	_, err := m.db.ExecContext(ctx, `INSERT INTO plugin_bundles (id, version, sha256, size, bundle, created_ms) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id, version) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, bundle = excluded.bundle, created_ms = excluded.created_ms`,
		p.inst.ID, p.inst.Version, hex.EncodeToString(sum[:]), buf.Len(), buf.Bytes(), time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("storing plugin %s %s for the other nodes in the database: %w", p.inst.ID, p.inst.Version, err)
	}
	return nil
}

// dropBundles removes the stored bundles of id other than version ("" for
// all of them).
func (m *Manager) dropBundles(ctx context.Context, id, version string) {
	if _, err := m.db.ExecContext(ctx, `DELETE FROM plugin_bundles WHERE id = $1 AND version <> $2`, id, version); err != nil {
		m.log.Warn("removing stored bundles of a plugin's other versions; they are removed at its next install", "plugin", id, "error", err)
	}
}

// unpackBundle unpacks the stored bundle of plugin id's version into
// root (created), after checking it against its stored sha256.
func (m *Manager) unpackBundle(ctx context.Context, id, version, root string) error {
	var sum string
	var data []byte
	err := m.db.QueryRowContext(ctx, `SELECT sha256, bundle FROM plugin_bundles WHERE id = $1 AND version = $2`, id, version).Scan(&sum, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("plugin %s %s is installed but its bundle is not in the database (installed by a host from before bundles were shared): reinstall it from the marketplace", id, version)
	}
	if err != nil {
		return fmt.Errorf("reading the bundle of plugin %s %s: %w", id, version, err)
	}
	if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum {
		return fmt.Errorf("the stored bundle of plugin %s %s does not match its sha256: reinstall the plugin from the marketplace", id, version)
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	if _, err := archive.Unpack(ctx, bytes.NewReader(data), root, archive.Limits{}); err != nil {
		return fmt.Errorf("unpacking the bundle of plugin %s %s: %w", id, version, err)
	}
	return nil
}

// announcePlugins tells the other nodes that plugin id's record changed;
// they also find out by polling.
func (m *Manager) announcePlugins(ctx context.Context, id string) {
	if !m.shared() {
		return
	}
	if _, err := m.db.ExecContext(ctx, "SELECT pg_notify($1, $2)", PluginsChannel, id); err != nil {
		m.log.Warn("announcing a plugin change to other nodes; they apply it at their next poll", "plugin", id, "error", err)
	}
}

// ensureLocal makes sure this node holds plugin r's installed folder,
// unpacking it from plugin_bundles when it does not (a plugin installed
// through another node). What it unpacks is launched only after the
// record's checks (verify: its MAC, then the executable's sha256 at
// launch).
func (m *Manager) ensureLocal(ctx context.Context, r record) error {
	if _, err := m.load(r.id, r.version); err == nil || !m.shared() {
		return nil
	}
	dir, err := m.versionDir(r.id, r.version)
	if err != nil {
		return err
	}
	stagingRoot := filepath.Join(m.pluginsDir, ".staging")
	if err := os.MkdirAll(stagingRoot, 0o755); err != nil {
		return err
	}
	staging, err := os.MkdirTemp(stagingRoot, r.id+"-sync-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(staging)
	root := filepath.Join(staging, "plugin")
	if err := m.unpackBundle(ctx, r.id, r.version, root); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	os.RemoveAll(dir) // an incomplete earlier copy
	if err := os.Rename(root, dir); err != nil {
		return fmt.Errorf("moving plugin %s %s into place: %w", r.id, r.version, err)
	}
	return nil
}

// records reads the plugins table.
func (m *Manager) records(ctx context.Context) ([]record, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT id, version, sha256, mac FROM plugins ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("reading installed plugins: %w", err)
	}
	defer rows.Close()
	var list []record
	for rows.Next() {
		var r record
		if err := rows.Scan(&r.id, &r.version, &r.sha256, &r.mac); err != nil {
			return nil, fmt.Errorf("reading installed plugins: %w", err)
		}
		list = append(list, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading installed plugins: %w", err)
	}
	return list, nil
}

// syncPlugins brings this node's plugins in line with the plugins table,
// after an install, update or uninstall through another node: a plugin
// whose record changed is unpacked from its stored bundle (ensureLocal),
// checked and started in place of the running version; one whose record
// is gone is drained and stopped, and its files removed.
func (m *Manager) syncPlugins(ctx context.Context) { m.syncPluginsThen(ctx, false) }

// Sync applies at once what other nodes changed in the installed plugins,
// as Watch does at its next check, and starts what it adopts in the
// background: a request that lands on this node right after an install
// or uninstall through another node sees it. Nothing on SQLite.
func (m *Manager) Sync(ctx context.Context) {
	if m.shared() {
		m.syncPluginsThen(ctx, true)
	}
}

// syncPluginsThen is syncPlugins; with background set, what it adopts is
// started in the background instead of before it returns.
func (m *Manager) syncPluginsThen(ctx context.Context, background bool) {
	var starts []adopted
	defer func() {
		// Started outside syncMu: a start waits for the plugin's first
		// configure, which must never hold up a Remove.
		if len(starts) == 0 {
			return
		}
		if background {
			go func() {
				for _, a := range starts {
					a.start(context.WithoutCancel(ctx))
				}
			}()
			return
		}
		for _, a := range starts {
			a.start(ctx)
		}
	}()
	// The table is read under syncMu: a list read before this node's own
	// Activate or Remove finished would undo it.
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	list, err := m.records(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("checking for plugins installed or removed through other nodes; trying again shortly", "error", err)
		}
		return
	}
	want := map[string]bool{}
	for _, r := range list {
		want[r.id] = true
		m.mu.Lock()
		cur := m.plugins[r.id]
		m.mu.Unlock()
		if cur != nil && cur.record == r.mac {
			continue
		}
		if cur != nil && cur.inst.Version == r.version && cur.refused == "" && hex.EncodeToString(cur.inst.SHA256) == r.sha256 {
			// Re-authenticated under a new APP_KEY: the same install.
			m.mu.Lock()
			cur.record = r.mac
			m.mu.Unlock()
			continue
		}
		if a, ok := m.adopt(ctx, r, cur); ok {
			starts = append(starts, a)
		}
	}
	m.mu.Lock()
	var gone []string
	for id := range m.plugins {
		if !want[id] {
			gone = append(gone, id)
		}
	}
	m.mu.Unlock()
	for _, id := range gone {
		m.forget(ctx, id)
	}
}

// adopted is a plugin another node installed, ready to start here.
type adopted struct {
	m         *Manager
	p         *plugin
	what, old string // "installed" or "updated"; the folder of the version it replaces
}

// adopt makes record r this node's installed version of its id in place
// of cur (nil for none); it reports whether the plugin is to be started
// (a refused record is not, and its earlier version is stopped).
func (m *Manager) adopt(ctx context.Context, r record, cur *plugin) (adopted, bool) {
	what := "installed"
	if cur != nil {
		what = "updated"
	}
	if err := m.ensureLocal(ctx, r); err != nil {
		m.log.Error("a plugin "+what+" through another node cannot run on this node", "plugin", r.id, "version", r.version, "error", err)
	}
	p := m.verify(ctx, r)
	p.record = r.mac
	if err := ownSettings(p); err != nil && p.refused == "" {
		p.refused = fmt.Sprintf("%v; %s", err, reinstall)
	}
	m.mu.Lock()
	if cur != nil {
		p.placement, p.placed, p.listing = cur.placement, cur.placed, cur.listing
	}
	m.plugins[r.id] = p
	m.mu.Unlock()
	if p.refused != "" {
		m.log.Error("a plugin "+what+" through another node is not started on this node: its install record is refused", "plugin", r.id, "version", r.version, "reason", p.refused)
		if err := m.rt.Stop(ctx, r.id); err != nil && !errors.Is(err, pluginrt.ErrUnknownPlugin) {
			m.log.Warn("stopping the earlier version", "plugin", r.id, "error", err)
		}
		return adopted{}, false
	}
	a := adopted{m: m, p: p, what: what}
	if cur != nil && cur.inst.Dir != p.inst.Dir {
		a.old = cur.inst.Dir
	}
	return a, true
}

// start starts the adopted plugin in place of the version it replaces,
// whose folder then goes.
func (a adopted) start(ctx context.Context) {
	id, version := a.p.inst.ID, a.p.inst.Version
	a.m.mu.Lock()
	current := a.m.plugins[id] == a.p
	a.m.mu.Unlock()
	if !current {
		return // removed or replaced meanwhile
	}
	if err := a.m.start(ctx, a.p); err != nil {
		a.m.log.Error("a plugin "+a.what+" through another node did not start on this node; the runtime keeps retrying", "plugin", id, "version", version, "error", err)
	} else {
		a.m.log.Info("plugin "+a.what+" through another node now runs on this node", "plugin", id, "version", version)
	}
	if a.old != "" {
		os.RemoveAll(a.old)
	}
}

// forget stops plugin id on this node after it was uninstalled through
// another node: uploads in flight to it are drained first, as in Remove,
// and its files are removed.
func (m *Manager) forget(ctx context.Context, id string) {
	ctx = context.WithoutCancel(ctx)
	if m.drain != nil {
		reopen := m.drain(ctx, id)
		defer reopen()
	}
	if err := m.rt.Stop(ctx, id); err != nil && !errors.Is(err, pluginrt.ErrUnknownPlugin) {
		m.log.Warn("stopping a plugin uninstalled through another node", "plugin", id, "error", err)
	}
	m.mu.Lock()
	delete(m.plugins, id)
	m.mu.Unlock()
	if dir, err := m.versionDir(id, "x"); err == nil {
		os.RemoveAll(filepath.Dir(dir))
	}
	m.log.Info("plugin uninstalled through another node: stopped on this node and its files removed", "plugin", id)
}
