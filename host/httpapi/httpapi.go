// Package httpapi serves the host's HTTP API: the results API (the stand-in
// for the studios), the admin storage and provider-settings API, and
// /healthz. Shapes follow ../shared/api.md; errors are {"error": "..."}.
package httpapi

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/results"
)

// MaxUpload is the largest result the results API accepts.
const MaxUpload = 8 << 30

// Options configure the API.
type Options struct {
	// AdminToken is accepted as "Authorization: Bearer TOKEN" on admin calls.
	// Empty refuses every admin call until the console login exists.
	AdminToken string
	Logger     *slog.Logger
	// Health reports whether the host can serve; nil means always.
	Health func() error
}

// API is the HTTP handler.
type API struct {
	results   *results.Service
	providers *providers.Manager
	market    *marketplace.Marketplace
	opts      Options
	mux       *http.ServeMux
}

// New returns the API handler; market may be nil (no marketplace).
func New(res *results.Service, prov *providers.Manager, market *marketplace.Marketplace, opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{results: res, providers: prov, market: market, opts: opts, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("POST /api/v1/results", a.createResult)
	a.mux.HandleFunc("GET /api/v1/results", a.listResults)
	a.mux.HandleFunc("GET /api/v1/results/{id}", a.getResult)
	a.mux.HandleFunc("GET /api/v1/results/{id}/content", a.resultContent)
	a.mux.HandleFunc("DELETE /api/v1/results/{id}", a.deleteResult)
	a.mux.Handle("GET /api/v1/admin/plugins", a.admin(a.listPlugins))
	a.mux.Handle("POST /api/v1/admin/plugins/{id}/install", a.admin(a.needMarket(a.installPlugin)))
	a.mux.Handle("POST /api/v1/admin/plugins/{id}/uninstall", a.admin(a.needMarket(a.uninstallPlugin)))
	a.mux.Handle("POST /api/v1/admin/plugins/{id}/purchase", a.admin(a.needMarket(a.purchasePlugin)))
	a.mux.Handle("POST /api/v1/admin/purchases", a.admin(a.needMarket(a.recordPurchase)))
	a.mux.Handle("GET /api/v1/admin/storage", a.admin(a.getStorage))
	a.mux.Handle("PUT /api/v1/admin/storage", a.admin(a.putStorage))
	a.mux.Handle("GET /api/v1/admin/plugins/{id}/settings", a.admin(a.getSettings))
	a.mux.Handle("PUT /api/v1/admin/plugins/{id}/settings", a.admin(a.putSettings))
	a.mux.Handle("POST /api/v1/admin/plugins/{id}/test", a.admin(a.testConnection))
	return a
}

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// admin wraps an admin handler with the bearer-token check.
func (a *API) admin(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || a.opts.AdminToken == "" || subtle.ConstantTimeCompare([]byte(token), []byte(a.opts.AdminToken)) != 1 {
			writeError(w, http.StatusUnauthorized, "admin credentials required: send Authorization: Bearer $MAGICADS_ADMIN_TOKEN")
			return
		}
		h(w, r)
	})
}

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
