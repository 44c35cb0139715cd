package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/results"
)

// overviewFailures is how many failed jobs the storage overview lists.
const overviewFailures = 20

// storageOverview is the answer of GET /api/v1/admin/storage/overview.
type storageOverview struct {
	// Locations are the live results by location, and the local disk
	// reclaimed by offloading.
	Locations results.Locations `json:"locations"`
	// Jobs are the pending and failed jobs, with the latest failures.
	Jobs results.JobCounts `json:"jobs"`
	// Storage is GET /api/v1/admin/storage: each provider's status and
	// whether it supports listing.
	Storage providers.StorageView `json:"storage"`
	// ActiveBulk is the running or paused bulk operation, null when none.
	ActiveBulk *results.BulkRun `json:"active_bulk"`
}

// getOverview answers the storage overview: where results are (local
// only, in a provider with a local copy kept, in a provider only), the
// local disk reclaimed, the pending and failed jobs with the latest
// failures' errors, each provider's status, and the active bulk run.
func (a *API) getOverview(w http.ResponseWriter, r *http.Request) {
	if a.noBulk(w) {
		return
	}
	ctx, cancel := a.dbContext(r)
	defer cancel()
	var out storageOverview
	var err error
	if out.Locations, err = a.results.Locations(ctx); err != nil {
		a.fail(w, r, "reading the storage overview", err)
		return
	}
	if out.Jobs, err = a.results.Jobs(ctx, overviewFailures); err != nil {
		a.fail(w, r, "reading the storage overview", err)
		return
	}
	if out.ActiveBulk, err = a.results.ActiveBulk(ctx); err != nil {
		a.fail(w, r, "reading the storage overview", err)
		return
	}
	out.Storage = a.storageView(r)
	writeJSON(w, http.StatusOK, out)
}

// retryJob makes one failed job due now: 200 {"retried": 1}; 404 when
// the job is not parked as failed.
func (a *API) retryJob(w http.ResponseWriter, r *http.Request) {
	if a.noBulk(w) {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("job"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("job %q: a job id is a positive integer, as GET /api/v1/admin/storage/overview lists it under jobs.failures", r.PathValue("job")))
		return
	}
	ctx, cancel := a.dbContext(r)
	defer cancel()
	if err := a.results.RetryJob(ctx, id); err != nil {
		if errors.Is(err, results.ErrJobNotFailed) {
			writeError(w, http.StatusNotFound, err.Error())
			return
		}
		a.fail(w, r, fmt.Sprintf("retrying job %d", id), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"retried": 1})
}
