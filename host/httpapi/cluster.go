package httpapi

import (
	"net/http"
)

// getCluster answers the cluster view: every host node sharing the
// database, with its advertised URL, version, last heartbeat, whether it
// is live and which one answers, and its plugins' versions and states.
func (a *API) getCluster(w http.ResponseWriter, r *http.Request) {
	if a.opts.Cluster == nil {
		writeError(w, http.StatusServiceUnavailable, "the cluster view is not available: this host was started without a node heartbeat")
		return
	}
	ctx, cancel := a.dbContext(r)
	defer cancel()
	v, err := a.opts.Cluster(ctx)
	if err != nil {
		a.fail(w, r, "reading the cluster view", err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
