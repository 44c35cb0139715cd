package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/results"
)

// jobStats is what the storage overview and its retry call need of the
// results service.
type jobStats interface {
	JobStats(ctx context.Context) (map[string]results.ProviderJobs, error)
	RetryFailed(ctx context.Context, provider string) (int64, error)
}

// changeLog remembers the last error text logged, so that an error every
// request meets is logged once per change of its text.
type changeLog struct {
	mu   sync.Mutex
	last string
}

// changed records msg ("" when there is no error) and reports whether it
// differs from the one recorded before.
func (c *changeLog) changed(msg string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if msg == c.last {
		return false
	}
	c.last = msg
	return true
}

// getStorage answers the storage overview: Default Storage, the options
// with their status and job counts, the installed providers that are no
// option and why, and the Default Storage's problem (see
// providers.StorageStatus). Job counts that cannot be read leave the
// counts out, make the options' status unknown and say why in
// stats_error; the page never fails for them. Their error is logged when
// it first shows and each time its text changes, not on every request.
func (a *API) getStorage(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.storageView(r))
}

// storageView computes the answer of GET /api/v1/admin/storage (see
// getStorage); the storage overview embeds it.
func (a *API) storageView(r *http.Request) providers.StorageView {
	var stats map[string]results.ProviderJobs
	statsErr := errors.New("this host has no results service")
	if a.jobs != nil {
		ctx, cancel := a.dbContext(r)
		stats, statsErr = a.jobs.JobStats(ctx)
		cancel()
	}
	switch {
	case statsErr == nil:
		if a.statsLog.changed("") {
			a.opts.Logger.Info("storage overview: job counts can be read again")
		}
	case a.statsLog.changed(statsErr.Error()):
		a.opts.Logger.Warn("storage overview: job counts cannot be read; the options' status is unknown (logged again only when this error changes)", "error", statsErr)
	}
	ctx, cancel := a.dbContext(r)
	defer cancel()
	view := a.providers.StorageStatus(ctx, stats, statsErr)
	if err := view.DefaultErr; err != nil {
		// New results go to local while the choice cannot be read; say why.
		a.opts.Logger.Error("Default Storage cannot be read; using local", "error", err)
		view.Warning = "Default Storage cannot be read, so new results stay local: " + err.Error()
	}
	return view
}

// retryFailed makes the failed jobs of a provider (or local) due now:
// 200 {"retried": n}.
func (a *API) retryFailed(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := a.providers.Installed(id); !ok && id != providers.Local {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%v: %q", providers.ErrNotInstalled, id))
		return
	}
	if a.jobs == nil {
		writeError(w, http.StatusServiceUnavailable, "retrying failed jobs: this host has no results service")
		return
	}
	ctx, cancel := a.dbContext(r)
	defer cancel()
	n, err := a.jobs.RetryFailed(ctx, id)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		writeError(w, http.StatusNotImplemented, "retrying failed jobs is not available on this host: "+err.Error())
		return
	case err != nil:
		a.fail(w, r, "retrying the failed jobs of "+id, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"retried": n})
}

func (a *API) putStorage(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Default string `json:"default"`
	}
	if !decode(w, r, &body) {
		return
	}
	ctx, cancel := a.dbContext(r)
	defer cancel()
	if err := a.providers.SetDefault(ctx, body.Default); err != nil {
		a.providerError(w, r, "saving Default Storage", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"default": body.Default})
}

func (a *API) getSettings(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := a.dbContext(r)
	defer cancel()
	view, err := a.providers.Settings(ctx, id)
	if err != nil {
		a.providerError(w, r, "reading the settings", err)
		return
	}
	schema, err := a.providers.SchemaJSON(id)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"schema": json.RawMessage(schema), "values": view.Values, "secrets_set": view.SecretsSet, "problem": view.Problem})
}

type settingsBody struct {
	Values map[string]any `json:"values"`
}

func (a *API) putSettings(w http.ResponseWriter, r *http.Request) {
	var body settingsBody
	if !decode(w, r, &body) {
		return
	}
	saved, fields, err := a.providers.Save(r.Context(), r.PathValue("id"), body.Values)
	if err != nil {
		a.settingsError(w, r, "saving the settings", err)
		return
	}
	if len(fields) > 0 {
		writeFields(w, fields)
		return
	}
	// checked_by_plugin is false (and message says why and whether the
	// plugin runs with them) when the plugin had failed and only the
	// schema checked the settings.
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
		providers.SaveResult
	}{"saved", saved})
}

func (a *API) testConnection(w http.ResponseWriter, r *http.Request) {
	var body settingsBody
	if !decode(w, r, &body) {
		return
	}
	res, fields, err := a.providers.Test(r.Context(), r.PathValue("id"), body.Values)
	if err != nil {
		a.settingsError(w, r, "saving the settings for the connection test", err)
		return
	}
	if len(fields) > 0 {
		writeFields(w, fields)
		return
	}
	// Test answers 200 only once the settings were saved.
	writeJSON(w, http.StatusOK, map[string]any{"ok": res.OK, "step": res.Step, "message": res.Message, "saved": true, "checked_by_plugin": res.Save.CheckedByPlugin})
}

// settingsError answers an error of Save or Test, when nothing was saved:
// 503 with Retry-After while the plugin cannot check the settings for now
// (starting, restarting, stopped, or its check failed for now), 409 when
// other saves kept changing them, the rest as providerError.
func (a *API) settingsError(w http.ResponseWriter, r *http.Request, op string, err error) {
	switch {
	case errors.Is(err, providers.ErrPluginUnavailable):
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, providers.ErrSaveConflict):
		writeError(w, http.StatusConflict, err.Error())
	default:
		a.providerError(w, r, op, err)
	}
}
