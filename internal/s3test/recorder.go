package s3test

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Request is one request received by a Recorder.
type Request struct {
	// Method is the HTTP method.
	Method string
	// Path is the decoded URL path, e.g. "/bucket/key".
	Path string
	// RawQuery is the query string as sent, without "?".
	RawQuery string
	// Host is the Host header the client sent (the recorder's host:port).
	Host string
	// Header holds all request headers as received.
	Header http.Header
	// BodyLen is the number of request body bytes received.
	BodyLen int64
	// Status is the status code returned to the client: the backend's, the
	// injected one, or 502 when the backend could not be reached.
	Status int
	// Injected reports whether a fault hook answered instead of the backend.
	Injected bool
	// Err describes a proxy failure (backend unreachable, dropped connection).
	Err string
}

// FaultFunc decides whether the Recorder answers a request itself. When ok is
// true the request is not proxied; the client gets status with an S3-style
// XML error body. body is the S3 error code (e.g. "AccessDenied"; empty
// picks one from status) or, when it starts with "<", the complete XML body.
// A negative status drops the connection without any answer. The request's
// body can be read by the hook. Hooks run on the server's goroutines, so they
// must be safe for concurrent use and must not call t.Fatal.
type FaultFunc func(r *http.Request) (status int, body string, ok bool)

// Recorder is a TLS reverse proxy in front of an S3 backend that records
// every request and can inject faults. Requests are forwarded unchanged,
// including the Host header, so SigV4 signatures made for the recorder's
// URL verify at the backend. Request bodies are buffered in memory before
// they are forwarded.
type Recorder struct {
	// URL is the recorder's base URL, "https://127.0.0.1:PORT".
	URL string

	srv   *httptest.Server
	proxy *httputil.ReverseProxy

	mu    sync.Mutex
	reqs  []Request
	fault FaultFunc
	seq   int
}

// entryKey is the context key carrying the in-flight *Request.
type entryKey struct{}

// NewRecorder starts a recording proxy to backend (a base URL such as
// Server.Endpoint or Fake.Endpoint) that is closed when the test ends.
func NewRecorder(t testing.TB, backend string) *Recorder {
	t.Helper()
	target, err := url.Parse(backend)
	if err != nil || target.Scheme == "" || target.Host == "" {
		t.Fatalf("s3test: NewRecorder: backend %q is not an absolute URL", backend)
	}
	if target.Path != "" && target.Path != "/" {
		t.Fatalf("s3test: NewRecorder: backend %q must not have a path", backend)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DisableCompression = true // forward Accept-Encoding as sent
	rec := &Recorder{}
	rec.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Keep path, raw path and query exactly as received; only the
			// destination changes. The Host header stays the recorder's,
			// which is what the client signed.
			pr.Out.URL.Scheme = target.Scheme
			pr.Out.URL.Host = target.Host
			pr.Out.Host = pr.In.Host
		},
		Transport: transport,
		ModifyResponse: func(resp *http.Response) error {
			e := resp.Request.Context().Value(entryKey{}).(*Request)
			e.Status = resp.StatusCode
			rec.add(*e)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			e := r.Context().Value(entryKey{}).(*Request)
			e.Status = http.StatusBadGateway
			e.Err = err.Error()
			rec.add(*e)
			rec.writeError(w, r, http.StatusBadGateway, "BadGateway")
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	rec.srv = httptest.NewTLSServer(http.HandlerFunc(rec.serve))
	rec.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	rec.URL = rec.srv.URL
	t.Cleanup(func() {
		rec.srv.Close()
		transport.CloseIdleConnections()
	})
	return rec
}

// Client returns an HTTP client that trusts the recorder's certificate; pass
// it to NewClient together with the backend's credentials.
func (rec *Recorder) Client() *http.Client { return rec.srv.Client() }

// SetFault installs hook, which is consulted for every later request; nil
// removes it.
func (rec *Recorder) SetFault(hook FaultFunc) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.fault = hook
}

// Requests returns a copy of the requests recorded so far, in the order
// their answers were sent.
func (rec *Recorder) Requests() []Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := make([]Request, len(rec.reqs))
	for i, r := range rec.reqs {
		r.Header = r.Header.Clone()
		out[i] = r
	}
	return out
}

// Reset forgets the recorded requests.
func (rec *Recorder) Reset() {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.reqs = nil
}

// add records e.
func (rec *Recorder) add(e Request) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.reqs = append(rec.reqs, e)
}

// serve records r and either answers from the fault hook or proxies it.
func (rec *Recorder) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	e := &Request{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Host:     r.Host,
		Header:   r.Header.Clone(),
		BodyLen:  int64(len(body)),
	}
	if err != nil {
		e.Status = http.StatusBadRequest
		e.Err = "reading request body: " + err.Error()
		rec.add(*e)
		rec.writeError(w, r, http.StatusBadRequest, "IncompleteBody")
		return
	}
	rec.mu.Lock()
	hook := rec.fault
	rec.mu.Unlock()
	if hook != nil {
		hr := r.Clone(r.Context())
		hr.Body = io.NopCloser(bytes.NewReader(body))
		if status, msg, ok := hook(hr); ok {
			e.Injected = true
			e.Status = status
			if status < 0 {
				e.Err = "connection dropped by fault hook"
				rec.add(*e)
				panic(http.ErrAbortHandler)
			}
			if status == 0 {
				e.Status = http.StatusInternalServerError
			}
			rec.add(*e)
			rec.writeError(w, r, e.Status, msg)
			return
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), entryKey{}, e)))
}

// writeError answers with an S3-style XML error. body is an error code or,
// when it starts with "<", the whole XML document.
func (rec *Recorder) writeError(w http.ResponseWriter, r *http.Request, status int, body string) {
	rec.mu.Lock()
	rec.seq++
	reqID := "s3test-" + strconv.Itoa(rec.seq)
	rec.mu.Unlock()
	payload := body
	if !strings.HasPrefix(strings.TrimSpace(body), "<") {
		code := body
		if code == "" {
			code = errorCode(status)
		}
		var b strings.Builder
		b.WriteString(xml.Header)
		b.WriteString("<Error><Code>")
		_ = xml.EscapeText(&b, []byte(code))
		b.WriteString("</Code><Message>")
		fmt.Fprintf(&b, "injected by s3test.Recorder (%d)", status)
		b.WriteString("</Message><Resource>")
		_ = xml.EscapeText(&b, []byte(r.URL.Path))
		b.WriteString("</Resource><RequestId>")
		b.WriteString(reqID)
		b.WriteString("</RequestId></Error>")
		payload = b.String()
	}
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(payload)))
	h.Set("X-Amz-Request-Id", reqID)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, payload)
	}
}

// errorCode is the S3 error code conventionally sent with status.
func errorCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "InvalidRequest"
	case http.StatusForbidden:
		return "AccessDenied"
	case http.StatusNotFound:
		return "NoSuchKey"
	case http.StatusConflict:
		return "OperationAborted"
	case http.StatusPreconditionFailed:
		return "PreconditionFailed"
	case http.StatusRequestedRangeNotSatisfiable:
		return "InvalidRange"
	case http.StatusTooManyRequests:
		return "SlowDown"
	case http.StatusInternalServerError:
		return "InternalError"
	case http.StatusNotImplemented:
		return "NotImplemented"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	}
	if text := strings.ReplaceAll(http.StatusText(status), " ", ""); text != "" {
		return text
	}
	return "Error"
}
