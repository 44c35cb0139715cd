// Package httpapi serves the host's HTTP API: the results API (the stand-in
// for the studios), the admin storage and provider-settings API, /healthz,
// and host/auth's /login and /logout. Paths it does not know go to
// Options.Fallback (the admin pages). Shapes follow ../shared/api.md;
// errors are {"error": "..."}.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/magicads/r2storage/host/auth"
	"github.com/magicads/r2storage/host/cluster"
	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/host/orphans"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/results"
)

// Options configure the API.
type Options struct {
	// AdminToken is accepted as "Authorization: Bearer TOKEN" on admin calls
	// when Auth is nil; empty then refuses every admin call.
	AdminToken string
	// ServiceToken is MAGICADS_SERVICE_TOKEN, the studios' bearer token: it
	// may create, get, list and delete results; "" accepts none.
	ServiceToken string
	// SpoolDir holds uploads whose file part came before their fields
	// (inside the data dir, never the system temp dir, which nothing
	// cleans after a crash); "" refuses such uploads with a 500 naming it.
	SpoolDir string
	// Limits bound uploads and slow bodies; zero values take the defaults.
	Limits Limits
	// Auth guards the admin calls (bearer token or session with CSRF token)
	// and serves /login and /logout; nil accepts AdminToken only.
	Auth   *auth.Auth
	Logger *slog.Logger
	// Health reports whether the host can serve: nil, or an error naming
	// what is wrong. It must return soon after ctx ends (HealthTimeout);
	// nil means always healthy.
	Health func(ctx context.Context) error
	// Fallback serves the paths outside /api/ that no route matches (the
	// admin pages); nil answers 404.
	Fallback http.Handler
	// Orphans scans and cleans providers' buckets (the orphans routes);
	// nil answers them 503.
	Orphans *orphans.Scanner
	// Metrics serves the Prometheus metrics at GET /metrics, an admin
	// call; nil answers 404 there.
	Metrics http.Handler
	// Cluster reads the cluster view (GET /api/v1/admin/cluster); nil
	// answers it 503.
	Cluster func(ctx context.Context) (cluster.View, error)
	// NodeURL says where host node node serves this API (its base URL)
	// and whether it is live; nil means a single node. The content of a
	// local result kept in another node's results folder is served
	// through that node (see resultContent).
	NodeURL func(ctx context.Context, node string) (baseURL string, live bool, err error)
}

// API is the HTTP handler.
type API struct {
	results    *results.Service
	providers  *providers.Manager
	market     *marketplace.Marketplace
	opts       Options
	mux        *routeMux
	adminPats  []string
	resultPats []string
	limits     Limits
	// uploads holds a token per upload in flight (Limits.MaxUploads).
	uploads chan struct{}
	// jobs is results (nil without one): job counts and retries.
	jobs jobStats
	// statsLog keeps the storage overview from logging the same job
	// counts error on every request.
	statsLog changeLog
	// forward sends content requests to the node holding a local copy.
	forward *http.Client
}

// New returns the API handler; market may be nil (no marketplace).
func New(res *results.Service, prov *providers.Manager, market *marketplace.Marketplace, opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{results: res, providers: prov, market: market, opts: opts, mux: newRouteMux(), limits: opts.Limits.WithDefaults(), forward: newForwardClient()}
	a.uploads = make(chan struct{}, a.limits.MaxUploads)
	if res != nil {
		a.jobs = res
	}
	if a.opts.Auth != nil {
		a.mux.Handle("/login", a.opts.Auth.Handler())
		a.mux.Handle("/logout", a.opts.Auth.Handler())
	} else {
		a.opts.Auth = auth.New(auth.Options{Token: opts.AdminToken, Logger: opts.Logger})
	}
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("GET "+OpenAPIPath, a.openAPI)
	a.handleResults("POST /api/v1/results", a.createResult)
	a.handleResults("GET /api/v1/results", a.listResults)
	a.handleResults("GET /api/v1/results/{id}", a.getResult)
	// A capability URL: result ids are random UUIDs, like the bucket's URLs.
	a.mux.HandleFunc("GET /api/v1/results/{id}/content", a.resultContent)
	a.handleResults("DELETE /api/v1/results/{id}", a.deleteResult)
	a.handleAdmin("GET /api/v1/admin/plugins", a.listPlugins)
	a.handleAdmin("POST /api/v1/admin/plugins/{id}/install", a.needMarket(a.installPlugin))
	a.handleAdmin("POST /api/v1/admin/plugins/{id}/uninstall", a.needMarket(a.uninstallPlugin))
	a.handleAdmin("POST /api/v1/admin/plugins/{id}/purchase", a.needMarket(a.purchasePlugin))
	a.handleAdmin("POST /api/v1/admin/purchases", a.needMarket(a.recordPurchase))
	a.handleAdmin("GET /api/v1/admin/storage", a.getStorage)
	a.handleAdmin("PUT /api/v1/admin/storage", a.putStorage)
	a.handleAdmin("POST /api/v1/admin/storage/{id}/retry", a.retryFailed)
	a.handleAdmin("GET /api/v1/admin/storage/overview", a.getOverview)
	a.handleAdmin("POST /api/v1/admin/storage/jobs/{job}/retry", a.retryJob)
	a.handleAdmin("POST /api/v1/admin/storage/{id}/orphans/scan", a.scanOrphans)
	a.handleAdmin("POST /api/v1/admin/storage/{id}/orphans/delete", a.deleteOrphans)
	a.handleAdmin("GET /api/v1/admin/plugins/{id}/settings", a.getSettings)
	a.handleAdmin("PUT /api/v1/admin/plugins/{id}/settings", a.putSettings)
	a.handleAdmin("POST /api/v1/admin/plugins/{id}/test", a.testConnection)
	a.handleAdmin("POST /api/v1/admin/storage/bulk", a.startBulk)
	a.handleAdmin("GET /api/v1/admin/storage/bulk", a.listBulk)
	a.handleAdmin("GET /api/v1/admin/storage/bulk/{run}", a.getBulk)
	a.handleAdmin("POST /api/v1/admin/storage/bulk/{run}/pause", a.bulkAction("pausing", (*results.Service).PauseBulk))
	a.handleAdmin("POST /api/v1/admin/storage/bulk/{run}/resume", a.bulkAction("resuming", (*results.Service).ResumeBulk))
	a.handleAdmin("POST /api/v1/admin/storage/bulk/{run}/cancel", a.bulkAction("cancelling", (*results.Service).CancelBulk))
	a.handleAdmin("GET /metrics", a.metrics)
	a.handleAdmin("GET /api/v1/admin/cluster", a.getCluster)
	return a
}

// ServeHTTP serves the API, and hands paths outside /api/ that no route
// matches to Fallback. Every answer carries nosniff, and a request body that
// arrives slower than Limits.MinUploadRate is cut.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Body != nil && r.Body != http.NoBody {
		b := newRateBody(w, r.Body, a.limits.MinUploadRate, a.limits.RateWindow)
		defer b.handlerDone()
		r.Body = b
	}
	if a.opts.Fallback != nil && !strings.HasPrefix(r.URL.Path, "/api/") {
		if _, pattern := a.mux.Handler(r); pattern == "" {
			a.opts.Fallback.ServeHTTP(w, r)
			return
		}
	}
	a.mux.ServeHTTP(w, r)
}

// AdminRoutes lists the admin calls' patterns ("METHOD /path").
func (a *API) AdminRoutes() []string { return append([]string(nil), a.adminPats...) }

// ResultsRoutes lists the results calls that need credentials ("METHOD /path").
func (a *API) ResultsRoutes() []string { return append([]string(nil), a.resultPats...) }

// handleResults registers a results call: the service token, or admin
// credentials (the bearer token, or a session with its CSRF token on
// writes); 401/403 {"error"} otherwise.
func (a *API) handleResults(pattern string, h http.HandlerFunc) {
	a.resultPats = append(a.resultPats, pattern)
	a.mux.Handle(pattern, a.opts.Auth.RequireService(h, a.opts.ServiceToken))
}

// handleAdmin registers an admin call behind admin().
func (a *API) handleAdmin(pattern string, h http.HandlerFunc) {
	a.adminPats = append(a.adminPats, pattern)
	a.mux.Handle(pattern, a.admin(h))
}

// admin wraps an admin handler with the auth check: the bearer token, or an
// admin session with its CSRF token on writes (401/403 {"error"} otherwise).
func (a *API) admin(h http.HandlerFunc) http.Handler { return a.opts.Auth.Require(h) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decode reads a JSON body of at most 1 MiB into v.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "the body must be a JSON object: "+err.Error())
		return false
	}
	return true
}

// HealthTimeout bounds the checks of /healthz; it answers within a second
// even when a check hangs (a blackholed database, a stuck disk).
const HealthTimeout = 600 * time.Millisecond

// healthAnswerBy is when /healthz answers 503 if the checks have not
// returned after HealthTimeout.
const healthAnswerBy = 900 * time.Millisecond

// healthz answers 200 {"status":"ok"}, or 503 {"error"} naming what is
// wrong, within a second.
func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	if a.opts.Health != nil {
		ctx, cancel := context.WithTimeout(r.Context(), HealthTimeout)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- a.opts.Health(ctx) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(healthAnswerBy):
			err = fmt.Errorf("the health checks did not finish within %v", HealthTimeout)
		}
		if err != nil {
			w.Header().Set("Retry-After", retryAfter)
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// internalError logs err and answers 500 naming the operation.
func (a *API) internalError(w http.ResponseWriter, op string, err error) {
	a.opts.Logger.Error(op+" failed", "error", err)
	writeError(w, http.StatusInternalServerError, op+": "+err.Error())
}

// providerError answers an error of the providers package: a fault of the
// database or the disk as hostFault does, the rest by statusOf.
func (a *API) providerError(w http.ResponseWriter, r *http.Request, op string, err error) {
	if !a.hostFault(w, r, op, err) {
		writeError(w, statusOf(err), err.Error())
	}
}

// statusOf maps the providers package's errors.
func statusOf(err error) int {
	switch {
	case errors.Is(err, providers.ErrNotInstalled):
		return http.StatusNotFound
	case errors.Is(err, providers.ErrNotAnOption):
		return http.StatusUnprocessableEntity
	case errors.Is(err, providers.ErrRefused):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// Limits bound what a client can make the host hold: upload sizes, uploads
// in flight, slow bodies and idle connections. Zero values take the defaults.
type Limits struct {
	// MaxResultBytes is the largest result accepted (--max-result-bytes,
	// DefaultMaxResultBytes); larger uploads get 413.
	MaxResultBytes int64
	// MaxUploads is how many uploads may be in flight at once (64); more get
	// 503 with Retry-After.
	MaxUploads int
	// MinUploadRate is the slowest a request body may arrive, in bytes per
	// second averaged over RateWindow (16 KiB/s); slower bodies are cut.
	MinUploadRate int64
	// RateWindow is the window MinUploadRate is measured over (30s).
	RateWindow time.Duration
	// ReadHeaderTimeout bounds reading a request's headers (10s).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long (60s).
	IdleTimeout time.Duration
}

// DefaultMaxResultBytes is the default largest result: 2 GiB, room for a
// long high-resolution studio video.
const DefaultMaxResultBytes int64 = 2 << 30

// MaxMaxResultBytes is the highest MaxResultBytes the host takes (1 TiB).
const MaxMaxResultBytes int64 = 1 << 40

// WithDefaults fills the zero fields of l.
func (l Limits) WithDefaults() Limits {
	if l.MaxResultBytes <= 0 {
		l.MaxResultBytes = DefaultMaxResultBytes
	}
	l.MaxResultBytes = min(l.MaxResultBytes, MaxMaxResultBytes)
	if l.MaxUploads <= 0 {
		l.MaxUploads = 64
	}
	if l.MinUploadRate <= 0 {
		l.MinUploadRate = 16 << 10
	}
	if l.RateWindow <= 0 {
		l.RateWindow = 30 * time.Second
	}
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = 10 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = time.Minute
	}
	return l
}

// Server returns an HTTP server for h with the limits' timeouts. It sets no
// overall read or write timeout: large uploads and downloads may take long,
// and slow bodies are cut by the API itself.
func (l Limits) Server(h http.Handler) *http.Server {
	l = l.WithDefaults()
	return &http.Server{Handler: h, ReadHeaderTimeout: l.ReadHeaderTimeout, IdleTimeout: l.IdleTimeout, MaxHeaderBytes: 64 << 10}
}
