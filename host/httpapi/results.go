package httpapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"time"

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
}

// toJSON describes a result; url is where a client fetches it.
func toJSON(r results.Result) resultJSON {
	url := r.URL
	if url == "" || r.Storage == "local" {
		url = "/api/v1/results/" + r.ID + "/content"
	}
	return resultJSON{ID: r.ID, Path: r.Path, Storage: r.Storage, URL: url, Size: r.Size, SHA256: r.SHA256, CreatedAt: r.CreatedAt}
}

// createResult finalizes an uploaded result. The fields kind and generator
// may come before or after the file part: when the file comes first it is
// spooled to a temporary file until the fields have arrived.
func (a *API) createResult(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxUpload)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, "send multipart/form-data with fields file, kind and generator")
		return
	}
	fields := map[string]string{}
	var spooled *os.File
	var contentType string
	defer func() {
		if spooled != nil {
			spooled.Close()
			os.Remove(spooled.Name())
		}
	}()
	finalize := func(body io.Reader) {
		res, err := a.results.Finalize(r.Context(), fields["kind"], fields["generator"], contentType, body)
		if errors.Is(err, results.ErrInvalid) {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err != nil {
			a.internalError(w, "finalizing the result", err)
			return
		}
		writeJSON(w, http.StatusCreated, toJSON(res))
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "reading the form: "+err.Error())
			return
		}
		if part.FormName() != "file" {
			value, err := io.ReadAll(io.LimitReader(part, 256))
			if err != nil {
				writeError(w, http.StatusBadRequest, "reading the form: "+err.Error())
				return
			}
			fields[part.FormName()] = string(value)
			continue
		}
		if spooled != nil {
			writeError(w, http.StatusBadRequest, "the form has more than one file part")
			return
		}
		contentType = part.Header.Get("Content-Type")
		if contentType == "" || contentType == "application/octet-stream" {
			if byExt := mime.TypeByExtension(path.Ext(part.FileName())); byExt != "" {
				contentType = byExt
			}
		}
		if fields["kind"] != "" && fields["generator"] != "" {
			finalize(part) // stream straight to the results disk
			return
		}
		if spooled, err = os.CreateTemp("", "magicads-upload-"); err != nil {
			a.internalError(w, "spooling the upload", err)
			return
		}
		if _, err := io.Copy(spooled, part); err != nil {
			writeError(w, http.StatusBadRequest, "reading the file: "+err.Error())
			return
		}
	}
	if spooled == nil {
		writeError(w, http.StatusBadRequest, "the form has no file part")
		return
	}
	if _, err := spooled.Seek(0, io.SeekStart); err != nil {
		a.internalError(w, "spooling the upload", err)
		return
	}
	finalize(spooled)
}

func (a *API) getResult(w http.ResponseWriter, r *http.Request) {
	res, err := a.results.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, results.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no result "+r.PathValue("id"))
		return
	}
	if err != nil {
		a.internalError(w, "reading the result", err)
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
	list, next, err := a.results.List(r.Context(), r.URL.Query().Get("cursor"), limit)
	if errors.Is(err, results.ErrInvalid) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		a.internalError(w, "listing results", err)
		return
	}
	out := make([]resultJSON, 0, len(list))
	for _, res := range list {
		out = append(out, toJSON(res))
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": out, "next_cursor": next})
}

// resultContent serves a local result's bytes (with Range support) or
// redirects to an offloaded result's public URL.
func (a *API) resultContent(w http.ResponseWriter, r *http.Request) {
	c, err := a.results.Content(r.Context(), r.PathValue("id"))
	if errors.Is(err, results.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no result "+r.PathValue("id"))
		return
	}
	if err != nil {
		a.internalError(w, "serving the result", err)
		return
	}
	if c.RedirectURL != "" {
		http.Redirect(w, r, c.RedirectURL, http.StatusFound)
		return
	}
	f, err := os.Open(c.LocalPath)
	if err != nil {
		a.internalError(w, "opening the result", err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", c.Result.ContentType)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeContent(w, r, "", c.Result.CreatedAt, f)
}

func (a *API) deleteResult(w http.ResponseWriter, r *http.Request) {
	err := a.results.Delete(r.Context(), r.PathValue("id"))
	if errors.Is(err, results.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no result "+r.PathValue("id"))
		return
	}
	if err != nil {
		a.internalError(w, "deleting the result", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
