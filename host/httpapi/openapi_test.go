package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/magicads/r2storage/host/auth"
	"github.com/magicads/r2storage/host/localstore"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/internal/testdb"
)

// openAPIFile is the document's file, named in the failures so that whoever
// adds a route knows where to document it.
const openAPIFile = "host/httpapi/openapi.json"

// loadOpenAPI parses and validates the embedded document with kin-openapi.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("%s does not load as OpenAPI: %v", openAPIFile, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("%s is not valid OpenAPI: %v", openAPIFile, err)
	}
	return doc
}

// documentedOps lists the document's operations as "METHOD /path".
func documentedOps(doc *openapi3.T) map[string]*openapi3.Operation {
	ops := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops[strings.ToUpper(method)+" "+path] = op
		}
	}
	return ops
}

// TestOpenAPIDocumentIsValid: the document is valid OpenAPI 3.1 for
// kin-openapi, and every operation has what a client generator needs: a
// unique operationId, a summary, its security (explicit, [] when
// anonymous), and a schema for every answer that has a body.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc := loadOpenAPI(t)
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPIMajorMinor() != "3.1" {
		t.Fatalf("%s declares openapi %q, want 3.1.x", openAPIFile, doc.OpenAPI)
	}
	ids := map[string]string{}
	ops := documentedOps(doc)
	for _, name := range sortedKeys(ops) {
		op := ops[name]
		if op.OperationID == "" || op.Summary == "" {
			t.Errorf("%s: %s needs an operationId and a summary", openAPIFile, name)
		}
		if prev, dup := ids[op.OperationID]; dup {
			t.Errorf("%s: %s and %s share operationId %q", openAPIFile, prev, name, op.OperationID)
		}
		ids[op.OperationID] = name
		if op.Security == nil {
			t.Errorf("%s: %s has no security (use [] for an anonymous call)", openAPIFile, name)
		}
		if op.Responses == nil || op.Responses.Len() == 0 {
			t.Errorf("%s: %s documents no response", openAPIFile, name)
			continue
		}
		for status, ref := range op.Responses.Map() {
			r := ref.Value
			if r == nil || r.Description == nil || *r.Description == "" {
				t.Errorf("%s: %s answer %s has no description", openAPIFile, name, status)
				continue
			}
			switch status {
			case "204", "302", "303", "304", "412":
				if len(r.Content) > 0 {
					t.Errorf("%s: %s answer %s has no body, yet documents content", openAPIFile, name, status)
				}
				continue
			}
			if len(r.Content) == 0 {
				t.Errorf("%s: %s answer %s documents no content", openAPIFile, name, status)
			}
			for mt, c := range r.Content {
				if c.Schema == nil {
					t.Errorf("%s: %s answer %s (%s) has no schema", openAPIFile, name, status, mt)
				}
			}
		}
		if op.RequestBody != nil {
			for mt, c := range op.RequestBody.Value.Content {
				if c.Schema == nil {
					t.Errorf("%s: %s request body (%s) has no schema", openAPIFile, name, mt)
				}
			}
		}
	}
	for _, name := range []string{"Error", "FieldErrors", "Result", "ResultList", "Plugin", "PluginList", "Settings", "StorageOverview", "StorageOption"} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("%s has no component schema %s", openAPIFile, name)
		}
	}
}

// TestOpenAPIServed: GET /api/v1/openapi.json answers the document to an
// anonymous caller as application/json.
func TestOpenAPIServed(t *testing.T) {
	a := New(nil, nil, nil, Options{AdminToken: testToken})
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("GET", OpenAPIPath, nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %q, want 200 application/json", OpenAPIPath, rec.Code, rec.Header().Get("Content-Type"))
	}
	if !bytes.Equal(rec.Body.Bytes(), OpenAPI()) {
		t.Fatalf("GET %s does not answer the embedded document", OpenAPIPath)
	}
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || doc["openapi"] != "3.1.0" {
		t.Fatalf("GET %s: not an OpenAPI 3.1.0 document (%v)", OpenAPIPath, err)
	}
}

// TestEveryRouteIsDocumented: every pattern registered on the API's mux
// has an operation of the same method and path in the document, and every
// documented operation is served by a registered route.
func TestEveryRouteIsDocumented(t *testing.T) {
	doc := loadOpenAPI(t)
	a := New(nil, nil, nil, Options{Auth: auth.New(auth.Options{})})
	routes := a.Routes()
	for _, p := range append(a.AdminRoutes(), a.ResultsRoutes()...) {
		if !slices.Contains(routes, p) {
			t.Errorf("Routes() misses %s", p)
		}
	}
	for _, problem := range routeProblems(routes, documentedOps(doc), a.mux.Handler) {
		t.Error(problem)
	}
}

// routeProblems lists every route without an operation and every
// operation without a route; handler is the mux's pattern lookup.
func routeProblems(routes []string, ops map[string]*openapi3.Operation, handler func(*http.Request) (http.Handler, string)) []string {
	var problems []string
	for _, p := range routes {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			// A handler of every method (/login): some method must be documented.
			path = p
			found := false
			for op := range ops {
				if _, opPath, _ := strings.Cut(op, " "); opPath == path {
					found = true
				}
			}
			if !found {
				problems = append(problems, fmt.Sprintf("route %q is registered on the API but %s documents no operation under paths[%q]: add one for each method it serves", p, openAPIFile, path))
			}
			continue
		}
		if ops[p] == nil {
			problems = append(problems, fmt.Sprintf("route %q is registered on the API but not documented: add paths[%q].%s to %s (operationId, summary, parameters, request body, every answer with its schema, security)",
				p, path, strings.ToLower(method), openAPIFile))
		}
	}
	for _, op := range sortedKeys(ops) {
		method, path, _ := strings.Cut(op, " ")
		req := httptest.NewRequest(method, pathParam.ReplaceAllString(path, "x"), nil)
		if _, pattern := handler(req); pattern != op && pattern != path {
			problems = append(problems, fmt.Sprintf("%s documents %s but no route serves it (the mux matches %q): register the route or remove the operation", openAPIFile, op, pattern))
		}
	}
	return problems
}

// pathParam matches a path template's parameter.
var pathParam = regexp.MustCompile(`\{[^}/]+\}`)

// TestRouteCheckNamesAMissingRoute: a route registered without an
// operation fails the check, naming the route and the file to edit.
func TestRouteCheckNamesAMissingRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	a := New(nil, nil, nil, Options{Auth: auth.New(auth.Options{})})
	a.mux.HandleFunc("POST /api/v1/admin/orphans/cleanup", func(http.ResponseWriter, *http.Request) {})
	problems := routeProblems(a.Routes(), documentedOps(doc), a.mux.Handler)
	want := `route "POST /api/v1/admin/orphans/cleanup" is registered on the API but not documented: add paths["/api/v1/admin/orphans/cleanup"].post to host/httpapi/openapi.json`
	if len(problems) != 1 || !strings.HasPrefix(problems[0], want) {
		t.Fatalf("the check said %q, want one problem starting %q", problems, want)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// _ keeps imports used while the answers test is written.
var _ = []any{context.Background, fmt.Sprint, io.EOF, multipart.NewWriter, textproto.MIMEHeader{}, filepath.Join, routers.Route{}, openapi3filter.Options{}, localstore.New, results.New, testdb.Dialects}
