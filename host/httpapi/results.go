package httpapi

import (
	"errors"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"time"

	"github.com/magicads/r2storage/host/media"
	"github.com/magicads/r2storage/host/results"
)

// resultJSON is a result as the API shows it.
type resultJSON struct {
	ID        string    `json:"id"`
	Path      string    `json:"path"`
	Storage   string    `json:"storage"`
	URL       string    `json:"url"`
	Size      int64     `json:"size"`
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
	Owner     string    `json:"owner"`
	// LocalReason says why a result is local while Default Storage is a
	// provider ("" otherwise).
	LocalReason string `json:"local_reason"`
	// LocalPresent is true while a local copy exists.
	LocalPresent bool `json:"local_present"`
	// ObjectKey and Bucket say where an offloaded result is ("" while local).
	ObjectKey string `json:"object_key"`
	Bucket    string `json:"bucket"`
	// Upload is the result's pending offload, omitted without one.
	Upload *results.UploadStatus `json:"upload,omitempty"`
}

// toJSON describes a result; url is where a client fetches it.
func toJSON(r results.Result) resultJSON {
	url := r.URL
	if url == "" || r.Storage == "local" {
		url = "/api/v1/results/" + r.ID + "/content"
	}
	return resultJSON{ID: r.ID, Path: r.Path, Storage: r.Storage, URL: url, Size: r.Size, SHA256: r.SHA256, CreatedAt: r.CreatedAt, Owner: r.Owner, LocalReason: r.LocalReason,
		LocalPresent: r.LocalPresent, ObjectKey: r.ObjectKey, Bucket: r.Bucket, Upload: r.Upload}
}

func (a *API) getResult(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.dbContext(r)
	defer cancel()
	res, err := a.results.Get(ctx, r.PathValue("id"))
	if errors.Is(err, results.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no result "+r.PathValue("id"))
		return
	}
	if err != nil {
		a.fail(w, r, "reading the result", err)
		return
	}
	writeJSON(w, http.StatusOK, toJSON(res))
}

func (a *API) listResults(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			writeError(w, http.StatusBadRequest, "limit must be 1..500")
			return
		}
		limit = n
	}
	q := r.URL.Query()
	ctx, cancel := a.dbContext(r)
	defer cancel()
	list, next, err := a.results.List(ctx, results.ListOptions{Cursor: q.Get("cursor"), Limit: limit, Owner: q.Get("owner")})
	if errors.Is(err, results.ErrInvalid) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		a.fail(w, r, "listing results", err)
		return
	}
	out := make([]resultJSON, 0, len(list))
	for _, res := range list {
		out = append(out, toJSON(res))
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": out, "next_cursor": next})
}

// deadlineWriter gives each write of a result's bytes one RateWindow to
// reach the client (ServeContent writes at most 32 KiB at a time), so a
// client that stops reading is cut instead of holding its connection and
// the open file for good.
type deadlineWriter struct {
	http.ResponseWriter
	rc     *http.ResponseController
	window time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.window)) // unsupported by some writers (tests): no limit then
	return d.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// contentCSP is the Content-Security-Policy of every result's bytes: a
// sandbox with nothing allowed but showing the media itself, so even a file
// a browser would render as a document runs no script on the host's origin.
const contentCSP = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'"

// resultContent serves a local result's bytes (with Range support) or
// redirects to an offloaded result's public URL. A local copy kept in
// another node's results folder is served through that node
// (serveThroughOwner).
func (a *API) resultContent(w http.ResponseWriter, r *http.Request) {
	// Every answer here, redirects and errors too, is inert in a browser.
	w.Header().Set("Content-Security-Policy", contentCSP)
	ctx, cancel := a.dbContext(r)
	c, err := a.results.Content(ctx, r.PathValue("id"))
	cancel()
	if errors.Is(err, results.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no result "+r.PathValue("id"))
		return
	}
	if err != nil {
		a.fail(w, r, "serving the result", err)
		return
	}
	if c.RedirectURL != "" {
		http.Redirect(w, r, c.RedirectURL, http.StatusFound)
		return
	}
	if c.OwnerNode != "" {
		a.serveThroughOwner(w, r, c)
		return
	}
	f, err := os.Open(c.LocalPath)
	if err != nil {
		a.internalError(w, "opening the result", err)
		return
	}
	defer f.Close()
	ct, ok := media.Accepted(c.Result.ContentType)
	name := path.Base(c.Result.Path)
	if ok {
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": name}))
	} else {
		// Recorded before uploads were checked by content: never render it.
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	}
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeContent(&deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), window: a.limits.RateWindow}, r, "", c.Result.CreatedAt, f)
}

func (a *API) deleteResult(w http.ResponseWriter, r *http.Request) {
	// The bound covers the delete's records; its provider call is bounded
	// by results.Options.DeleteTimeout and queued past it.
	ctx, cancel := a.dbContext(r)
	defer cancel()
	err := a.results.Delete(ctx, r.PathValue("id"))
	if errors.Is(err, results.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no result "+r.PathValue("id"))
		return
	}
	if err != nil {
		a.fail(w, r, "deleting the result", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
