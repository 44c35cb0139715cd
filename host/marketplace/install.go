package marketplace

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/magicads/r2storage/host/archive"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/settingsstore"
	"github.com/magicads/r2storage/shared/catalog"
	"github.com/magicads/r2storage/shared/manifest"
	"github.com/magicads/r2storage/shared/sdk"
)

// retainedEntry keeps an uninstalled provider's settings for a later install.
func retainedEntry(id string) string { return "retained." + providers.EntryName(id) }

// fetch loads and verifies the catalog, and refuses it unless it is fresh
// (accept: not expired, serial not below one already accepted).
func (m *Marketplace) fetch(ctx context.Context) (*catalog.Index, error) {
	if m.cfg.CatalogURL == "" {
		return nil, ErrNoCatalog
	}
	idx, err := catalog.Fetch(ctx, m.cfg.HTTPClient, m.cfg.CatalogURL, m.cfg.TrustedKeys)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCatalogUnavailable, err)
	}
	if err := m.accept(ctx, idx); err != nil {
		return nil, err
	}
	return idx, nil
}

func findPlugin(idx *catalog.Index, id string) (catalog.Plugin, bool) {
	for _, p := range idx.Plugins {
		if p.ID == id {
			return p, true
		}
	}
	return catalog.Plugin{}, false
}

// pick returns the newest version this host can run on this platform.
func (m *Marketplace) pick(p catalog.Plugin) (catalog.Version, catalog.Archive, error) {
	var best *catalog.Version
	for i := range p.Versions {
		v := &p.Versions[i]
		if _, ok := v.Archives[m.cfg.Platform]; !ok || !slices.Contains(v.ProtocolVersions, sdk.ProtocolVersion) {
			continue
		}
		if m.cfg.HostVersion != "" && v.MinHostVersion != "" && newer(v.MinHostVersion, m.cfg.HostVersion) {
			continue
		}
		if best == nil || newer(v.Version, best.Version) {
			best = v
		}
	}
	if best == nil {
		return catalog.Version{}, catalog.Archive{}, fmt.Errorf("no version of %s runs on this host (%s, protocol %d, host version %s)", p.ID, m.cfg.Platform, sdk.ProtocolVersion, m.cfg.HostVersion)
	}
	return *best, best.Archives[m.cfg.Platform], nil
}

// newer reports whether version a is newer than b (semver precedence);
// an unparsable version is never newer.
func newer(a, b string) bool {
	c, err := catalog.CompareVersions(a, b)
	return err == nil && c > 0
}

// entitled reports whether the host may install p without buying it.
func (m *Marketplace) entitled(ctx context.Context, p catalog.Plugin) (bool, error) {
	if p.Pricing.Model != "paid" {
		return true, nil
	}
	if p.Pricing.FreeForExtendedLicense && m.cfg.License == LicenseExtended {
		return true, nil
	}
	return m.purchased(ctx, p.ID)
}

func (m *Marketplace) purchased(ctx context.Context, id string) (bool, error) {
	var n int
	if err := m.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM purchases WHERE plugin_id = $1`, id).Scan(&n); err != nil {
		return false, fmt.Errorf("reading purchases: %w", err)
	}
	return n > 0, nil
}

func (m *Marketplace) paymentRequired(p catalog.Plugin) error {
	msg := fmt.Sprintf("%s is a paid plugin: buy it at the marketplace checkout first", p.Name)
	if p.Pricing.FreeForExtendedLicense {
		msg = ExtendedOnlyMessage
	}
	return &PaymentRequiredError{PluginID: p.ID, CheckoutURL: p.CheckoutURL, Message: msg}
}

// Install installs (or updates to) the newest compatible catalog version
// of plugin id and returns the version now installed.
func (m *Marketplace) Install(ctx context.Context, id string) (_ string, err error) {
	op, unchanged := "install", false
	defer func() { m.count(&op, &unchanged, err) }()
	unlock, err := m.lockAll(ctx, id)
	if err != nil {
		return "", err
	}
	defer unlock()
	idx, err := m.fetch(ctx)
	if err != nil {
		return "", &InstallError{PluginID: id, Step: "catalog", Err: err}
	}
	p, ok := findPlugin(idx, id)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownPlugin, id)
	}
	ok, err = m.entitled(ctx, p)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", m.paymentRequired(p)
	}
	ver, arc, err := m.pick(p)
	if err != nil {
		return "", &InstallError{PluginID: id, Step: "choose version", Err: err}
	}
	m.prov.Sync(ctx) // an install through another node a moment ago
	old, hadOld := m.prov.Installed(id)
	if hadOld {
		op = "update"
	}
	// A record that failed its authentication check is installed again.
	if hadOld && old.Version == ver.Version && m.prov.Verified(id) {
		unchanged = true
		return old.Version, nil
	}
	// A record that failed its check has an untrusted version: the catalog's
	// newest replaces it.
	if hadOld && m.prov.Verified(id) {
		if err := checkNotOlder(id, old.Version, ver.Version); err != nil {
			return "", &InstallError{PluginID: id, Step: "choose version", Err: err}
		}
	}
	if err := m.install(ctx, p, ver, arc, old, hadOld); err != nil {
		m.log.Error("plugin install failed; nothing changed", "plugin", id, "version", ver.Version, "error", err)
		return "", err
	}
	m.log.Info("plugin installed", "plugin", id, "version", ver.Version)
	return ver.Version, nil
}

// install runs the transaction; on error everything it did is undone.
func (m *Marketplace) install(ctx context.Context, p catalog.Plugin, ver catalog.Version, arc catalog.Archive, old providers.Installed, hadOld bool) (err error) {
	fail := func(step string, e error) error { return &InstallError{PluginID: p.ID, Step: step, Err: e} }
	// Only an authenticated previous version is put back after a failure.
	restorable := hadOld && m.prov.Verified(p.ID)
	stagingRoot := filepath.Join(m.cfg.PluginsDir, ".staging")
	if err := os.MkdirAll(stagingRoot, 0o755); err != nil {
		return fail("staging", err)
	}
	staging, err := os.MkdirTemp(stagingRoot, p.ID+"-")
	if err != nil {
		return fail("staging", err)
	}
	defer os.RemoveAll(staging)

	// Download and authenticate.
	file := filepath.Join(staging, "archive.tar.gz")
	if err := m.download(ctx, p.ID, ver.Version, arc, file); err != nil {
		return fail("download", err)
	}
	// Unpack.
	root := filepath.Join(staging, "plugin")
	if err := os.Mkdir(root, 0o755); err != nil {
		return fail("unpack", err)
	}
	f, err := os.Open(file)
	if err != nil {
		return fail("unpack", err)
	}
	_, err = archive.Unpack(ctx, f, root, archive.Limits{})
	f.Close()
	if err != nil {
		return fail("unpack", err)
	}
	// Validate.
	exe, sum, err := m.validate(root, p.ID, ver.Version)
	if err != nil {
		return fail("validate manifest", err)
	}
	// Migrate, in the plugin's own namespace.
	ns := m.prov.Namespaces()
	before, err := ns.Version(ctx, p.ID)
	if err != nil {
		return fail("migrations", err)
	}
	migrations := providers.MigrationsFS(root)
	undoMigrations := func() {
		uctx := context.WithoutCancel(ctx)
		if derr := ns.DownTo(uctx, p.ID, migrations, before); derr != nil {
			m.log.Error("rolling back the plugin's migrations failed", "plugin", p.ID, "error", derr)
		}
		if !before.Applied {
			// The namespace is this install's: it goes whatever the down
			// migrations did.
			if derr := ns.Drop(uctx, p.ID); derr != nil {
				m.log.Error("removing the plugin's database namespace failed", "plugin", p.ID, "error", derr)
			}
		}
	}
	if err := ns.Up(ctx, p.ID, migrations); err != nil {
		undoMigrations()
		return fail("migrations", err)
	}
	// Canary.
	if err := m.canary(ctx, filepath.Join(root, filepath.FromSlash(exe)), sum, p.ID, ver.Version); err != nil {
		undoMigrations()
		return fail("canary start", err)
	}
	// Move into place and activate.
	final := filepath.Join(m.cfg.PluginsDir, p.ID, ver.Version)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		undoMigrations()
		return fail("move into place", err)
	}
	os.RemoveAll(final) // a leftover of an interrupted earlier attempt
	if err := os.Rename(root, final); err != nil {
		undoMigrations()
		return fail("move into place", err)
	}
	// The settings entry is the host's; a fresh install's goes if it fails.
	dropEntry := func() {
		if !hadOld {
			if derr := m.settings.Delete(context.WithoutCancel(ctx), providers.EntryName(p.ID)); derr != nil {
				m.log.Error("removing the plugin's settings entry failed", "plugin", p.ID, "error", derr)
			}
		}
	}
	if err := m.restoreSettings(ctx, p.ID); err != nil {
		os.RemoveAll(final)
		dropEntry()
		undoMigrations()
		return fail("settings", err)
	}
	inst := providers.Installed{ID: p.ID, Version: ver.Version, Dir: final, BinaryPath: filepath.Join(final, filepath.FromSlash(exe)), SHA256: sum}
	// Every other live node checks the new version before the record
	// switches; until then they all keep running the old one.
	if err := m.rollout(ctx, inst); err != nil {
		os.RemoveAll(final)
		dropEntry()
		undoMigrations()
		return err
	}
	if err := m.prov.Activate(ctx, inst); err != nil {
		if restorable {
			if rerr := m.prov.Activate(context.WithoutCancel(ctx), old); rerr != nil {
				m.log.Error("re-activating the previous version failed", "plugin", p.ID, "error", rerr)
			}
		} else {
			// Nothing to go back to (or only a record that failed its
			// check, which is never re-authenticated).
			_ = m.prov.Remove(context.WithoutCancel(ctx), p.ID)
		}
		os.RemoveAll(final)
		dropEntry()
		undoMigrations()
		return fail("activate", err)
	}
	if _, err := m.db.ExecContext(ctx, `DELETE FROM settings WHERE name = $1`, retainedEntry(p.ID)); err != nil {
		m.log.Warn("dropping the retained settings copy failed", "plugin", p.ID, "error", err)
	}
	if hadOld && old.Dir != final {
		os.RemoveAll(old.Dir)
	}
	return nil
}

// download streams the archive to file, checking size and sha256 against
// the catalog and the catalog's signature over them.
func (m *Marketplace) download(ctx context.Context, id, version string, arc catalog.Archive, file string) error {
	if err := catalog.VerifyArchive(arc, id, version, m.cfg.Platform, m.cfg.TrustedKeys); err != nil {
		return err
	}
	if arc.Size <= 0 || arc.Size > m.cfg.MaxArchiveBytes {
		return fmt.Errorf("the catalog lists a %d-byte archive; the limit is %d", arc.Size, m.cfg.MaxArchiveBytes)
	}
	url, err := catalog.ResolveURL(m.cfg.CatalogURL, arc.URL)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	sum, n, err := catalog.Download(ctx, m.cfg.HTTPClient, url, arc.Size, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n != arc.Size || !strings.EqualFold(sum, arc.SHA256) {
		return fmt.Errorf("the archive does not match the catalog: got %d bytes with sha256 %s, want %d bytes with sha256 %s", n, sum, arc.Size, arc.SHA256)
	}
	return nil
}

// validate checks the unpacked manifest and returns the executable's path
// (slash-separated, relative) and sha256.
func (m *Marketplace) validate(root, id, version string) (string, []byte, error) {
	// The manifest, the settings schema (against the console's vocabulary)
	// and the migrations folder, as the packaging and conformance commands
	// check them.
	man, err := manifest.CheckBundle(os.DirFS(root))
	if err != nil {
		return "", nil, err
	}
	if man.ID != id || man.Version != version {
		return "", nil, fmt.Errorf("the manifest says %s %s, the catalog %s %s", man.ID, man.Version, id, version)
	}
	goos, goarch, _ := strings.Cut(m.cfg.Platform, "/")
	exe, ok := man.Executable(goos, goarch)
	if !ok {
		return "", nil, fmt.Errorf("the manifest names no executable for %s", m.cfg.Platform)
	}
	fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(exe)))
	if err != nil || !fi.Mode().IsRegular() {
		return "", nil, fmt.Errorf("the archive lacks the %s executable %s", m.cfg.Platform, exe)
	}
	if goos != "windows" && fi.Mode()&0o111 == 0 {
		return "", nil, fmt.Errorf("the executable %s is not executable", exe)
	}
	f, err := os.Open(filepath.Join(root, filepath.FromSlash(exe)))
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", nil, err
	}
	return exe, h.Sum(nil), nil
}

// canary starts the staged binary and checks it describes itself as its
// manifest says; it is always stopped again.
func (m *Marketplace) canary(ctx context.Context, bin string, sum []byte, id, version string) error {
	return providers.Canary(ctx, bin, sum, id, version, m.cfg.CanaryTimeout)
}

// rollout, on PostgreSQL with other live nodes, publishes inst's bundle and
// waits until every one of those nodes ran it as a canary (see
// providers.Manager.StartRollout); a node that failed or did not answer in
// time fails the install, naming it, and what rollout did is undone.
func (m *Marketplace) rollout(ctx context.Context, inst providers.Installed) error {
	fail := func(step string, e error) error { return &InstallError{PluginID: inst.ID, Step: step, Err: e} }
	if m.dialect != dbmigrate.Postgres || m.cfg.LiveNodes == nil {
		return nil
	}
	nodes, err := m.cfg.LiveNodes(ctx)
	if err != nil {
		return fail("rollout", fmt.Errorf("the other live nodes cannot be listed, so it is not known which must check the new version first; try again once the database answers: %w", err))
	}
	if len(nodes) == 0 {
		return nil
	}
	uctx := context.WithoutCancel(ctx)
	if err := m.prov.PublishBundle(ctx, inst); err != nil {
		m.prov.DropBundle(uctx, inst.ID, inst.Version)
		return fail("rollout", err)
	}
	token, err := m.prov.StartRollout(ctx, inst)
	if err != nil {
		m.prov.DropBundle(uctx, inst.ID, inst.Version)
		return fail("rollout", err)
	}
	m.log.Info("waiting for the other live nodes to check the new version", "plugin", inst.ID, "version", inst.Version, "nodes", nodes)
	err = m.prov.AwaitRollout(ctx, token, nodes, m.cfg.RolloutTimeout)
	m.prov.EndRollout(uctx, token)
	if err != nil {
		m.prov.DropBundle(uctx, inst.ID, inst.Version)
		var re *providers.RolloutError
		if errors.As(err, &re) {
			which := re.Nodes()
			step := "canary on node " + which[0]
			if len(which) > 1 {
				step = "canary on nodes " + strings.Join(which, ", ")
			}
			return fail(step, err)
		}
		return fail("rollout", err)
	}
	return nil
}

// restoreSettings brings back the settings an earlier uninstall retained
// into the plugin's settings entry (which Activate creates if it is still
// missing).
func (m *Marketplace) restoreSettings(ctx context.Context, id string) error {
	values, err := m.settings.Load(ctx, retainedEntry(id))
	if errors.Is(err, settingsstore.ErrNotFound) || errors.Is(err, settingsstore.ErrNotConfigured) {
		return nil
	}
	if err != nil {
		m.log.Warn("settings kept from an earlier install cannot be read; starting without them", "plugin", id, "error", err)
		return nil
	}
	// The retained copy is dropped only once the install has succeeded.
	return m.settings.Save(ctx, providers.EntryName(id), id, values)
}
