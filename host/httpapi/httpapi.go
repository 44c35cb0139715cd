// Package httpapi serves the host's HTTP API: the results API (the stand-in
// for the studios), the admin storage and provider-settings API, /healthz,
// and host/auth's /login and /logout. Paths it does not know go to
// Options.Fallback (the admin pages). Shapes follow ../shared/api.md;
// errors are {"error": "..."}.
package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/magicads/r2storage/host/auth"
	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/results"
)

// MaxUpload is the largest result the results API accepts.
const MaxUpload = 8 << 30

// Options configure the API.
type Options struct {
	// AdminToken is accepted as "Authorization: Bearer TOKEN" on admin calls
	// when Auth is nil; empty then refuses every admin call.
	AdminToken string
	// Auth guards the admin calls (bearer token or session with CSRF token)
	// and serves /login and /logout; nil accepts AdminToken only.
	Auth   *auth.Auth
	Logger *slog.Logger
	// Health reports whether the host can serve; nil means always.
	Health func() error
	// Fallback serves the paths outside /api/ that no route matches (the
	// admin pages); nil answers 404.
	Fallback http.Handler
}

// API is the HTTP handler.
type API struct {
	results   *results.Service
	providers *providers.Manager
	market    *marketplace.Marketplace
	opts      Options
	mux       *http.ServeMux
	adminPats []string
}

// New returns the API handler; market may be nil (no marketplace).
func New(res *results.Service, prov *providers.Manager, market *marketplace.Marketplace, opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{results: res, providers: prov, market: market, opts: opts, mux: http.NewServeMux()}
	if a.opts.Auth != nil {
		a.mux.Handle("/login", a.opts.Auth.Handler())
		a.mux.Handle("/logout", a.opts.Auth.Handler())
	} else {
		a.opts.Auth = auth.New(auth.Options{Token: opts.AdminToken, Logger: opts.Logger})
	}
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("POST /api/v1/results", a.createResult)
	a.mux.HandleFunc("GET /api/v1/results", a.listResults)
	a.mux.HandleFunc("GET /api/v1/results/{id}", a.getResult)
	a.mux.HandleFunc("GET /api/v1/results/{id}/content", a.resultContent)
	a.mux.HandleFunc("DELETE /api/v1/results/{id}", a.deleteResult)
	a.handleAdmin("GET /api/v1/admin/plugins", a.listPlugins)
	a.handleAdmin("POST /api/v1/admin/plugins/{id}/install", a.needMarket(a.installPlugin))
	a.handleAdmin("POST /api/v1/admin/plugins/{id}/uninstall", a.needMarket(a.uninstallPlugin))
	a.handleAdmin("POST /api/v1/admin/plugins/{id}/purchase", a.needMarket(a.purchasePlugin))
	a.handleAdmin("POST /api/v1/admin/purchases", a.needMarket(a.recordPurchase))
	a.handleAdmin("GET /api/v1/admin/storage", a.getStorage)
	a.handleAdmin("PUT /api/v1/admin/storage", a.putStorage)
	a.handleAdmin("GET /api/v1/admin/plugins/{id}/settings", a.getSettings)
	a.handleAdmin("PUT /api/v1/admin/plugins/{id}/settings", a.putSettings)
	a.handleAdmin("POST /api/v1/admin/plugins/{id}/test", a.testConnection)
	return a
}

// ServeHTTP serves the API, and hands paths outside /api/ that no route
// matches to Fallback.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	if a.opts.Health != nil {
		if err := a.opts.Health(); err != nil {
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

// statusOf maps the providers package's errors.
func statusOf(err error) int {
	switch {
	case errors.Is(err, providers.ErrNotInstalled):
		return http.StatusNotFound
	case errors.Is(err, providers.ErrNotAnOption):
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}
