package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/html"
)

// fakeAPI answers the API paths with fixed JSON and records what it saw.
type fakeAPI struct {
	mu      sync.Mutex
	answers map[string]fakeAnswer
	seen    []*http.Request
}

// fakeAnswer is one canned API answer.
type fakeAnswer struct {
	status int
	body   string
}

func newFakeAPI() *fakeAPI { return &fakeAPI{answers: map[string]fakeAnswer{}} }

func (f *fakeAPI) set(path string, status int, body any) {
	s, ok := body.(string)
	if !ok {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err)
		}
		s = string(b)
	}
	f.mu.Lock()
	f.answers[path] = fakeAnswer{status, s}
	f.mu.Unlock()
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.seen = append(f.seen, r)
	a, ok := f.answers[r.URL.RequestURI()]
	f.mu.Unlock()
	if r.Method != http.MethodGet {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"no such API path `+r.URL.Path+`"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

// get serves one GET through the pages and parses the answer.
func get(t *testing.T, h http.Handler, target string) (*http.Response, string, *html.Node) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body := rec.Body.String()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("GET %s: not HTML: %v", target, err)
	}
	return res, body, doc
}

// walk visits every element node in document order.
func walk(n *html.Node, fn func(*html.Node)) {
	if n.Type == html.ElementNode {
		fn(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func byID(doc *html.Node, id string) *html.Node {
	var found *html.Node
	walk(doc, func(n *html.Node) {
		if v, _ := attr(n, "id"); v == id && found == nil {
			found = n
		}
	})
	return found
}

func mustID(t *testing.T, doc *html.Node, id string) *html.Node {
	t.Helper()
	n := byID(doc, id)
	if n == nil {
		t.Fatalf("no element with id %q", id)
	}
	return n
}

func hasClass(n *html.Node, class string) bool {
	v, _ := attr(n, "class")
	return slices.Contains(strings.Fields(v), class)
}

func byClass(doc *html.Node, class string) []*html.Node {
	var out []*html.Node
	walk(doc, func(n *html.Node) {
		if hasClass(n, class) {
			out = append(out, n)
		}
	})
	return out
}

// textOf returns the node's text content, spaces collapsed.
func textOf(n *html.Node) string {
	var b strings.Builder
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			rec(c)
		}
	}
	rec(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

// checkLayout checks what every page carries: status, nav, logout, toast
// box, and a script and style allowed by the page's CSP nonce.
func checkLayout(t *testing.T, res *http.Response, doc *html.Node, page string) {
	t.Helper()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	for id, href := range map[string]string{"nav-storage": StoragePath, "nav-plugins": PluginsPath, "nav-results": ResultsPath} {
		if v, _ := attr(mustID(t, doc, id), "href"); v != href {
			t.Errorf("#%s href %q, want %q", id, v, href)
		}
	}
	if n := mustID(t, doc, "logout"); n.Data != "button" {
		t.Errorf("#logout is a %s", n.Data)
	}
	mustID(t, doc, "toasts")
	var body *html.Node
	walk(doc, func(n *html.Node) {
		if n.Data == "body" {
			body = n
		}
	})
	if v, _ := attr(body, "data-page"); v != page {
		t.Errorf("body data-page %q, want %q", v, page)
	}
	csp := res.Header.Get("Content-Security-Policy")
	m := regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9_-]+)'`).FindStringSubmatch(csp)
	if m == nil {
		t.Fatalf("CSP without a script nonce: %q", csp)
	}
	scripts := 0
	walk(doc, func(n *html.Node) {
		if n.Data == "script" || n.Data == "style" {
			if v, _ := attr(n, "nonce"); v != m[1] {
				t.Errorf("<%s> nonce %q, CSP nonce %q", n.Data, v, m[1])
			}
			if _, ext := attr(n, "src"); ext {
				t.Errorf("<%s> loads an external asset", n.Data)
			}
			scripts++
		}
		if n.Data == "link" {
			// Only the host's own icon.
			rel, _ := attr(n, "rel")
			href, _ := attr(n, "href")
			if rel != "icon" || href != "/app/favicon.svg" {
				t.Errorf("page links an asset other than its icon: %v", n.Attr)
			}
		}
	})
	if scripts != 2 {
		t.Errorf("%d inline script/style elements, want 2", scripts)
	}
}

func TestStoragePage(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/storage", 200, map[string]any{
		"default": "cloudflare-r2",
		"options": []map[string]string{{"id": "local", "name": "Local server (this machine)"}, {"id": "cloudflare-r2", "name": "Cloudflare R2 Storage"}},
	})
	h := New(Options{API: api})
	res, _, doc := get(t, h, StoragePath)
	checkLayout(t, res, doc, "storage")
	sel := mustID(t, doc, "default-storage")
	if sel.Data != "select" {
		t.Fatalf("#default-storage is a %s", sel.Data)
	}
	type opt struct {
		value, text string
		selected    bool
	}
	var got []opt
	walk(sel, func(n *html.Node) {
		if n.Data == "option" {
			v, _ := attr(n, "value")
			_, s := attr(n, "selected")
			got = append(got, opt{v, textOf(n), s})
		}
	})
	want := []opt{{"local", "Local server (this machine)", false}, {"cloudflare-r2", "Cloudflare R2 Storage", true}}
	if !slices.Equal(got, want) {
		t.Errorf("options %+v, want %+v", got, want)
	}
	if btn := mustID(t, doc, "save-storage"); btn.Data != "button" {
		t.Errorf("#save-storage is a %s", btn.Data)
	}
	if byID(doc, "storage-warning") != nil {
		t.Error("a warning without one from the API")
	}
}

func TestStoragePageWarningAndUnavailableDefault(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/storage", 200, map[string]any{
		"default": "local",
		"options": []map[string]string{{"id": "local", "name": "Local server (this machine)"}},
		"warning": "Default Storage cannot be read, so new results stay local: boom",
	})
	res, _, doc := get(t, New(Options{API: api}), StoragePath)
	checkLayout(t, res, doc, "storage")
	if got := textOf(mustID(t, doc, "storage-warning")); got != "Default Storage cannot be read, so new results stay local: boom" {
		t.Errorf("warning %q", got)
	}

	api.set("/api/v1/admin/storage", 200, map[string]any{
		"default": "gone",
		"options": []map[string]string{{"id": "local", "name": "Local server (this machine)"}},
	})
	_, _, doc = get(t, New(Options{API: api}), StoragePath)
	var selected []string
	walk(mustID(t, doc, "default-storage"), func(n *html.Node) {
		if _, ok := attr(n, "selected"); ok && n.Data == "option" {
			v, _ := attr(n, "value")
			selected = append(selected, v)
		}
	})
	if !slices.Equal(selected, []string{"gone"}) {
		t.Errorf("selected %v, want the current default shown even though it is not an option", selected)
	}
}

func pluginsAPI() *fakeAPI {
	api := newFakeAPI()
	api.set("/api/v1/admin/plugins", 200, map[string]any{"plugins": []map[string]string{
		{"id": "cloudflare-r2", "name": "Cloudflare R2 Storage", "description": "Offload results to R2.", "version": "1.1.0",
			"state": "not_installed", "cta": "buy", "message": "This plugin is free only for Extended License holders",
			"price": "29.00 USD", "checkout_url": "http://127.0.0.1:8090/checkout/cloudflare-r2"},
		{"id": "free-one", "name": "Free One", "description": "A free plugin.", "version": "0.1.0", "state": "not_installed", "cta": "install"},
		{"id": "s3", "name": "Amazon S3", "version": "2.0.0", "installed_version": "1.0.0", "state": "installed", "cta": "uninstall",
			"configure_url": "/app/admin/general/plugins/s3"},
		{"id": "broken", "name": "Broken", "installed_version": "1.0.0", "state": "failed", "message": "crashed 3 times in 10 minutes"},
	}})
	return api
}

func TestPluginsPage(t *testing.T) {
	res, _, doc := get(t, New(Options{API: pluginsAPI()}), PluginsPath)
	checkLayout(t, res, doc, "plugins")
	if n := len(byClass(doc, "card")); n != 4 {
		t.Fatalf("%d cards, want 4", n)
	}

	r2 := mustID(t, doc, "plugin-cloudflare-r2")
	for class, want := range map[string]string{"card-name": "Cloudflare R2 Storage", "card-description": "Offload results to R2.",
		"card-price": "29.00 USD", "card-state": "Not installed", "card-message": "This plugin is free only for Extended License holders",
		"card-version": "1.1.0"} {
		if n := byClass(r2, class); len(n) != 1 || textOf(n[0]) != want {
			t.Errorf("R2 card .%s: want %q", class, want)
		}
	}
	buy := mustID(t, doc, "buy-cloudflare-r2")
	if buy.Data != "a" || textOf(buy) != "Buy" {
		t.Errorf("buy CTA <%s> %q", buy.Data, textOf(buy))
	}
	if v, _ := attr(buy, "data-checkout"); v != "http://127.0.0.1:8090/checkout/cloudflare-r2" {
		t.Errorf("buy data-checkout %q", v)
	}
	for _, id := range []string{"install-cloudflare-r2", "uninstall-cloudflare-r2", "configure-cloudflare-r2"} {
		if byID(doc, id) != nil {
			t.Errorf("the R2 card offers #%s", id)
		}
	}

	inst := mustID(t, doc, "install-free-one")
	if inst.Data != "button" || textOf(inst) != "Install" {
		t.Errorf("install CTA <%s> %q", inst.Data, textOf(inst))
	}
	if got := textOf(byClass(mustID(t, doc, "plugin-free-one"), "card-price")[0]); got != "Free" {
		t.Errorf("free plugin price %q", got)
	}

	s3 := mustID(t, doc, "plugin-s3")
	if got := textOf(byClass(s3, "card-installed-version")[0]); got != "1.0.0" {
		t.Errorf("installed version %q", got)
	}
	if got := textOf(byClass(s3, "card-state")[0]); got != "Installed" {
		t.Errorf("state %q", got)
	}
	if n := mustID(t, doc, "uninstall-s3"); textOf(n) != "Uninstall" {
		t.Errorf("uninstall CTA %q", textOf(n))
	}
	if v, _ := attr(mustID(t, doc, "configure-s3"), "href"); v != "/app/admin/general/plugins/s3" {
		t.Errorf("configure href %q", v)
	}
	if n := mustID(t, doc, "update-s3"); textOf(n) != "Update to 2.0.0" {
		t.Errorf("update button %q", textOf(n))
	}

	broken := mustID(t, doc, "plugin-broken")
	if got := textOf(byClass(broken, "card-state")[0]); got != "Failed" {
		t.Errorf("failed state %q", got)
	}
	if got := textOf(byClass(broken, "card-message")[0]); got != "Crashed 3 times in 10 minutes" {
		t.Errorf("failed message %q", got)
	}
	if v, _ := attr(mustID(t, doc, "configure-broken"), "href"); v != "/app/admin/general/plugins/broken" {
		t.Errorf("a failed plugin's configure link %q", v)
	}
	mustID(t, doc, "purchase-status")
}

// TestPluginsPageOffersOnlyNewerVersions: a card offers "Update to X" only
// when X is newer than the installed version (semver, not string order);
// with nothing newer it shows the installed state.
func TestPluginsPageOffersOnlyNewerVersions(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/plugins", 200, map[string]any{"plugins": []map[string]string{
		{"id": "older", "name": "Older", "version": "1.0.0", "installed_version": "1.1.0", "state": "installed", "cta": "uninstall"},
		{"id": "same", "name": "Same", "version": "1.1.0", "installed_version": "1.1.0", "state": "installed", "cta": "uninstall"},
		{"id": "prerelease", "name": "Prerelease", "version": "2.0.0-rc.1", "installed_version": "2.0.0", "state": "installed", "cta": "uninstall"},
		{"id": "failed-older", "name": "Failed", "version": "0.9.0", "installed_version": "1.0.0", "state": "failed", "cta": "uninstall"},
		{"id": "newer", "name": "Newer", "version": "1.10.0", "installed_version": "1.9.0", "state": "installed", "cta": "uninstall"},
	}})
	_, body, doc := get(t, New(Options{API: api}), PluginsPath)
	for _, id := range []string{"older", "same", "prerelease", "failed-older"} {
		if n := byID(doc, "update-"+id); n != nil {
			t.Errorf("the %s card offers %q", id, textOf(n))
		}
		card := mustID(t, doc, "plugin-"+id)
		if byClass(card, "card-installed-version") == nil || byID(doc, "uninstall-"+id) == nil {
			t.Errorf("the %s card does not show its installed state", id)
		}
		if n := byClass(card, "card-version"); n != nil {
			t.Errorf("the %s card shows %q as the latest version", id, textOf(n[0]))
		}
	}
	for _, v := range []string{"Update to 1.0.0", "Update to 2.0.0-rc.1", "Update to 0.9.0"} {
		if strings.Contains(body, v) {
			t.Errorf("the page offers %q", v)
		}
	}
	if n := mustID(t, doc, "update-newer"); textOf(n) != "Update to 1.10.0" {
		t.Errorf("update button %q", textOf(n))
	}
}

func TestPluginsPageEscapesHostileStrings(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/plugins", 200, map[string]any{"plugins": []map[string]string{{
		"id": `x"><script>alert(1)</script>`, "name": "<script>alert('name')</script>",
		"description": `"><img src=x onerror=alert(2)>`, "message": "<b>bold</b>", "price": "<i>1</i>",
		"state": "not_installed", "cta": "buy", "checkout_url": "javascript:alert(3)",
	}}})
	res, body, doc := get(t, New(Options{API: api}), PluginsPath)
	checkLayout(t, res, doc, "plugins")
	for _, raw := range []string{"<script>alert", "<img src=x", "<b>bold", "<i>1"} {
		if strings.Contains(body, raw) {
			t.Errorf("the page contains %q unescaped", raw)
		}
	}
	card := byClass(doc, "card")[0]
	if got := textOf(byClass(card, "card-name")[0]); got != "<script>alert('name')</script>" {
		t.Errorf("name shown as %q", got)
	}
	noScriptURLs(t, doc)
	walk(doc, func(n *html.Node) {
		if n.Data == "img" || (n.Data == "script" && n.FirstChild != nil && strings.Contains(n.FirstChild.Data, "alert(")) {
			t.Errorf("hostile markup became an element: <%s>", n.Data)
		}
	})
}

func TestPluginsPageShowsTheHostsError(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/plugins", 502, map[string]string{"error": "fetching the catalog: connection refused"})
	res, _, doc := get(t, New(Options{API: api}), PluginsPath)
	if res.StatusCode != 502 {
		t.Errorf("status %d, want the API's 502", res.StatusCode)
	}
	if got := textOf(mustID(t, doc, "page-error")); got != "Fetching the catalog: connection refused" {
		t.Errorf("error %q", got)
	}
	mustID(t, doc, "nav-plugins")
}

// section is a rendered form section: its id, title and field keys.
type section struct {
	id, title string
	fields    []string
}

// formSections reads the config form's sections in document order.
func formSections(t *testing.T, doc *html.Node) []section {
	t.Helper()
	var out []section
	walk(mustID(t, doc, "settings-form"), func(n *html.Node) {
		if n.Data == "section" {
			id, _ := attr(n, "id")
			s := section{id: strings.TrimPrefix(id, "section-")}
			walk(n, func(c *html.Node) {
				if c.Data == "h2" && s.title == "" {
					s.title = textOf(c)
				}
				if k, ok := attr(c, "data-key"); ok {
					s.fields = append(s.fields, k)
				}
			})
			out = append(out, s)
		}
	})
	return out
}

// labelFor returns the text of the label of input id.
func labelFor(doc *html.Node, id string) string {
	var got string
	walk(doc, func(n *html.Node) {
		if v, _ := attr(n, "for"); n.Data == "label" && v == id {
			got = textOf(byClass(n, "label-text")[0])
		}
	})
	return got
}

func TestConfigPageRendersTheR2Schema(t *testing.T) {
	schema, err := r2Schema()
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Properties map[string]struct {
			Title       string `json:"title"`
			Description string `json:"description"`
			Placeholder string `json:"x-placeholder"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(schema, &parsed); err != nil {
		t.Fatal(err)
	}
	api := newFakeAPI()
	api.set("/api/v1/admin/plugins/cloudflare-r2/settings", 200, map[string]any{
		"schema": json.RawMessage(schema),
		"values": map[string]any{"enabled": true, "delete_local": false, "access_key_id": "AKIA123", "bucket": "my-magicads-media",
			"account_id": "", "endpoint": "", "public_url": "https://pub-1.r2.dev", "key_prefix": "magicads", "use_path_style": false,
			"jurisdiction": "eu", "secret_access_key": "MUST-NOT-APPEAR"},
		"secrets_set": []string{"secret_access_key"},
		"problem":     "not fully configured: set the account id or a custom endpoint",
	})
	res, body, doc := get(t, New(Options{API: api}), PluginsPath+"/cloudflare-r2")
	checkLayout(t, res, doc, "config")
	if strings.Contains(body, "MUST-NOT-APPEAR") {
		t.Fatal("a secret value was rendered")
	}

	got := formSections(t, doc)
	want := []section{
		{"general", "General", []string{"enabled", "delete_local"}},
		{"credentials", "Bucket Credentials", []string{"access_key_id", "secret_access_key", "account_id", "bucket"}},
		{"advanced", "Advanced", []string{"endpoint", "public_url", "key_prefix", "use_path_style", "jurisdiction"}},
		{"connection", "Connection", nil},
	}
	if len(got) != len(want) {
		t.Fatalf("sections %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].id != want[i].id || got[i].title != want[i].title || !slices.Equal(got[i].fields, want[i].fields) {
			t.Errorf("section %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	rendered := 0
	for _, s := range got {
		rendered += len(s.fields)
	}
	if rendered != len(parsed.Properties) {
		t.Errorf("%d fields rendered, the schema has %d properties", rendered, len(parsed.Properties))
	}

	for key, p := range parsed.Properties {
		id := "field-" + key
		mustID(t, doc, id)
		if got := labelFor(doc, id); got != p.Title {
			t.Errorf("%s label %q, want %q", key, got, p.Title)
		}
		if got := textOf(mustID(t, doc, "help-"+key)); got != p.Description {
			t.Errorf("%s help %q, want %q", key, got, p.Description)
		}
		mustID(t, doc, "error-"+key)
	}

	for _, k := range []string{"enabled", "delete_local", "use_path_style"} {
		n := mustID(t, doc, "field-"+k)
		if typ, _ := attr(n, "type"); n.Data != "input" || typ != "checkbox" {
			t.Errorf("%s is <%s type=%s>, want a checkbox", k, n.Data, typ)
		}
	}
	if _, on := attr(mustID(t, doc, "field-enabled"), "checked"); !on {
		t.Error("enabled is not checked")
	}
	if _, on := attr(mustID(t, doc, "field-delete_local"), "checked"); on {
		t.Error("delete_local is checked")
	}

	sec := mustID(t, doc, "field-secret_access_key")
	if typ, _ := attr(sec, "type"); typ != "password" {
		t.Errorf("secret input type %q, want password", typ)
	}
	if v, _ := attr(sec, "value"); v != "" {
		t.Errorf("secret input value %q, want empty", v)
	}
	if v, _ := attr(sec, "placeholder"); v != "•••••••• (stored — leave blank to keep)" {
		t.Errorf("stored secret placeholder %q", v)
	}

	for key, want := range map[string]string{"access_key_id": "AKIA123", "bucket": "my-magicads-media", "public_url": "https://pub-1.r2.dev", "key_prefix": "magicads", "account_id": ""} {
		n := mustID(t, doc, "field-"+key)
		typ, _ := attr(n, "type")
		v, _ := attr(n, "value")
		ph, _ := attr(n, "placeholder")
		if n.Data != "input" || typ != "text" || v != want || ph != parsed.Properties[key].Placeholder {
			t.Errorf("%s: <%s type=%q value=%q placeholder=%q>, want text %q with placeholder %q", key, n.Data, typ, v, ph, want, parsed.Properties[key].Placeholder)
		}
	}

	jur := mustID(t, doc, "field-jurisdiction")
	if jur.Data != "select" {
		t.Fatalf("jurisdiction is a <%s>", jur.Data)
	}
	var opts []string
	walk(jur, func(n *html.Node) {
		if n.Data == "option" {
			v, _ := attr(n, "value")
			_, sel := attr(n, "selected")
			opts = append(opts, v+"="+textOf(n)+map[bool]string{true: "*", false: ""}[sel])
		}
	})
	if want := []string{"default=Default", "eu=European Union (EU)*", "fedramp=FedRAMP"}; !slices.Equal(opts, want) {
		t.Errorf("jurisdiction options %v, want %v", opts, want)
	}

	if n := mustID(t, doc, "test-connection"); n.Data != "button" || textOf(n) != "Test connection" {
		t.Errorf("#test-connection <%s> %q", n.Data, textOf(n))
	}
	if n := mustID(t, doc, "save"); n.Data != "button" || textOf(n) != "Save" {
		t.Errorf("#save <%s> %q", n.Data, textOf(n))
	}
	if got := textOf(mustID(t, doc, "page-title")); got != "Cloudflare R2 Storage settings" {
		t.Errorf("title %q", got)
	}
	if got := textOf(mustID(t, doc, "settings-problem-text")); got != "Not fully configured: set the account id or a custom endpoint" {
		t.Errorf("problem %q", got)
	}
	if got := textOf(mustID(t, doc, "settings-missing")); got != "Fill in the marked fields: Account ID or Custom Endpoint." {
		t.Errorf("missing fields %q", got)
	}
	form := mustID(t, doc, "settings-form")
	if v, _ := attr(form, "data-plugin"); v != "cloudflare-r2" {
		t.Errorf("form data-plugin %q", v)
	}
	if v, _ := attr(form, "data-stored-placeholder"); v != StoredSecretPlaceholder {
		t.Errorf("form data-stored-placeholder %q", v)
	}
}

// TestConfigPageUnsetSecretDoesNotSayStored: on first setup nothing is
// stored, so the secret's placeholder must not speak of a stored secret
// (the R2 schema's own placeholder does: it is for later edits).
func TestConfigPageUnsetSecretDoesNotSayStored(t *testing.T) {
	schema, err := r2Schema()
	if err != nil {
		t.Fatal(err)
	}
	api := newFakeAPI()
	api.set("/api/v1/admin/plugins/cloudflare-r2/settings", 200, map[string]any{"schema": json.RawMessage(schema), "values": map[string]any{}, "secrets_set": []string{}})
	res, _, doc := get(t, New(Options{API: api}), PluginsPath+"/cloudflare-r2")
	checkLayout(t, res, doc, "config")
	if v, _ := attr(mustID(t, doc, "field-secret_access_key"), "placeholder"); v == "" || strings.Contains(strings.ToLower(v), "stored") || strings.Contains(v, "keep") {
		t.Errorf("first-setup secret placeholder %q speaks of a stored secret", v)
	}
	if v, _ := attr(mustID(t, doc, "field-secret_access_key"), "data-placeholder"); strings.Contains(v, "keep") {
		t.Errorf("the placeholder the script restores, %q, speaks of keeping a stored secret", v)
	}
	// Missing values fall back to the schema's defaults.
	var sel string
	walk(mustID(t, doc, "field-jurisdiction"), func(n *html.Node) {
		if _, ok := attr(n, "selected"); ok {
			sel, _ = attr(n, "value")
		}
	})
	if sel != "default" {
		t.Errorf("jurisdiction %q, want the default", sel)
	}
	if byID(doc, "settings-problem") == nil {
		t.Error("no (hidden) problem banner for the script to fill")
	}
}

// otherSchema is a small provider schema with no R2 in it.
const otherSchema = `{
  "title": "Wasabi <Storage> settings",
  "type": "object",
  "x-sections": [{"id": "auth", "title": "Keys"}, {"id": "tuning", "title": "Tuning"}, {"id": "empty", "title": "Nothing here"}],
  "required": ["api_key"],
  "properties": {
    "region": {"type": "string", "title": "Region", "enum": ["us-east-1", "eu-central-1"], "x-section": "auth", "x-order": 2},
    "api_key": {"type": "string", "title": "API key", "description": "Your <b>key</b>.", "writeOnly": true, "x-section": "auth", "x-order": 1, "x-placeholder": "wk_…"},
    "parallel": {"type": "integer", "title": "Parallel uploads", "default": 4, "x-section": "tuning", "x-order": 1},
    "level": {"title": "Level", "enum": [1, 2, 3], "default": 2, "x-section": "tuning", "x-order": 2},
    "tags": {"type": "object", "title": "Tags", "x-section": "tuning", "x-order": 3},
    "nickname": {"type": ["string", "null"]},
    "verbose": {"type": "boolean", "title": "Verbose"}
  }
}`

func TestConfigPageAnotherProvider(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/plugins/wasabi/settings", 200, map[string]any{
		"schema": json.RawMessage(otherSchema), "values": map[string]any{"region": "eu-central-1", "tags": map[string]string{"env": "prod"}, "verbose": true},
		"secrets_set": []string{},
	})
	res, body, doc := get(t, New(Options{API: api}), PluginsPath+"/wasabi")
	checkLayout(t, res, doc, "config")
	got := formSections(t, doc)
	want := []section{
		{"auth", "Keys", []string{"api_key", "region"}},
		{"tuning", "Tuning", []string{"parallel", "level", "tags"}},
		{"other", "Other settings", []string{"nickname", "verbose"}},
		{"connection", "Connection", nil},
	}
	if len(got) != len(want) {
		t.Fatalf("sections %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].id != want[i].id || got[i].title != want[i].title || !slices.Equal(got[i].fields, want[i].fields) {
			t.Errorf("section %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	key := mustID(t, doc, "field-api_key")
	if typ, _ := attr(key, "type"); typ != "password" {
		t.Errorf("api_key type %q", typ)
	}
	if v, _ := attr(key, "placeholder"); v != "wk_…" {
		t.Errorf("unset secret placeholder %q", v)
	}
	if got := labelFor(doc, "field-nickname"); got != "nickname" {
		t.Errorf("untitled field label %q", got)
	}
	par := mustID(t, doc, "field-parallel")
	if typ, _ := attr(par, "type"); typ != "number" {
		t.Errorf("integer input type %q", typ)
	}
	if v, _ := attr(par, "value"); v != "4" {
		t.Errorf("integer default %q", v)
	}
	if v, _ := attr(par, "data-type"); v != "integer" {
		t.Errorf("integer data-type %q", v)
	}
	lvl := mustID(t, doc, "field-level")
	if v, _ := attr(lvl, "data-type"); lvl.Data != "select" || v != "number" {
		t.Errorf("numeric enum <%s data-type=%s>", lvl.Data, v)
	}
	if tags := mustID(t, doc, "field-tags"); tags.Data != "textarea" || !strings.Contains(textOf(tags), `"env": "prod"`) {
		t.Errorf("object field <%s> %q", tags.Data, textOf(tags))
	}
	if _, on := attr(mustID(t, doc, "field-verbose"), "checked"); !on {
		t.Error("verbose not checked")
	}
	if got := textOf(mustID(t, doc, "page-title")); got != "Wasabi <Storage> settings" {
		t.Errorf("title %q", got)
	}
	if strings.Contains(body, "<b>key</b>") || strings.Contains(body, "<Storage>") {
		t.Error("schema text rendered unescaped")
	}
	mustID(t, doc, "test-connection")
	mustID(t, doc, "save")
	if strings.Contains(strings.ToLower(body), "cloudflare") {
		t.Error("another provider's screen mentions Cloudflare")
	}
}

func TestConfigPageErrors(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/plugins/nope/settings", 404, map[string]string{"error": `plugin not installed: "nope"`})
	api.set("/api/v1/admin/plugins/bad/settings", 200, map[string]any{"schema": "not a schema", "values": map[string]any{}})
	res, _, doc := get(t, New(Options{API: api}), PluginsPath+"/nope")
	if res.StatusCode != 404 {
		t.Errorf("status %d, want 404", res.StatusCode)
	}
	if got := textOf(mustID(t, doc, "page-error")); got != `Plugin not installed: "nope"` {
		t.Errorf("error %q", got)
	}
	if byID(doc, "settings-form") != nil {
		t.Error("a form without settings")
	}
	res, _, doc = get(t, New(Options{API: api}), PluginsPath+"/bad")
	if res.StatusCode != http.StatusBadGateway {
		t.Errorf("bad schema: status %d", res.StatusCode)
	}
	if got := textOf(mustID(t, doc, "page-error")); !strings.Contains(got, "settings schema of plugin bad") {
		t.Errorf("bad schema error %q", got)
	}
}

func TestResultsPage(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/results", 200, map[string]any{"results": []map[string]any{
		{"id": "r1", "path": "images/demo/r1.png", "storage": "cloudflare-r2", "url": "https://pub-1.r2.dev/magicads/images/demo/r1.png", "size": 2048, "created_at": "2026-01-02T03:04:05Z"},
		{"id": "r2", "path": "images/demo/r2.png", "storage": "local", "url": "/api/v1/results/r2/content", "size": 10, "created_at": "2026-01-02T03:04:06Z"},
		{"id": "v1", "path": "videos/demo/v1.mp4", "storage": "local", "url": "/api/v1/results/v1/content", "size": 10},
	}, "next_cursor": "abc"})
	api.set("/api/v1/results?cursor=abc", 200, map[string]any{"results": []any{}, "next_cursor": ""})
	h := New(Options{API: api})
	res, _, doc := get(t, h, ResultsPath)
	checkLayout(t, res, doc, "results")
	if n := mustID(t, doc, "generate"); n.Data != "button" || textOf(n) != "Generate demo result" {
		t.Errorf("#generate <%s> %q", n.Data, textOf(n))
	}
	if typ, _ := attr(mustID(t, doc, "upload-file"), "type"); typ != "file" {
		t.Errorf("upload input type %q", typ)
	}
	mustID(t, doc, "upload")
	imgs := byClass(doc, "result-image")
	if len(imgs) != 2 {
		t.Fatalf("%d result images, want 2", len(imgs))
	}
	for i, want := range [][2]string{{"r1", "https://pub-1.r2.dev/magicads/images/demo/r1.png"}, {"r2", "/api/v1/results/r2/content"}} {
		id, _ := attr(imgs[i], "data-id")
		src, _ := attr(imgs[i], "src")
		if imgs[i].Data != "img" || id != want[0] || src != want[1] {
			t.Errorf("image %d: <%s data-id=%q src=%q>, want %v", i, imgs[i].Data, id, src, want)
		}
	}
	r1 := mustID(t, doc, "result-r1")
	if got := textOf(byClass(r1, "result-storage")[0]); got != "cloudflare-r2" {
		t.Errorf("storage %q", got)
	}
	if got := textOf(byClass(r1, "result-path")[0]); got != "images/demo/r1.png" {
		t.Errorf("path %q", got)
	}
	if got := textOf(byClass(r1, "result-size")[0]); got != "2.0 KiB" {
		t.Errorf("size %q", got)
	}
	if d := mustID(t, doc, "delete-r1"); textOf(d) != "Delete" || !hasClass(d, "result-delete") {
		t.Errorf("delete button %q", textOf(d))
	}
	if v := byClass(doc, "result-video"); len(v) != 1 {
		t.Errorf("%d videos, want 1", len(v))
	}
	if href, _ := attr(mustID(t, doc, "results-next"), "href"); href != "/app/results?cursor=abc" {
		t.Errorf("next page %q", href)
	}
	_, _, doc = get(t, h, ResultsPath+"?cursor=abc")
	mustID(t, doc, "no-results")
	mustID(t, doc, "results-first")
}

func TestResultsPageEscapesHostileURLs(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/results", 200, map[string]any{"results": []map[string]any{
		{"id": `"><script>x</script>`, "path": "<script>alert(1)</script>", "storage": "<b>s</b>", "url": "javascript:alert(1)"},
	}})
	_, body, doc := get(t, New(Options{API: api}), ResultsPath)
	for _, raw := range []string{"<script>x", "<script>alert", "<b>s"} {
		if strings.Contains(body, raw) {
			t.Errorf("%q rendered unescaped", raw)
		}
	}
	noScriptURLs(t, doc)
}

// noScriptURLs fails if any href or src is a javascript: URL.
func noScriptURLs(t *testing.T, doc *html.Node) {
	t.Helper()
	walk(doc, func(n *html.Node) {
		for _, a := range n.Attr {
			if (a.Key == "href" || a.Key == "src") && strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "javascript:") {
				t.Errorf("<%s %s=%q>", n.Data, a.Key, a.Val)
			}
		}
	})
}

func TestPagesCallTheAPIAsTheVisitor(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/storage", 200, map[string]any{"default": "local", "options": []map[string]string{{"id": "local", "name": "Local server (this machine)"}}})
	refresh := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "magicads_session", Value: "renewed"})
		api.ServeHTTP(w, r)
	})
	h := New(Options{API: refresh})
	req := httptest.NewRequest(http.MethodGet, StoragePath, nil)
	req.Header.Set("Cookie", "magicads_session=s1; magicads_csrf=c1")
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Accept-Encoding", "gzip")
	req.RemoteAddr = "192.0.2.7:1234"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if len(api.seen) != 1 {
		t.Fatalf("%d API calls, want 1", len(api.seen))
	}
	sub := api.seen[0]
	if sub.Method != http.MethodGet || sub.URL.Path != "/api/v1/admin/storage" {
		t.Errorf("API call %s %s", sub.Method, sub.URL)
	}
	if c, err := sub.Cookie("magicads_session"); err != nil || c.Value != "s1" {
		t.Errorf("session cookie not forwarded: %v %v", c, err)
	}
	if got := sub.Header.Get("Authorization"); got != "Bearer tok" {
		t.Errorf("Authorization %q", got)
	}
	if got := sub.Header.Get("Accept-Encoding"); got != "" {
		t.Errorf("Accept-Encoding %q forwarded", got)
	}
	if sub.RemoteAddr != "192.0.2.7:1234" {
		t.Errorf("RemoteAddr %q", sub.RemoteAddr)
	}
	if got := rec.Header().Get("Set-Cookie"); !strings.Contains(got, "magicads_session=renewed") {
		t.Errorf("the API's Set-Cookie was not passed on: %q", got)
	}

	// The API's own refusal is the page's answer.
	api.set("/api/v1/admin/storage", 403, map[string]string{"error": "admins only"})
	res, _, doc := get(t, New(Options{API: api}), StoragePath)
	if res.StatusCode != 403 || textOf(mustID(t, doc, "page-error")) != "Admins only" {
		t.Errorf("refusal: %d %q", res.StatusCode, textOf(mustID(t, doc, "page-error")))
	}
}

func TestRoutes(t *testing.T) {
	h := New(Options{API: newFakeAPI()})
	for target, want := range map[string]string{"/app/": ResultsPath, "/app/admin/": StoragePath, PluginsPath + "/": PluginsPath} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != want {
			t.Errorf("GET %s: %d to %q, want a redirect to %s", target, rec.Code, rec.Header().Get("Location"), want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, StoragePath, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST a page: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/app/nowhere", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("unknown page: %d", rec.Code)
	}
	// Without an API the pages say so instead of panicking.
	res, _, doc := get(t, New(Options{}), ResultsPath)
	if res.StatusCode != 500 || !strings.Contains(textOf(mustID(t, doc, "page-error")), "Options.API") {
		t.Errorf("no API: %d", res.StatusCode)
	}
}

// TestPluginsPageOffersReinstall: a plugin whose install record was refused
// gets a Reinstall button (an install of the catalog's version) besides
// Uninstall, and no Update.
func TestPluginsPageOffersReinstall(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/plugins", 200, map[string]any{"plugins": []map[string]any{
		{"id": "refused", "name": "Refused", "version": "1.0.0", "installed_version": "9.9.9", "state": "failed", "cta": "uninstall", "reinstall": true,
			"message": "install record refused: reinstall the plugin from the marketplace"},
	}})
	_, _, doc := get(t, New(Options{API: api}), PluginsPath)
	n := mustID(t, doc, "reinstall-refused")
	if action, _ := attr(n, "data-action"); textOf(n) != "Reinstall" || action != "install" {
		t.Errorf("reinstall button %q %q", textOf(n), action)
	}
	if byID(doc, "uninstall-refused") == nil || byID(doc, "update-refused") != nil {
		t.Error("a refused record's card must offer Uninstall and no Update")
	}
}

// TestPluginsPageShowsCatalogError: with the catalog refused the page lists
// the installed plugins (Configure, Uninstall) under a warning naming why.
func TestPluginsPageShowsCatalogError(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/plugins", 200, map[string]any{
		"catalog_error": "catalog index expired at 2026-01-01T00:00:00Z",
		"plugins":       []map[string]any{{"id": "r2", "name": "R2", "version": "1.0.0", "installed_version": "1.0.0", "state": "installed", "cta": "uninstall"}},
	})
	_, _, doc := get(t, New(Options{API: api}), PluginsPath)
	if n := mustID(t, doc, "catalog-error"); !strings.Contains(textOf(n), "expired at 2026-01-01") {
		t.Errorf("catalog warning %q", textOf(n))
	}
	if byID(doc, "uninstall-r2") == nil || byID(doc, "configure-r2") == nil {
		t.Error("the installed plugin lost its buttons")
	}
}
