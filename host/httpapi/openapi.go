package httpapi

import (
	"bytes"
	_ "embed"
	"net/http"
	"sync"
)

// openAPIDoc is the OpenAPI 3.1 document of the whole API: every route
// registered in New, with its parameters, bodies, answers and security.
// openapi_test.go fails when a route is registered without an operation
// here (or an operation has no route), and validates real answers
// against it.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPIPath is where the API serves its OpenAPI document.
const OpenAPIPath = "/api/v1/openapi.json"

// OpenAPI returns a copy of the API's OpenAPI 3.1 document (JSON).
func OpenAPI() []byte { return bytes.Clone(openAPIDoc) }

// openAPI serves the OpenAPI document to anyone: it describes the API and
// holds no secret.
func (a *API) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPIDoc)
}

// Routes lists every pattern registered on the API's mux, in the order
// registered ("METHOD /path", or "/path" for a handler of every method,
// such as /login).
func (a *API) Routes() []string { return a.mux.patterns() }

// routeMux is an http.ServeMux that remembers the patterns registered on
// it, so that tests can hold the OpenAPI document to every route.
type routeMux struct {
	*http.ServeMux
	mu   sync.Mutex
	pats []string
}

func newRouteMux() *routeMux { return &routeMux{ServeMux: http.NewServeMux()} }

// Handle registers h for pattern and records the pattern.
func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.record(pattern)
	m.ServeMux.Handle(pattern, h)
}

// HandleFunc registers h for pattern and records the pattern.
func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.record(pattern)
	m.ServeMux.HandleFunc(pattern, h)
}

func (m *routeMux) record(pattern string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pats = append(m.pats, pattern)
}

func (m *routeMux) patterns() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.pats...)
}
