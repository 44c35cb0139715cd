package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/magicads/r2storage/host/results"
)

// Bulk storage operations (admin): offload every local result to the
// Default Storage provider, or bring a provider's results back to local;
// dry run, start, watch, pause, resume and cancel. The routes are
// registered in New (httpapi.go).

// bulkRequest is the body of POST /api/v1/admin/storage/bulk.
type bulkRequest struct {
	// Direction is "offload" or "local".
	Direction string `json:"direction"`
	// Provider is the provider to bring back from ("local"); for
	// "offload" empty or the Default Storage provider.
	Provider string `json:"provider"`
	// DryRun answers what the operation would move, starting nothing.
	DryRun bool `json:"dry_run"`
	// DeleteRemote deletes each remote copy once its local copy is
	// verified ("local" only).
	DeleteRemote bool `json:"delete_remote"`
}

// noBulk answers 503 when the host has no results service.
func (a *API) noBulk(w http.ResponseWriter) bool {
	if a.results != nil {
		return false
	}
	writeError(w, http.StatusServiceUnavailable, "bulk storage operations: this host has no results service")
	return true
}

// bulkError answers an error of the bulk operations.
func (a *API) bulkError(w http.ResponseWriter, r *http.Request, op string, err error) {
	switch {
	case errors.Is(err, results.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, results.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error()+"; list the runs with GET /api/v1/admin/storage/bulk")
	case errors.Is(err, results.ErrBulkConflict):
		writeError(w, http.StatusConflict, err.Error())
	default:
		a.fail(w, r, op, err)
	}
}

// runID reads the {run} path value.
func runID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("run"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bulk run %q: a run id is a positive integer, as POST /api/v1/admin/storage/bulk returned it", r.PathValue("run")))
		return 0, false
	}
	return id, true
}

// startBulk answers a dry run (200, the plan) or starts the operation
// (201, the run, with its Location).
func (a *API) startBulk(w http.ResponseWriter, r *http.Request) {
	if a.noBulk(w) {
		return
	}
	var body bulkRequest
	if !decode(w, r, &body) {
		return
	}
	ctx, cancel := a.dbContext(r)
	defer cancel()
	req := results.BulkRequest{Direction: body.Direction, Provider: body.Provider, DeleteRemote: body.DeleteRemote}
	if body.DryRun {
		plan, err := a.results.PlanBulk(ctx, req)
		if err != nil {
			a.bulkError(w, r, "planning a bulk storage operation", err)
			return
		}
		writeJSON(w, http.StatusOK, plan)
		return
	}
	run, err := a.results.StartBulk(ctx, req)
	if err != nil {
		a.bulkError(w, r, "starting a bulk storage operation", err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/admin/storage/bulk/%d", run.ID))
	writeJSON(w, http.StatusCreated, run)
}

// listBulk answers the latest runs, newest first.
func (a *API) listBulk(w http.ResponseWriter, r *http.Request) {
	if a.noBulk(w) {
		return
	}
	ctx, cancel := a.dbContext(r)
	defer cancel()
	runs, err := a.results.BulkRuns(ctx, 20)
	if err != nil {
		a.bulkError(w, r, "listing bulk storage operations", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": runs})
}

// getBulk answers a run and its progress.
func (a *API) getBulk(w http.ResponseWriter, r *http.Request) {
	if a.noBulk(w) {
		return
	}
	id, ok := runID(w, r)
	if !ok {
		return
	}
	ctx, cancel := a.dbContext(r)
	defer cancel()
	run, err := a.results.BulkRun(ctx, id)
	if err != nil {
		a.bulkError(w, r, "reading a bulk storage operation", err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

// bulkAction is a pause, resume or cancel handler.
func (a *API) bulkAction(op string, f func(*results.Service, context.Context, int64) (results.BulkRun, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.noBulk(w) {
			return
		}
		id, ok := runID(w, r)
		if !ok {
			return
		}
		ctx, cancel := a.dbContext(r)
		defer cancel()
		run, err := f(a.results, ctx, id)
		if err != nil {
			a.bulkError(w, r, op+" a bulk storage operation", err)
			return
		}
		writeJSON(w, http.StatusOK, run)
	}
}
