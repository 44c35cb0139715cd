// Package app assembles the MagicAds host: database and migrations, the
// encrypted settings store, the plugin runtime, the storage providers, the
// results service with its retry worker, and the HTTP API.
package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/magicads/r2storage/host/auth"
	"github.com/magicads/r2storage/host/cluster"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/httpapi"
	"github.com/magicads/r2storage/host/localstore"
	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/host/metrics"
	"github.com/magicads/r2storage/host/migrations"
	"github.com/magicads/r2storage/host/orphans"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/host/settingsstore"
	"github.com/magicads/r2storage/host/web"
	"github.com/magicads/r2storage/shared/catalog"
	"github.com/magicads/r2storage/shared/storage"
)

// HostVersion is this host's version, compared with plugins' min_host_version.
const HostVersion = "1.0.0"

// Config is the host's configuration (flags and environment of
// ../shared/api.md).
type Config struct {
	// DataDir holds the results disk, installed plugins and the SQLite file.
	DataDir string
	// DB is a postgres:// URL, or "" for SQLite in DataDir.
	DB string
	// SettingsPoll is how often a node on PostgreSQL looks for plugins
	// and provider settings changed through other nodes without a
	// notification; 0 is providers.DefaultSettingsPoll.
	SettingsPoll time.Duration
	// AppKey is APP_KEY; "" generates one into DataDir.
	AppKey string
	// PreviousAppKeys are older APP_KEYs still accepted (APP_KEY_PREVIOUS).
	PreviousAppKeys string
	// AdminToken is MAGICADS_ADMIN_TOKEN.
	AdminToken string
	// ServiceToken is MAGICADS_SERVICE_TOKEN: the studios' bearer token for the results API.
	ServiceToken string
	// HTTP bounds uploads and connections; zero values take the defaults.
	HTTP httpapi.Limits
	// AdminPassword is MAGICADS_ADMIN_PASSWORD; "" uses the generated
	// password's hash: in DataDir/admin.pw on SQLite (auth.LoadPassword),
	// in the database on PostgreSQL, shared by every node
	// (auth.LoadSharedPassword); the first start generates it.
	AdminPassword string
	// AdminPasswordOut receives a generated admin password, once; nil means os.Stderr.
	AdminPasswordOut io.Writer
	// CatalogURL is the marketplace index (--catalog); "" disables the marketplace.
	CatalogURL string
	// TrustedKeyFiles are the marketplace public keys (--trusted-key).
	TrustedKeyFiles []string
	// License is "regular" or "extended".
	License string
	// TrustedProxies are the reverse proxies (--trusted-proxies) whose
	// X-Forwarded-For names the client and whose requests get Secure cookies.
	TrustedProxies []netip.Prefix
	// Marketplace tunes installs (tests shorten timeouts); the fields above win.
	Marketplace marketplace.Config
	Logger      *slog.Logger
	// Runtime tunes the plugin runtime; zero values take its defaults.
	Runtime pluginrt.Options
	// Results tunes the results service; zero values take its defaults.
	Results results.Options
	// NodeID names this node in job leases and the cluster view
	// (--node-id); "" uses the id in DataDir/node.id, created on first start.
	NodeID string
	// AdvertiseURL is where other nodes reach this one (--advertise-url),
	// shown in the cluster view.
	AdvertiseURL string
	// Cluster tunes the node heartbeat (tests shorten its Interval and
	// LiveWindow); the app sets its node, version, plugins and logger.
	Cluster cluster.Options
	// Providers tunes the providers manager (tests set RolloutStaged);
	// the app sets its plugins dir, keys, node id and callbacks, and its
	// CanaryTimeout from Marketplace's unless set.
	Providers providers.Options
	// NodeURL finds another host node's base URL and whether it is live,
	// to serve through it the local results kept in its results folder
	// (httpapi.Options.NodeURL). nil: such reads answer 503 naming the
	// node; a single node, or nodes on a shared results folder
	// (Results.SharedVolume), never have any.
	NodeURL NodeURLFunc
}

// NodeURLFunc returns the base URL host node node serves the API on and
// whether it is live.
type NodeURLFunc = func(ctx context.Context, node string) (baseURL string, live bool, err error)

// App is a running host.
type App struct {
	DB        *sql.DB
	Dialect   dbmigrate.Dialect
	Settings  *settingsstore.Store
	Runtime   *pluginrt.Runtime
	Providers *providers.Manager
	Results   *results.Service
	Market    *marketplace.Marketplace
	Local     *localstore.Store
	API       *httpapi.API
	// Metrics is the host's Prometheus registry and its collectors.
	Metrics *metrics.Metrics
	// Auth guards the admin API and serves /login and /logout; the admin
	// pages wrap themselves with Auth.RequirePage (httpapi.Options.Fallback).
	Auth *auth.Auth
	// Cluster heartbeats this node's row in the nodes table and reads the
	// cluster view.
	Cluster *cluster.Heartbeat

	log        *slog.Logger
	stopWorker context.CancelFunc
	workerDone chan struct{}
	// stopRecovery and recoveryDone stop and await the startup recovery.
	stopRecovery context.CancelFunc
	recoveryDone chan struct{}
	// custodyCtx ends the custody passes (custodyPass) at Close;
	// custodyWG awaits them.
	custodyCtx  context.Context
	stopCustody context.CancelFunc
	custodyWG   sync.WaitGroup
	closeOnce   sync.Once
	httpLimits  httpapi.Limits
	spool       string // DATA_DIR/tmp/uploads
	// releaseDataDir releases the data dir's lock (Close).
	releaseDataDir func()
}

// lockFileName is the data dir's lock file (lockDataDir).
const lockFileName = "magicads.lock"

// errDataDirInUse is the error of a host started on the data dir of a
// running one; holder names it (" (pid N)") when known.
func errDataDirInUse(dir, holder string) error {
	return fmt.Errorf("data dir %s is already used by another magicads process%s: stop that one first, or give this host its own --data-dir (a data dir holds one host's SQLite database and local results; several hosts on one PostgreSQL database each need their own)", dir, holder)
}

// New opens and migrates the database, loads APP_KEY, starts the installed
// plugins and the retry worker. Errors name what to fix. The data dir is
// this process's until Close: a second host started on it refuses.
func New(ctx context.Context, cfg Config) (*App, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	release, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a, err := open(ctx, cfg)
	if err != nil {
		release()
		return nil, err
	}
	a.releaseDataDir = release
	return a, nil
}

// open is New once the data dir is locked.
func open(ctx context.Context, cfg Config) (*App, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dsn, sqlitePath := cfg.DB, ""
	if dsn == "" {
		dsn = filepath.Join(cfg.DataDir, "magicads.db")
		sqlitePath = dsn
	}
	if err := privateDataDir(cfg.DataDir, sqlitePath, log); err != nil {
		return nil, err
	}
	db, dialect, err := dbmigrate.Open(ctx, dsn)
	if err == nil {
		err = db.PingContext(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("database unreachable (%s): %w", redactDSN(dsn), err)
	}
	// Bound the pool: a burst of finalizations must not exhaust PostgreSQL's
	// connection limit (SQLite serialises writers anyway).
	db.SetMaxOpenConns(16)
	// Keep them open: with database/sql's default of 2 idle connections,
	// the workers' connections were closed and opened again all the time,
	// each open paying the connection setup and its prepared statements
	// again.
	db.SetMaxIdleConns(16)
	a := &App{DB: db, Dialect: dialect, log: log}
	a.custodyCtx, a.stopCustody = context.WithCancel(context.Background())
	if err := a.init(ctx, cfg); err != nil {
		db.Close()
		return nil, err
	}
	return a, nil
}

func (a *App) init(ctx context.Context, cfg Config) error {
	src, err := migrations.FS(string(a.Dialect))
	if err != nil {
		return err
	}
	if err := dbmigrate.Up(ctx, a.DB, a.Dialect, src, dbmigrate.HostTable); err != nil {
		return fmt.Errorf("migrating the host database: %w", err)
	}
	keys, generated, err := settingsstore.LoadKeyring(cfg.AppKey, cfg.PreviousAppKeys, cfg.DataDir, a.log)
	if err != nil {
		return fmt.Errorf("APP_KEY: %w", err)
	}
	if generated {
		a.log.Warn("APP_KEY was not set: generated one into the data dir; back it up, settings cannot be decrypted without it", "file", filepath.Join(cfg.DataDir, "app.key"))
	}
	a.Settings = settingsstore.New(a.DB, keys)
	a.Metrics = metrics.New(metrics.Options{DB: a.DB, Logger: a.log})

	rtOpts := cfg.Runtime
	if rtOpts.Logger == nil {
		rtOpts.Logger = hclog.New(&hclog.LoggerOptions{Name: "plugins", Output: slogWriter{a.log}, Level: hclog.Info})
	}
	var mgr *providers.Manager
	rtOpts.OnStart = func(ctx context.Context, id string, p storage.Provider) error { return mgr.OnStart(ctx, id, p) }
	rtOpts.Redact = func() []string { return mgr.Secrets() }
	rtOpts.OnState = recordState(a.Metrics, rtOpts.OnState)
	rtOpts.OnCall = recordCall(a.Metrics, rtOpts.OnCall)
	if rtOpts.PidDir == "" {
		rtOpts.PidDir = filepath.Join(cfg.DataDir, "run")
	}
	a.Runtime = pluginrt.New(rtOpts)
	nodeID := cfg.NodeID
	if nodeID == "" {
		if nodeID, err = loadNodeID(cfg.DataDir); err != nil {
			return err
		}
	} else if err := cluster.CheckNodeID(nodeID); err != nil {
		return fmt.Errorf("--node-id: %w", err)
	}
	popts := cfg.Providers
	popts.PluginsDir, popts.Keys, popts.NodeID = filepath.Join(cfg.DataDir, "plugins"), keys, nodeID
	popts.Drain = func(ctx context.Context, id string) func() { return a.Results.Drain(ctx, id, results.DrainGrace) }
	popts.SettingsChanged, popts.Configured = a.retryFailed, a.custodyPass
	if popts.CanaryTimeout <= 0 {
		popts.CanaryTimeout = cfg.Marketplace.CanaryTimeout
	}
	mgr = providers.New(a.DB, a.Dialect, a.Settings, a.Runtime, a.log, popts)
	a.Providers = mgr

	a.Local, err = localstore.New(filepath.Join(cfg.DataDir, "results"))
	if err != nil {
		return fmt.Errorf("results disk: %w", err)
	}
	// The startup recovery's cut-off: files dated before it are what
	// earlier processes left; this one has written nothing yet.
	recoverBefore, recoverErr := a.Local.Now()
	resOpts := cfg.Results
	if resOpts.Logger == nil {
		resOpts.Logger = a.log
	}
	resOpts.Metrics = a.Metrics
	if resOpts.NodeID == "" {
		resOpts.NodeID = nodeID
	}
	a.Results = results.New(a.DB, a.Local, mgr, resOpts)
	mcfg := cfg.Marketplace
	mcfg.CatalogURL, mcfg.License, mcfg.HostVersion, mcfg.Logger = cfg.CatalogURL, cfg.License, HostVersion, a.log
	mcfg.PluginsDir = filepath.Join(cfg.DataDir, "plugins")
	mcfg.Metrics = a.Metrics
	if a.Dialect == dbmigrate.Postgres {
		// An update waits for every other live node's canary.
		mcfg.LiveNodes = a.otherLiveNodes
	}
	if len(cfg.TrustedKeyFiles) > 0 {
		if mcfg.TrustedKeys, err = catalog.LoadPublicKeys(cfg.TrustedKeyFiles...); err != nil {
			return fmt.Errorf("--trusted-key: %w", err)
		}
	}
	if cfg.CatalogURL != "" && len(mcfg.TrustedKeys) == 0 {
		return fmt.Errorf("--catalog needs --trusted-key: marketplace archives are installed only when they verify against a trusted key")
	}
	a.Market = marketplace.New(mcfg, a.DB, a.Dialect, mgr, a.Settings)
	pwOut := cfg.AdminPasswordOut
	if pwOut == nil {
		pwOut = os.Stderr
	}
	// On PostgreSQL several nodes may share the database: they share the
	// generated admin password's hash there too. On SQLite it stays in the
	// data dir (admin.pw), beside the database file.
	var pw *auth.Password
	if a.Dialect == dbmigrate.Postgres {
		pw, err = auth.LoadSharedPassword(ctx, a.DB, cfg.AdminPassword, cfg.DataDir, pwOut, a.log)
	} else {
		pw, err = auth.LoadPassword(cfg.AdminPassword, cfg.DataDir, pwOut, a.log)
	}
	if err != nil {
		return fmt.Errorf("admin password: %w", err)
	}
	// Sessions and sign-in limits are in the database: every node accepts
	// a session and counts failures together, and a restart keeps them.
	a.Auth = auth.New(auth.Options{Password: pw, Token: cfg.AdminToken, Logger: a.log, TrustedProxies: cfg.TrustedProxies, DB: a.DB})
	// The pages call the API in-process and the API falls through to the
	// pages for every other path, so each needs the other: a closure breaks
	// the cycle.
	var api *httpapi.API
	pages := a.Auth.RequirePage(web.New(web.Options{Logger: a.log,
		API: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { api.ServeHTTP(w, r) })}))
	root := http.NewServeMux()
	root.Handle("/app/", pages)
	root.Handle("/{$}", http.RedirectHandler("/app/admin/general/plugins", http.StatusSeeOther))
	spool := filepath.Join(cfg.DataDir, "tmp", "uploads")
	a.spool = spool
	// Spool files left by a crash are uploads that never finished.
	spoolLeft, err := clearSpool(spool)
	if err != nil {
		return err
	}
	a.httpLimits = cfg.HTTP.WithDefaults()
	nodeURL := cfg.NodeURL
	if nodeURL == nil {
		// A local result kept on another node is served through it, at
		// the URL its heartbeat advertises.
		nodeURL = func(ctx context.Context, node string) (string, bool, error) { return a.Cluster.NodeURL(ctx, node) }
	}
	api = httpapi.New(a.Results, mgr, a.Market, httpapi.Options{Auth: a.Auth, Fallback: root, Logger: a.log,
		ServiceToken: cfg.ServiceToken, SpoolDir: spool, Limits: a.httpLimits,
		Health: a.health, Orphans: orphans.New(a.DB, mgr, orphans.Options{Logger: a.log}), Metrics: a.Metrics.Handler(),
		Cluster: func(ctx context.Context) (cluster.View, error) { return a.Cluster.View(ctx) },
		NodeURL: nodeURL})
	a.API = api
	copts := cfg.Cluster
	copts.NodeID, copts.AdvertiseURL, copts.Version, copts.Logger = nodeID, cfg.AdvertiseURL, HostVersion, a.log
	copts.Plugins = a.pluginStates
	copts.Settings = mgr.StoredStamps
	a.Cluster = cluster.New(a.DB, a.Dialect, copts)

	if err := mgr.Load(ctx); err != nil {
		return err
	}
	workerCtx, stop := context.WithCancel(context.Background())
	a.stopWorker, a.workerDone = stop, make(chan struct{})
	go func() {
		defer close(a.workerDone)
		var wg sync.WaitGroup
		if a.Dialect == dbmigrate.Postgres {
			// Several nodes: plugins installed and settings saved
			// through another node reach this node (SQLite runs one
			// node only).
			wg.Go(func() { mgr.Watch(workerCtx, cfg.SettingsPoll) })
		}
		if err := a.Results.RunWorker(workerCtx); err != nil && !errors.Is(err, context.Canceled) {
			a.log.Error("retry worker stopped", "error", err)
		}
		wg.Wait()
	}()
	// The cluster view is not worth failing a start for: the heartbeat
	// retries every interval.
	if err := a.Cluster.Start(ctx); err != nil {
		a.log.Warn("this node is not in the cluster view yet; the heartbeat tries again", "node", nodeID, "error", err)
	}
	if recoverErr != nil {
		a.log.Warn("startup recovery skipped: the results disk cannot be written; leftovers of an earlier process stay until a start where it can", "error", recoverErr)
	} else {
		a.startRecovery(recoverBefore, spoolLeft)
	}
	return nil
}

// otherLiveNodes lists the ids of the other nodes live in the cluster view.
func (a *App) otherLiveNodes(ctx context.Context) ([]string, error) {
	v, err := a.Cluster.View(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range v.Nodes {
		if n.Live && !n.Self {
			out = append(out, n.ID)
		}
	}
	return out, nil
}

// retryFailed queues again the jobs of provider id that a permanent error
// parked: its settings were saved and applied.
func (a *App) retryFailed(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.Results.DBTimeout())
	defer cancel()
	if _, err := a.Results.RetryFailed(ctx, id); err != nil {
		a.log.Warn("the failed jobs of a provider whose settings changed were not queued again; retry them from the admin console", "provider", id, "error", err)
	}
}

// custodyTimeout bounds one custody pass (results.Service.Configured).
const custodyTimeout = 10 * time.Minute

// custodyPass runs, in the background, the custody pass of provider id
// that accepted its settings with placement p: its legacy results are
// adopted where they verify, and the recorded URLs of its bucket follow
// its public base. The configure does not wait for it; Close ends it.
func (a *App) custodyPass(_ context.Context, id string, p results.Placement) {
	a.custodyWG.Go(func() {
		ctx, cancel := context.WithTimeout(a.custodyCtx, custodyTimeout)
		defer cancel()
		if err := a.Results.Configured(ctx, id, p); err != nil && a.custodyCtx.Err() == nil {
			a.log.Error("the results of a provider were not all checked after its configure; the rest are at its next configure", "provider", id, "error", err)
		}
	})
}

// recordState records plugin states in m, then tells next (may be nil).
func recordState(m *metrics.Metrics, next func(string, pluginrt.Status)) func(string, pluginrt.Status) {
	return func(id string, st pluginrt.Status) {
		m.PluginState(id, st)
		if next != nil {
			next(id, st)
		}
	}
}

// recordCall records plugin calls in m, then tells next (may be nil).
func recordCall(m *metrics.Metrics, next func(string, string, time.Duration)) func(string, string, time.Duration) {
	return func(id, method string, d time.Duration) {
		m.PluginCall(id, method, d)
		if next != nil {
			next(id, method, d)
		}
	}
}

// MetricsHandler serves the Prometheus metrics without credentials, for
// a listener of their own (--metrics-addr); the API serves them at GET
// /metrics to admins.
func (a *App) MetricsHandler() http.Handler { return a.Metrics.Handler() }

// Server returns the host's HTTP server, with Config.HTTP's timeouts.
func (a *App) Server() *http.Server { return a.httpLimits.Server(a.Handler()) }

// Handler is the HTTP API.
func (a *App) Handler() http.Handler { return a.API }

// Close stops the startup recovery, the worker and every plugin process,
// then closes the database.
func (a *App) Close(ctx context.Context) error {
	var err error
	a.closeOnce.Do(func() {
		a.stopCustody()
		a.custodyWG.Wait()
		if a.stopRecovery != nil {
			a.stopRecovery()
			<-a.recoveryDone
		}
		if a.stopWorker != nil {
			a.stopWorker()
			<-a.workerDone
		}
		if a.Cluster != nil {
			if cerr := a.Cluster.Stop(ctx); cerr != nil {
				a.log.Warn("this node was not marked stopped in the cluster view; the other nodes show it down once its heartbeat is older than the live window", "error", cerr)
			}
		}
		if a.Runtime != nil {
			err = a.Runtime.Close(ctx)
		}
		err = errors.Join(err, a.DB.Close())
		if a.releaseDataDir != nil {
			a.releaseDataDir()
		}
	})
	return err
}
