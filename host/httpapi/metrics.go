package httpapi

import "net/http"

// metrics serves Options.Metrics, the host's Prometheus metrics (an admin
// call); 404 {"error"} when the host serves none.
func (a *API) metrics(w http.ResponseWriter, r *http.Request) {
	if a.opts.Metrics == nil {
		writeError(w, http.StatusNotFound, "this host serves no metrics")
		return
	}
	a.opts.Metrics.ServeHTTP(w, r)
}
