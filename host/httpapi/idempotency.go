package httpapi

import (
	"errors"
	"net/http"

	"github.com/magicads/r2storage/host/auth"
	"github.com/magicads/r2storage/host/results"
)

// idempotencyHeader names the key a client sends with POST /api/v1/results
// so that a retry returns the first result instead of creating another.
const idempotencyHeader = "Idempotency-Key"

// idempotencyKey handles a POST's Idempotency-Key before its body is read.
// Without the header it returns (nil, false): create as usual. For a key the
// caller used before it answers the first result (200, with
// Idempotent-Replayed: true) and returns answered; likewise for a refusal:
// a bad key (400), the key held by a request still in progress (409 with
// Retry-After), the first result deleted since (410). Otherwise it returns
// the claim the caller must bind, complete or abandon.
func (a *API) idempotencyKey(w http.ResponseWriter, r *http.Request) (claim *results.Claim, answered bool) {
	values := r.Header.Values(idempotencyHeader)
	if len(values) == 0 {
		return nil, false
	}
	if len(values) > 1 {
		writeError(w, http.StatusBadRequest, "send one Idempotency-Key header, not several")
		return nil, true
	}
	if err := results.CheckIdempotencyKey(values[0]); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil, true
	}
	id, ok := auth.IdentityFrom(r.Context())
	if !ok {
		a.internalError(w, "checking the Idempotency-Key", errors.New("the request carries no caller identity"))
		return nil, true
	}
	// Keys are per caller: the studios' token and each admin have their own.
	claim, prior, err := a.results.ClaimKey(r.Context(), id.Role+":"+id.User, values[0])
	switch {
	case err == nil && prior != nil:
		w.Header().Set("Idempotent-Replayed", "true")
		writeJSON(w, http.StatusOK, toJSON(*prior))
	case err == nil:
		return claim, false
	case errors.Is(err, results.ErrKeyInProgress):
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, http.StatusConflict, err.Error()+"; retry once it has finished")
	case errors.Is(err, results.ErrKeyResultGone):
		writeError(w, http.StatusGone, err.Error())
	case errors.Is(err, results.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		a.fail(w, r, "checking the Idempotency-Key", err)
	}
	return nil, true
}
