package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"time"

	"github.com/magicads/r2storage/host/results"
)

// Upload form limits.
const (
	// maxFieldBytes caps each text field of the results form.
	maxFieldBytes = 1024
	// formOverhead is what a form may add around the file: boundaries, part
	// headers and the text fields.
	formOverhead = 64 << 10
)

// textFields are the results form's text fields; file is its one file part.
var textFields = map[string]bool{"kind": true, "generator": true, "owner": true}

// errTooLarge marks a file part over Limits.MaxResultBytes.
var errTooLarge = errors.New("result too large")

// errFormTooLarge marks a form whose parts other than the file (boundaries,
// part headers, text fields) take more than formOverhead bytes.
var errFormTooLarge = errors.New("form too large")

// formBudget bounds what the multipart reader may read: formOverhead bytes
// of boundaries, part headers and text fields, plus the file's maximum once
// the file part starts (grant). Without it the reader would buffer up to
// 10 MiB of headers per part before a part's name could be checked.
type formBudget struct {
	r    io.Reader
	left int64
}

func (b *formBudget) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%w: its fields and part headers take more than %d bytes", errFormTooLarge, formOverhead)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// grant lets n more bytes through.
func (b *formBudget) grant(n int64) { b.left += n }

// clientReader reads the file part: it fails with errTooLarge once more
// than max bytes came through, and remembers a failure of the client's
// body (cut short, too slow, too large) so it is told apart from a failure
// of the host's disk.
type clientReader struct {
	r   io.Reader
	max int64
	n   int64
	err error
}

func (c *clientReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		err = fmt.Errorf("%w: more than %d bytes", errTooLarge, c.max)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		c.err = err
	}
	return n, err
}

// clientError is what to answer for a failure of the client's body.
func clientError(err error) error {
	var mbe *http.MaxBytesError
	if errors.Is(err, errTooLarge) || errors.Is(err, errTooSlow) || errors.As(err, &mbe) {
		return err
	}
	if errors.Is(err, errFormTooLarge) {
		return &uploadError{http.StatusRequestEntityTooLarge, "the form is too large: " + err.Error()}
	}
	return badForm("the upload ended early: %v", err)
}

// uploadError is an answer to a refused upload.
type uploadError struct {
	status int
	msg    string
}

func (e *uploadError) Error() string { return e.msg }

func badForm(format string, args ...any) error {
	return &uploadError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// upload reads the results form part by part, bounded: only the known
// fields, each at most once and at most maxFieldBytes, and one file of at
// most maxFile bytes. The file streams straight to the results disk (staged)
// when kind and generator came before it, and is spooled into spoolDir
// otherwise, then staged once the form has ended.
type upload struct {
	results  *results.Service
	maxFile  int64
	spoolDir string
	budget   *formBudget
	fields   map[string]string
	ctype    string // the file part's declared Content-Type
	staged   *results.Staged
	spooled  *os.File
}

// close removes the spool file and a staged result never committed.
func (u *upload) close() {
	if u.spooled != nil {
		u.spooled.Close()
		os.Remove(u.spooled.Name())
	}
	u.staged.Discard()
}

func (u *upload) meta() results.Upload {
	return results.Upload{Kind: u.fields["kind"], Generator: u.fields["generator"], Owner: u.fields["owner"], ContentType: u.ctype}
}

// read reads the whole form and leaves the file staged. It returns an
// *uploadError for anything the client must change.
func (u *upload) read(ctx context.Context, mr *multipart.Reader) error {
	u.fields = map[string]string{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return clientError(fmt.Errorf("reading the form: %w", err))
		}
		name := part.FormName()
		switch {
		case name == "file":
			if u.staged != nil || u.spooled != nil {
				return badForm("the form has more than one file part; send one result per request")
			}
			u.ctype = part.Header.Get("Content-Type")
			u.budget.grant(u.maxFile)
			file := &clientReader{r: part, max: u.maxFile}
			if u.fields["kind"] != "" && u.fields["generator"] != "" {
				if u.staged, err = u.results.Stage(ctx, u.meta(), file); err != nil {
					if file.err != nil {
						return clientError(file.err)
					}
					return err
				}
				continue
			}
			if u.spoolDir == "" {
				return errors.New("spooling the upload: the host has no upload spool folder (httpapi.Options.SpoolDir); send kind and generator before the file")
			}
			if u.spooled, err = os.CreateTemp(u.spoolDir, "upload-*"); err != nil {
				return fmt.Errorf("spooling the upload into %s: %w", u.spoolDir, err)
			}
			if _, err := io.Copy(u.spooled, file); err != nil {
				if file.err != nil {
					return clientError(file.err)
				}
				return fmt.Errorf("spooling the upload: %w", err)
			}
		case textFields[name]:
			if _, dup := u.fields[name]; dup {
				return badForm("the form has the field %q twice", name)
			}
			value, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
			if err != nil {
				return clientError(fmt.Errorf("reading the field %q: %w", name, err))
			}
			if len(value) > maxFieldBytes {
				return badForm("the field %q is longer than %d bytes", name, maxFieldBytes)
			}
			u.fields[name] = string(value)
		default:
			return badForm("the form has an unknown field %q; send only file, kind, generator and owner", truncate(name, 64))
		}
	}
	switch {
	case u.staged != nil:
		return nil
	case u.spooled == nil:
		return badForm("the form has no file part")
	}
	if _, err := u.spooled.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("spooling the upload: %w", err)
	}
	var err error
	u.staged, err = u.results.Stage(ctx, u.meta(), u.spooled)
	return err
}

// truncate shortens s to at most n bytes for a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// createResult finalizes an uploaded result. The fields kind, generator and
// owner may come before or after the file part: when the file comes first it
// is spooled inside the data dir until the fields have arrived.
func (a *API) createResult(w http.ResponseWriter, r *http.Request) {
	select {
	case a.uploads <- struct{}{}:
		defer func() { <-a.uploads }()
	default:
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("the host is receiving %d uploads already; retry shortly", cap(a.uploads)))
		return
	}
	maxFile := a.limits.MaxResultBytes
	if r.ContentLength > maxFile+formOverhead {
		a.tooLarge(w)
		return
	}
	boundary, ok := multipartBoundary(r)
	if !ok {
		writeError(w, http.StatusBadRequest, "send multipart/form-data with the fields file, kind, generator and, optionally, owner")
		return
	}
	claim, answered := a.idempotencyKey(w, r)
	if answered {
		return
	}
	defer claim.Abandon(r.Context()) // nothing once completed
	budget := &formBudget{r: http.MaxBytesReader(w, r.Body, maxFile+formOverhead), left: formOverhead}
	mr := multipart.NewReader(budget, boundary)
	u := &upload{results: a.results, maxFile: maxFile, spoolDir: a.opts.SpoolDir, budget: budget}
	defer u.close()
	err := u.read(r.Context(), mr)
	if err == nil {
		err = claim.Bind(r.Context(), u.staged)
	}
	if err == nil {
		var res results.Result
		if res, err = u.staged.Commit(r.Context(), u.fields["owner"]); err == nil {
			claim.Complete(r.Context())
			writeJSON(w, http.StatusCreated, toJSON(res))
			return
		}
	}
	var ue *uploadError
	var mbe *http.MaxBytesError
	if errors.Is(err, errFormTooLarge) {
		err = clientError(err)
	}
	switch {
	case errors.As(err, &ue):
		writeError(w, ue.status, ue.msg)
	case errors.Is(err, errTooLarge), errors.As(err, &mbe):
		a.tooLarge(w)
	case errors.Is(err, results.ErrUnsupportedMedia):
		writeError(w, http.StatusUnsupportedMediaType, err.Error())
	case errors.Is(err, results.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, errTooSlow):
		writeError(w, http.StatusRequestTimeout, err.Error())
	case errors.Is(err, results.ErrKeyInProgress):
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, http.StatusConflict, err.Error()+"; retry once it has finished")
	case r.Context().Err() != nil:
		writeError(w, http.StatusBadRequest, "the upload ended early: "+err.Error())
	default:
		a.fail(w, r, "finalizing the result", err)
	}
}

// multipartBoundary returns the boundary of a multipart/form-data request.
func multipartBoundary(r *http.Request) (string, bool) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return "", false
	}
	return params["boundary"], true
}

func (a *API) tooLarge(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the result is larger than the host's limit of %d bytes (--max-result-bytes)", a.limits.MaxResultBytes))
}

// errTooSlow marks a request body that arrived slower than Limits.MinUploadRate.
var errTooSlow = errors.New("the request body arrived too slowly")

// rateBody cuts a request body that delivers less than min bytes in any
// window: each time min bytes have arrived it moves the connection's read
// deadline one window ahead. At the body's end it clears the deadline, so
// the server's own reads after it (which notice a client that went away)
// are not cut.
type rateBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	window time.Duration
	min    int64 // bytes per window
	got    int64 // bytes since the deadline last moved
	eof    bool
}

func newRateBody(w http.ResponseWriter, body io.ReadCloser, perSecond int64, window time.Duration) *rateBody {
	b := &rateBody{ReadCloser: body, rc: http.NewResponseController(w), window: window, min: max(1, int64(float64(perSecond)*window.Seconds()))}
	_ = b.rc.SetReadDeadline(time.Now().Add(window)) // unsupported by some writers (tests): no limit then
	return b
}

func (b *rateBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.eof {
		return n, err
	}
	b.got += int64(n)
	if b.got >= b.min {
		b.got = 0
		_ = b.rc.SetReadDeadline(time.Now().Add(b.window))
	}
	switch {
	case errors.Is(err, io.EOF):
		b.eof = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil:
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("%w: less than %d bytes in %v", errTooSlow, b.min, b.window)
		}
	}
	return n, err
}

// handlerDone gives the server one more window to read (and discard) what
// the handler left of the body, so a stalled client is cut there too.
func (b *rateBody) handlerDone() {
	if !b.eof {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.window))
	}
}
