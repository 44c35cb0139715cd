// Package marketplace installs, updates and uninstalls plugins from a
// signed catalog, and decides what each marketplace card offers (install,
// buy, uninstall) from the license and the recorded purchases.
//
// An install is one transaction: download (streamed, size-capped, sha256
// while streaming) → verify the signature → unpack into staging (refusing
// unsafe archives) → validate the manifest → run the plugin's migrations →
// start the plugin as a canary → move into place atomically → (on
// PostgreSQL with other live nodes) have every other node run it as a
// canary too → record and activate. Any failure undoes what ran; a previous
// version keeps serving, on every node. On PostgreSQL, installs and
// uninstalls of a plugin run one at a time across all nodes.
package marketplace

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"time"

	"database/sql"
	"database/sql/driver"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/settingsstore"
)

// Licenses a host can run under.
const (
	LicenseRegular  = "regular"
	LicenseExtended = "extended"
)

// ExtendedOnlyMessage is shown on a free-for-Extended plugin to a Regular
// License holder, exactly as the product says it.
const ExtendedOnlyMessage = "This plugin is free only for Extended License holders"

// Config configures the marketplace.
type Config struct {
	// CatalogURL is the index.json URL (http(s):// or file://); "" disables the catalog.
	CatalogURL string
	// TrustedKeys verify the catalog, archives and receipts.
	TrustedKeys []ed25519.PublicKey
	// License is LicenseRegular or LicenseExtended.
	License string
	// PluginsDir receives installed plugins: <dir>/<id>/<version>/.
	PluginsDir string
	// HostVersion is compared with a plugin's min_host_version.
	HostVersion string
	// Platform is "os/arch"; "" is this machine's.
	Platform string
	// HTTPClient fetches the catalog and archives; nil uses a client with timeouts.
	HTTPClient *http.Client
	// MaxArchiveBytes caps a download; 0 is 512 MiB.
	MaxArchiveBytes int64
	// CanaryTimeout bounds the canary's handshake and describe; 0 is 15 s.
	CanaryTimeout time.Duration
	// LiveNodes, when set, lists the other nodes on this database that are
	// live now (their ids; on PostgreSQL). An install or update then
	// waits, before its record switches, until each of them ran the new
	// version as a canary, and fails naming those that could not.
	LiveNodes func(ctx context.Context) ([]string, error)
	// RolloutTimeout bounds that wait; 0 is 60 s.
	RolloutTimeout time.Duration
	Logger         *slog.Logger
	// Metrics counts installs, updates and uninstalls by outcome; nil
	// counts nothing.
	Metrics Metrics
}

// Metrics counts marketplace operations, for monitoring (host/metrics).
type Metrics interface {
	// MarketplaceOperation counts an operation ("install", "update" or
	// "uninstall") that ended with outcome: "ok", "unchanged",
	// "payment_required" or "failed".
	MarketplaceOperation(operation, outcome string)
}

// count records the outcome of operation on m.cfg.Metrics: err nil is ok
// (unchanged when nothing had to be done), a PaymentRequiredError is
// payment_required, any other error failed.
func (m *Marketplace) count(operation *string, unchanged *bool, err error) {
	if m.cfg.Metrics == nil {
		return
	}
	var pay *PaymentRequiredError
	outcome := "ok"
	switch {
	case errors.As(err, &pay):
		outcome = "payment_required"
	case err != nil:
		outcome = "failed"
	case *unchanged:
		outcome = "unchanged"
	}
	m.cfg.Metrics.MarketplaceOperation(*operation, outcome)
}

// Errors the API maps to status codes.
var (
	// ErrNoCatalog: the host has no --catalog.
	ErrNoCatalog = errors.New("no marketplace catalog is configured (--catalog)")
	// ErrCatalogUnavailable: the catalog could not be fetched or verified.
	ErrCatalogUnavailable = errors.New("the marketplace catalog is unavailable")
	// ErrUnknownPlugin: the catalog has no such plugin.
	ErrUnknownPlugin = errors.New("the catalog has no such plugin")
	// ErrNotInstalled: uninstall of a plugin that is not installed.
	ErrNotInstalled = errors.New("the plugin is not installed")
	// ErrInvalidReceipt: a purchase receipt that does not verify.
	ErrInvalidReceipt = errors.New("the receipt does not verify against a trusted marketplace key")
)

// PaymentRequiredError says a plugin must be bought before it is installed.
type PaymentRequiredError struct {
	PluginID    string
	CheckoutURL string
	Message     string
}

// Error explains what to do.
func (e *PaymentRequiredError) Error() string { return e.Message }

// InstallError names the install step that failed.
type InstallError struct {
	PluginID string
	Step     string
	Err      error
}

// Error names the plugin, the step and the cause.
func (e *InstallError) Error() string {
	return fmt.Sprintf("installing %s failed at %s: %v", e.PluginID, e.Step, e.Err)
}

// Unwrap returns the cause.
func (e *InstallError) Unwrap() error { return e.Err }

// Marketplace installs and lists plugins.
type Marketplace struct {
	cfg      Config
	db       *sql.DB
	dialect  dbmigrate.Dialect
	prov     *providers.Manager
	settings *settingsstore.Store
	log      *slog.Logger

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// New returns a marketplace.
func New(cfg Config, db *sql.DB, dialect dbmigrate.Dialect, prov *providers.Manager, settings *settingsstore.Store) *Marketplace {
	if cfg.License == "" {
		cfg.License = LicenseRegular
	}
	if cfg.Platform == "" {
		cfg.Platform = runtime.GOOS + "/" + runtime.GOARCH
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{ResponseHeaderTimeout: 30 * time.Second, Proxy: http.ProxyFromEnvironment}}
	}
	if cfg.MaxArchiveBytes <= 0 {
		cfg.MaxArchiveBytes = 512 << 20
	}
	if cfg.CanaryTimeout <= 0 {
		cfg.CanaryTimeout = providers.DefaultCanaryTimeout
	}
	if cfg.RolloutTimeout <= 0 {
		cfg.RolloutTimeout = 60 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Marketplace{cfg: cfg, db: db, dialect: dialect, prov: prov, settings: settings, log: log, locks: map[string]*sync.Mutex{}}
}

// lock serialises installs, updates and uninstalls of one plugin.
func (m *Marketplace) lock(id string) func() {
	m.mu.Lock()
	l, ok := m.locks[id]
	if !ok {
		l = &sync.Mutex{}
		m.locks[id] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// lockPoll is how often clusterLock tries again for a lock another node
// holds.
const lockPoll = 200 * time.Millisecond

// ErrBusyElsewhere is wrapped by the error of an install or uninstall whose
// ctx ended while another node's install or uninstall of the same plugin
// ran.
var ErrBusyElsewhere = errors.New("an install or uninstall through another node is still running; try again when it finishes")

// clusterLock takes, on PostgreSQL, the cluster-wide lock of plugin id's
// installs, updates and uninstalls: a session-level advisory lock on a
// connection of its own, keyed by the schema and the id (so hosts on other
// schemas of the database do not wait for each other). It waits while
// another node holds it, until ctx ends. The lock is tried again every
// lockPoll rather than waited for in one statement, so the sessions'
// statement_timeout never cuts a long wait. The returned release unlocks
// and discards the connection (closing it releases the lock whatever
// happens). On SQLite one host runs per database: nothing is taken.
func (m *Marketplace) clusterLock(ctx context.Context, id string) (func(), error) {
	if m.dialect != dbmigrate.Postgres {
		return func() {}, nil
	}
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("taking the cluster-wide install lock of %s: %w", id, err)
	}
	// discard closes the connection instead of pooling it: a session that
	// may still hold the lock must not serve other statements.
	discard := func() {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = conn.Close()
	}
	const key = `hashtextextended(current_schema() || '/magicads plugin install/' || $1, 0)`
	for {
		var got bool
		if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock(`+key+`)`, id).Scan(&got); err != nil {
			discard()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("installing or uninstalling %s: %w (%w)", id, ErrBusyElsewhere, ctx.Err())
			}
			return nil, fmt.Errorf("taking the cluster-wide install lock of %s: %w", id, err)
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			discard()
			return nil, fmt.Errorf("installing or uninstalling %s: %w (%w)", id, ErrBusyElsewhere, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(uctx, `SELECT pg_advisory_unlock(`+key+`)`, id); err != nil {
			m.log.Warn("releasing the cluster-wide install lock; closing its connection releases it", "plugin", id, "error", err)
		}
		discard()
	}, nil
}

// lockAll takes plugin id's lock on this node, then its cluster-wide lock.
// The caller then syncs this node's plugins (providers.Manager.Sync), so an
// install or uninstall through another node that held the lock is seen.
func (m *Marketplace) lockAll(ctx context.Context, id string) (func(), error) {
	unlock := m.lock(id)
	release, err := m.clusterLock(ctx, id)
	if err != nil {
		unlock()
		return nil, err
	}
	return func() {
		release()
		unlock()
	}, nil
}
