package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/magicads/r2storage/host/orphans"
	"github.com/magicads/r2storage/shared/storage"
)

// orphansDeleteRequest is the body of POST
// /api/v1/admin/storage/{id}/orphans/delete: the confirmation.
type orphansDeleteRequest struct {
	// ScannedAt is the scanned_at of the scan report being confirmed.
	ScannedAt time.Time `json:"scanned_at"`
}

// scanOrphans is the dry run of an orphan clean-up of provider id: 200
// with an orphans.Report (the objects under the key prefix that no result
// refers to, with their count, bytes and up to 20 keys, and the
// incomplete uploads older than a day). Nothing is deleted.
func (a *API) scanOrphans(w http.ResponseWriter, r *http.Request) {
	if a.opts.Orphans == nil {
		writeError(w, http.StatusServiceUnavailable, "orphan scans are not set up on this host")
		return
	}
	rep, err := a.opts.Orphans.Scan(r.Context(), r.PathValue("id"))
	if err != nil {
		a.orphansError(w, r, "orphan scan", err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// deleteOrphans confirms a scan: body {"scanned_at": the report's
// scanned_at}. It deletes the orphans that scan reported (each re-checked
// against the database just before its delete; one a result refers to
// now is kept) and aborts the stale incomplete uploads: 200 with an
// orphans.Cleanup saying what was removed, kept and failed.
func (a *API) deleteOrphans(w http.ResponseWriter, r *http.Request) {
	if a.opts.Orphans == nil {
		writeError(w, http.StatusServiceUnavailable, "orphan clean-ups are not set up on this host")
		return
	}
	var req orphansDeleteRequest
	if !decode(w, r, &req) {
		return
	}
	c, err := a.opts.Orphans.Clean(r.Context(), r.PathValue("id"), req.ScannedAt)
	if err != nil {
		a.orphansError(w, r, "orphan clean-up", err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// orphansError answers a failed scan or clean-up: 404 for a provider not
// installed, 409 when the provider cannot do it (no listing, not
// configured) or one is running, 400 without a confirmation, 503 for a
// passing fault of the database or the provider, 502 for another
// provider error.
func (a *API) orphansError(w http.ResponseWriter, r *http.Request, op string, err error) {
	switch {
	case errors.Is(err, orphans.ErrNotInstalled):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, orphans.ErrUnavailable), errors.Is(err, orphans.ErrNotConfigured), errors.Is(err, orphans.ErrBusy):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, orphans.ErrConfirmation):
		writeError(w, http.StatusBadRequest, err.Error())
	case a.hostFault(w, r, op, err):
	case storage.IsRetryable(err):
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s: the provider cannot be reached right now: %v; retry shortly", op, err))
	default:
		a.opts.Logger.Warn(op+" failed", "error", err)
		writeError(w, http.StatusBadGateway, fmt.Sprintf("%s: %v", op, err))
	}
}
