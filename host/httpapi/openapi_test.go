package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/magicads/r2storage/host/auth"
	"github.com/magicads/r2storage/host/localstore"
	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/host/settingsstore"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/storage"
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
	a.mux.HandleFunc("POST /api/v1/admin/undocumented-example", func(http.ResponseWriter, *http.Request) {})
	problems := routeProblems(a.Routes(), documentedOps(doc), a.mux.Handler)
	want := `route "POST /api/v1/admin/undocumented-example" is registered on the API but not documented: add paths["/api/v1/admin/undocumented-example"].post to host/httpapi/openapi.json`
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

// contract sends requests to an API server and checks each request and
// its answer against the document's operation for it.
type contract struct {
	t      *testing.T
	doc    *openapi3.T
	base   string
	client *http.Client
	seen   map[string]bool // "operationId status" checked
}

// call sends req (a path relative to the server) as operation "METHOD
// /template" of the document, validates the request and the answer, checks
// the status is want, and returns the answer's body.
func (c *contract) call(op string, req *http.Request, want int) []byte {
	c.t.Helper()
	return c.send(op, req, want, true)
}

// callOutside is call for a request the document does not allow (a media
// type the API refuses): only the answer is validated.
func (c *contract) callOutside(op string, req *http.Request, want int) []byte {
	c.t.Helper()
	return c.send(op, req, want, false)
}

func (c *contract) send(op string, req *http.Request, want int, checkRequest bool) []byte {
	c.t.Helper()
	method, tmpl, _ := strings.Cut(op, " ")
	item := c.doc.Paths.Value(tmpl)
	if item == nil || item.GetOperation(method) == nil {
		c.t.Fatalf("%s documents no %s", openAPIFile, op)
	}
	route := &routers.Route{Spec: c.doc, Path: tmpl, PathItem: item, Method: method, Operation: item.GetOperation(method)}
	params := map[string]string{}
	tsegs, psegs := strings.Split(tmpl, "/"), strings.Split(req.URL.Path, "/")
	for i, seg := range tsegs {
		if strings.HasPrefix(seg, "{") && i < len(psegs) {
			params[strings.Trim(seg, "{}")] = psegs[i]
		}
	}
	var reqBody []byte
	if req.Body != nil {
		var err error
		if reqBody, err = io.ReadAll(req.Body); err != nil {
			c.t.Fatal(err)
		}
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if err := openapi3filter.ValidateRequest(context.Background(), in); checkRequest && err != nil {
		c.t.Errorf("%s: the test's request does not match %s: %v", op, openAPIFile, err)
	}
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	u := *req.URL
	req.URL, req.RequestURI = mustParse(c.t, c.base+u.RequestURI()), ""
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatalf("%s: %v", op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	req.URL = &u
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, u.RequestURI(), resp.StatusCode, body, want)
	}
	// kin-openapi cannot decode media bytes; their status and headers are still checked.
	ct := resp.Header.Get("Content-Type")
	binary := strings.HasPrefix(ct, "image/") || strings.HasPrefix(ct, "video/") || ct == "application/octet-stream"
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: binary}}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		c.t.Errorf("%s answered %d %s, which %s does not describe: %v", op, resp.StatusCode, truncate(string(body), 400), openAPIFile, err)
	}
	c.seen[route.Operation.OperationID+" "+fmt.Sprint(resp.StatusCode)] = true
	return body
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// jsonReq builds a request with a JSON body (nil for none) and a bearer token.
func jsonReq(t *testing.T, method, path, token string, body any) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// uploadReq builds a results upload of content with the service token.
func uploadReq(t *testing.T, token, filename, ctype string, content []byte) *http.Request {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range [][2]string{{"kind", "images"}, {"generator", "gemini"}, {"owner", "user-1"}} {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="`+filename+`"`)
	h.Set("Content-Type", ctype)
	w, err := mw.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(content)
	mw.Close()
	req := httptest.NewRequest("POST", "/api/v1/results", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

// TestAnswersMatchTheDocument: real answers of the results, storage,
// plugins and settings calls, errors included, are what the document's
// schemas for those operations and statuses describe; so are the test's
// requests.
func TestAnswersMatchTheDocument(t *testing.T) {
	const svcToken = "service-token"
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89rest of the image")
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			adm := newAdminAPI(t, d)
			db := testdb.Open(t, d)
			local, err := localstore.New(filepath.Join(t.TempDir(), "results"))
			if err != nil {
				t.Fatal(err)
			}
			svc := results.New(db.DB, local, nil, results.Options{})
			api := New(svc, adm.mgr, nil, Options{AdminToken: testToken, ServiceToken: svcToken, SpoolDir: t.TempDir()})
			srv := httptest.NewServer(api)
			defer srv.Close()
			c := &contract{t: t, doc: loadOpenAPI(t), base: srv.URL, seen: map[string]bool{},
				client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}

			// Results: create (and its idempotent replay), get, list, content, delete.
			var res struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(c.call("POST /api/v1/results", uploadReq(t, svcToken, "a.png", "image/png", png), 201), &res); err != nil || res.ID == "" {
				t.Fatalf("created result %+v: %v", res, err)
			}
			for _, want := range []int{201, 200} {
				req := uploadReq(t, svcToken, "b.png", "image/png", png)
				req.Header.Set("Idempotency-Key", "0b8f6a2e-key")
				c.call("POST /api/v1/results", req, want)
			}
			c.callOutside("POST /api/v1/results", uploadReq(t, svcToken, "a.txt", "text/plain", []byte("not an image at all")), http.StatusUnsupportedMediaType)
			c.call("GET /api/v1/results/{id}", jsonReq(t, "GET", "/api/v1/results/"+res.ID, svcToken, nil), 200)
			c.call("GET /api/v1/results/{id}", jsonReq(t, "GET", "/api/v1/results/0b8f6a2e-3c1d-4e5f-8a9b-0c1d2e3f4a5b", svcToken, nil), 404)
			var page struct {
				Next string `json:"next_cursor"`
			}
			if err := json.Unmarshal(c.call("GET /api/v1/results", jsonReq(t, "GET", "/api/v1/results?limit=1&owner=user-1", svcToken, nil), 200), &page); err != nil || page.Next == "" {
				t.Fatalf("first page: cursor %q, %v", page.Next, err)
			}
			c.call("GET /api/v1/results", jsonReq(t, "GET", "/api/v1/results?cursor="+url.QueryEscape(page.Next), svcToken, nil), 200)
			c.call("GET /api/v1/results", jsonReq(t, "GET", "/api/v1/results", "", nil), 401)
			c.call("GET /api/v1/results/{id}/content", jsonReq(t, "GET", "/api/v1/results/"+res.ID+"/content", "", nil), 200)

			// Admin: plugins, settings (saved, refused, tested), storage.
			c.call("GET /api/v1/admin/plugins", jsonReq(t, "GET", "/api/v1/admin/plugins", testToken, nil), 200)
			settingsPath := "/api/v1/admin/plugins/" + pluginID + "/settings"
			c.call("GET /api/v1/admin/plugins/{id}/settings", jsonReq(t, "GET", settingsPath, testToken, nil), 200)
			c.call("GET /api/v1/admin/plugins/{id}/settings", jsonReq(t, "GET", "/api/v1/admin/plugins/no-such-plugin/settings", testToken, nil), 404)
			bad := settings()
			bad["bucket"] = "Bad_Bucket"
			c.call("PUT /api/v1/admin/plugins/{id}/settings", jsonReq(t, "PUT", settingsPath, testToken, map[string]any{"values": bad}), 422)
			c.call("PUT /api/v1/admin/plugins/{id}/settings", jsonReq(t, "PUT", settingsPath, testToken, map[string]any{"values": settings()}), 200)
			c.call("GET /api/v1/admin/plugins/{id}/settings", jsonReq(t, "GET", settingsPath, testToken, nil), 200)
			c.call("POST /api/v1/admin/plugins/{id}/test", jsonReq(t, "POST", "/api/v1/admin/plugins/"+pluginID+"/test", testToken, map[string]any{"values": settings()}), 200)
			c.call("GET /api/v1/admin/storage", jsonReq(t, "GET", "/api/v1/admin/storage", testToken, nil), 200)
			c.call("PUT /api/v1/admin/storage", jsonReq(t, "PUT", "/api/v1/admin/storage", testToken, map[string]string{"default": pluginID}), 200)
			c.call("PUT /api/v1/admin/storage", jsonReq(t, "PUT", "/api/v1/admin/storage", testToken, map[string]string{"default": "no-such-provider"}), 422)
			c.call("GET /api/v1/admin/storage", jsonReq(t, "GET", "/api/v1/admin/storage", testToken, nil), 200)
			c.call("POST /api/v1/admin/storage/{id}/retry", jsonReq(t, "POST", "/api/v1/admin/storage/local/retry", testToken, nil), 200)
			// The overview of a failing Default Storage, and without job counts.
			at := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
			for _, jobs := range []*fakeJobs{
				{stats: map[string]results.ProviderJobs{pluginID: {Pending: 1, Failed: 2, LastError: "permission denied on bucket", LastCode: storage.PermissionDenied, LastErrorAt: at}}},
				{err: errors.New("database is locked")},
			} {
				other := New(nil, adm.mgr, nil, Options{AdminToken: testToken})
				other.jobs = jobs
				osrv := httptest.NewServer(other)
				c.base = osrv.URL
				var got struct {
					Options []struct {
						Status string `json:"status"`
					} `json:"options"`
				}
				if err := json.Unmarshal(c.call("GET /api/v1/admin/storage", jsonReq(t, "GET", "/api/v1/admin/storage", testToken, nil), 200), &got); err != nil || len(got.Options) != 2 || got.Options[1].Status == "ok" {
					t.Fatalf("overview with jobs %+v: %+v, %v", jobs, got, err)
				}
				osrv.Close()
				c.base = srv.URL
			}
			c.call("GET /api/v1/admin/storage", jsonReq(t, "GET", "/api/v1/admin/storage", "wrong-token", nil), 401)
			c.call("POST /api/v1/admin/plugins/{id}/install", jsonReq(t, "POST", "/api/v1/admin/plugins/"+pluginID+"/install", testToken, nil), 409)
			// With a marketplace (no catalog configured): the plugins are cards.
			key, err := settingsstore.GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			keys, err := settingsstore.NewKeyring(key)
			if err != nil {
				t.Fatal(err)
			}
			mkt := marketplace.New(marketplace.Config{}, db.DB, db.Dialect, adm.mgr, settingsstore.New(db.DB, keys))
			msrv := httptest.NewServer(New(svc, adm.mgr, mkt, Options{AdminToken: testToken}))
			c.base = msrv.URL
			var cards struct {
				Plugins []struct {
					CTA string `json:"cta"`
				} `json:"plugins"`
			}
			if err := json.Unmarshal(c.call("GET /api/v1/admin/plugins", jsonReq(t, "GET", "/api/v1/admin/plugins", testToken, nil), 200), &cards); err != nil || len(cards.Plugins) != 1 || cards.Plugins[0].CTA != "uninstall" {
				t.Fatalf("cards %+v, %v", cards, err)
			}
			c.call("POST /api/v1/admin/plugins/{id}/install", jsonReq(t, "POST", "/api/v1/admin/plugins/"+pluginID+"/install", testToken, nil), 409)
			c.call("POST /api/v1/admin/plugins/{id}/purchase", jsonReq(t, "POST", "/api/v1/admin/plugins/"+pluginID+"/purchase", testToken, nil), 409)
			c.call("POST /api/v1/admin/purchases", jsonReq(t, "POST", "/api/v1/admin/purchases", testToken, map[string]string{"receipt": "not-a-receipt"}), 422)
			msrv.Close()

			// An admin session: reads need its cookie, writes its CSRF token too (403 without).
			au := auth.New(auth.Options{})
			signIn := httptest.NewRecorder()
			au.StartSession(signIn, httptest.NewRequest("POST", "/login", nil), auth.AdminUser, auth.RoleAdmin)
			ssrv := httptest.NewServer(New(svc, adm.mgr, nil, Options{Auth: au}))
			c.base = ssrv.URL
			withSession := func(req *http.Request) *http.Request {
				for _, ck := range signIn.Result().Cookies() {
					req.AddCookie(ck)
				}
				return req
			}
			c.call("GET /api/v1/admin/storage", withSession(jsonReq(t, "GET", "/api/v1/admin/storage", "", nil)), 200)
			c.call("PUT /api/v1/admin/storage", withSession(jsonReq(t, "PUT", "/api/v1/admin/storage", "", map[string]string{"default": "local"})), 403)
			ssrv.Close()
			c.base = srv.URL

			// The rest: delete, health, this document.
			c.call("DELETE /api/v1/results/{id}", jsonReq(t, "DELETE", "/api/v1/results/"+res.ID, svcToken, nil), 204)
			c.call("GET /api/v1/results/{id}/content", jsonReq(t, "GET", "/api/v1/results/"+res.ID+"/content", "", nil), 404)
			c.call("GET /healthz", jsonReq(t, "GET", "/healthz", "", nil), 200)
			c.call("GET /api/v1/openapi.json", jsonReq(t, "GET", "/api/v1/openapi.json", "", nil), 200)

			for _, want := range []string{"createResult 201", "getResult 200", "listResults 200", "getStorage 200", "listPlugins 200",
				"getPluginSettings 200", "savePluginSettings 422", "setDefaultStorage 422"} {
				if !c.seen[want] {
					t.Errorf("no answer was checked for %s", want)
				}
			}
		})
	}
}
