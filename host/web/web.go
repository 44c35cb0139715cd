// Package web serves the MagicAds admin console and results pages: small
// server-rendered HTML pages whose data comes from the host's JSON API
// (called in-process with the visitor's own credentials) and whose actions
// are inline vanilla JavaScript calling the same API with fetch.
//
// Pages (all GET):
//
//	/app/admin/general                  Default Storage
//	/app/admin/general/storage          Storage overview: where results are, failed jobs, bulk offload and bring back
//	/app/admin/general/cluster          the host nodes sharing the database: live or down, versions, plugins
//	/app/admin/general/plugins          marketplace cards
//	/app/admin/general/plugins/{id}     a plugin's config screen, rendered from its settings schema
//	/app/results                        generate, upload, list and delete results
//	/app/favicon.svg                    the console's icon
//
// Every page but the error page reads GET /api/v1/admin/storage too: when
// the Default Storage is failing or not an option, a banner names the
// cause and the fix. A page asked for with the header "X-Console-Fragment:
// main" is answered with its <main> element only: the script re-renders a
// page in place from it after an action.
//
// The host wraps the handler with its session check; this package does no
// authentication of its own. Every page reads its data through Options.API,
// so the API's own admin checks apply to the pages too.
package web

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Paths of the pages this package serves and of the auth pages it links to.
const (
	// StoragePath is the Default Storage page.
	StoragePath = "/app/admin/general"
	// PluginsPath is the marketplace page.
	PluginsPath = "/app/admin/general/plugins"
	// ResultsPath is the results page.
	ResultsPath = "/app/results"
	// LoginPath is where the console goes after logging out.
	LoginPath = "/login"
	// LogoutPath is posted to (with the CSRF header) to log out.
	LogoutPath = "/logout"
	// CSRFCookie is the cookie whose value is sent as the X-CSRF-Token header.
	CSRFCookie = "magicads_csrf"
	// FaviconPath is the console's icon.
	FaviconPath = "/app/favicon.svg"
	// FragmentHeader, set to "main", asks for a page's <main> element only.
	FragmentHeader = "X-Console-Fragment"
)

// StoredSecretPlaceholder is the placeholder of a write-only field whose
// value is stored.
const StoredSecretPlaceholder = "•••••••• (stored — leave blank to keep)"

// UnsetSecretPlaceholder is the placeholder of a write-only field with no
// stored value, when the schema's own placeholder talks about a stored one.
const UnsetSecretPlaceholder = "Not set yet: enter it to store it"

//go:embed templates/*.html assets/app.css assets/app.js assets/favicon.svg
var files embed.FS

// Options configure the pages.
type Options struct {
	// API serves the host's JSON API (/api/v1/…), with its authentication
	// in front of it exactly as it is mounted; the host's root handler
	// works too. Pages call it in-process, forwarding the visitor's request
	// headers (cookies, Authorization) and context.
	API http.Handler
	// Logger receives page failures; nil discards them.
	Logger *slog.Logger
	// Now is the clock the pages say "3 s ago" by; nil means time.Now.
	Now func() time.Time
}

// handler serves the pages.
type handler struct {
	opts  Options
	mux   *http.ServeMux
	pages map[string]*template.Template
	css   template.CSS
	js    template.JS
	icon  []byte
}

// New returns the handler serving the console pages.
func New(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &handler{opts: opts, mux: http.NewServeMux(), pages: map[string]*template.Template{}}
	css, err := files.ReadFile("assets/app.css")
	if err != nil {
		panic("web: embedded app.css: " + err.Error())
	}
	js, err := files.ReadFile("assets/app.js")
	if err != nil {
		panic("web: embedded app.js: " + err.Error())
	}
	icon, err := files.ReadFile("assets/favicon.svg")
	if err != nil {
		panic("web: embedded favicon.svg: " + err.Error())
	}
	// Both are this package's own embedded files, never user data.
	h.css, h.js, h.icon = template.CSS(css), template.JS(js), icon
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html"))
	for _, name := range []string{"storage", "overview", "cluster", "plugins", "config", "results", "error"} {
		h.pages[name] = template.Must(template.Must(layout.Clone()).ParseFS(files, "templates/"+name+".html"))
	}

	h.mux.HandleFunc("GET /app/{$}", redirect(ResultsPath))
	h.mux.HandleFunc("GET /app/admin/{$}", redirect(StoragePath))
	h.mux.HandleFunc("GET /app/admin/general/{$}", redirect(StoragePath))
	h.mux.HandleFunc("GET /app/admin/general/plugins/{$}", redirect(PluginsPath))
	h.mux.HandleFunc("GET /app/results/{$}", redirect(ResultsPath))
	h.mux.HandleFunc("GET "+StoragePath, h.storagePage)
	h.mux.HandleFunc("GET "+OverviewPath, h.overviewPage)
	h.mux.HandleFunc("GET "+ClusterPath, h.clusterPage)
	h.mux.HandleFunc("GET "+PluginsPath, h.pluginsPage)
	h.mux.HandleFunc("GET "+PluginsPath+"/{id}", h.configPage)
	h.mux.HandleFunc("GET "+ResultsPath, h.resultsPage)
	h.mux.HandleFunc("GET "+FaviconPath, h.favicon)
	return h
}

// Favicon serves the console's icon, for mounting at /favicon.ico outside
// the console's session check (a login page asks for it too).
func Favicon() http.Handler {
	icon, err := files.ReadFile("assets/favicon.svg")
	if err != nil {
		panic("web: embedded favicon.svg: " + err.Error())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serveIcon(w, icon) })
}

// favicon serves the console's icon.
func (h *handler) favicon(w http.ResponseWriter, r *http.Request) { serveIcon(w, h.icon) }

// serveIcon writes the SVG icon, cacheable for a day.
func serveIcon(w http.ResponseWriter, icon []byte) {
	hd := w.Header()
	hd.Set("Content-Type", "image/svg+xml")
	hd.Set("Cache-Control", "public, max-age=86400")
	hd.Set("Content-Security-Policy", "default-src 'none'")
	_, _ = w.Write(icon)
}

// ServeHTTP serves the pages with their security headers.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// redirect answers a permanent redirect to the canonical page path.
func redirect(to string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, to, http.StatusMovedPermanently)
	}
}

// funcs are the template helpers.
var funcs = template.FuncMap{
	"stateLabel": func(s string) string {
		switch s {
		case "not_installed":
			return "Not installed"
		case "installed":
			return "Installed"
		case "failed":
			return "Failed"
		case "":
			return "Unknown"
		}
		return s
	},
	"isVideo":           func(p string) bool { return strings.HasPrefix(p, "videos/") },
	"humanSize":         humanSize,
	"add":               func(a, b int) int { return a + b },
	"add64":             func(a, b int64) int64 { return a + b },
	"bytes":             func(n int64) string { return humanSize(json.Number(strconv.FormatInt(n, 10))) },
	"storedPlaceholder": func() string { return StoredSecretPlaceholder },
	"sentence":          sentence,
	"statusLabel":       statusLabel,
	"fixLabel":          fixLabel,
	"when":              when,
	"join":              func(s []string) string { return strings.Join(s, ",") },
	"r2devWarning":      func() string { return R2DevWarning },
}

// sentence returns a message starting with a capital letter.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || !unicode.IsLower(r) {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

// fixLabel is the text of a link to a fix: which page it opens.
func fixLabel(u string) string {
	path := u
	if p, err := url.Parse(u); err == nil {
		path = p.Path
	}
	switch {
	case path == StoragePath:
		return "Open Default Storage"
	case path == PluginsPath:
		return "Open Plugins"
	case strings.HasPrefix(path, PluginsPath+"/"):
		return "Open its settings"
	case path == ResultsPath:
		return "Open Results"
	}
	return "Open the fix"
}

// when formats an RFC 3339 time for a person; other text is returned as
// it is.
func when(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// page is what the layout renders.
type page struct {
	// Name selects the page script (body data-page).
	Name string
	// Title is the page heading and the document title.
	Title string
	// Nav is the active navigation entry.
	Nav string
	// Crumbs lead from the console to this page.
	Crumbs []crumb
	// Nonce allows the inline style and script.
	Nonce string
	CSS   template.CSS
	JS    template.JS
	// Error is the host's own words when the page's data could not be read.
	Error string
	// Problem is the Default Storage problem the banner shows, if any.
	Problem *problemJSON
	// Data is the page's data.
	Data any
}

// pluginsView is the marketplace page's data.
type pluginsView struct {
	Cards []cardView
	// CatalogError says why the catalog's plugins are missing (only the
	// installed ones are listed then).
	CatalogError string
}

// crumb is one breadcrumb.
type crumb struct {
	Title, URL string
}

// render writes a page with the given status.
func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, tmpl string, p page) {
	nonce := newNonce()
	p.Nonce, p.CSS, p.JS = nonce, h.css, h.js
	var buf bytes.Buffer
	name := "layout.html"
	if r.Header.Get(FragmentHeader) == "main" {
		name = "main"
	}
	if err := h.pages[tmpl].ExecuteTemplate(&buf, name, p); err != nil {
		h.opts.Logger.Error("rendering a console page failed", "page", tmpl, "path", r.URL.Path, "error", err)
		http.Error(w, "rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Add("Vary", FragmentHeader)
	hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'nonce-"+nonce+"'; style-src 'nonce-"+nonce+"'; "+
		"img-src 'self' data: blob: https: http:; media-src 'self' data: blob: https: http:; connect-src 'self'; "+
		"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderAPIError renders the error page for a failed API call, in the
// host's own words and with the API's status.
func (h *handler) renderAPIError(w http.ResponseWriter, r *http.Request, p page, err error) {
	status := http.StatusBadGateway
	var ae *apiError
	if errors.As(err, &ae) {
		status = ae.Status
	} else {
		h.opts.Logger.Error("a console page could not read its data", "path", r.URL.Path, "error", err)
	}
	p.Error = err.Error()
	if p.Name == "" {
		p.Name = "error"
	}
	h.render(w, r, status, "error", p)
}

// newNonce returns a fresh CSP nonce.
func newNonce() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Page names: each is the page's nav entry, title and last breadcrumb.
const (
	storageTitle = "Default Storage"
	pluginsTitle = "Plugins"
	resultsTitle = "Results"
)

// settingsCrumbs lead to General Settings.
var settingsCrumbs = []crumb{{"Admin", StoragePath}, {"General Settings", StoragePath}}

// storageHealth reads GET /api/v1/admin/storage for the banner and the
// cards; nil when it cannot be read (a visitor who is not an admin, or a
// host failure the page's own data will show).
func (h *handler) storageHealth(w http.ResponseWriter, r *http.Request) *storageJSON {
	var body storageJSON
	if err := h.apiGet(w, r, "/api/v1/admin/storage", &body); err != nil {
		h.opts.Logger.Debug("a console page could not read the storage health", "path", r.URL.Path, "error", err)
		return nil
	}
	return &body
}

// problemOf returns the storage problem the banner shows, if any.
func problemOf(s *storageJSON) *problemJSON {
	if s == nil || s.Problem == nil {
		return nil
	}
	p := *s.Problem
	if p.Name == "" {
		p.Name = p.Provider
	}
	return &p
}

// storagePage renders Default Storage from GET /api/v1/admin/storage.
func (h *handler) storagePage(w http.ResponseWriter, r *http.Request) {
	p := page{Name: "storage", Title: storageTitle, Nav: "storage",
		Crumbs: append(slices.Clip(settingsCrumbs), crumb{storageTitle, ""})}
	var body storageJSON
	if err := h.apiGet(w, r, "/api/v1/admin/storage", &body); err != nil {
		h.renderAPIError(w, r, p, err)
		return
	}
	p.Problem = problemOf(&body)
	p.Data = newStorageView(body)
	h.render(w, r, http.StatusOK, "storage", p)
}

// pluginsPage renders the marketplace cards from GET /api/v1/admin/plugins.
func (h *handler) pluginsPage(w http.ResponseWriter, r *http.Request) {
	p := page{Name: "plugins", Title: pluginsTitle, Nav: "plugins",
		Crumbs: append(slices.Clip(settingsCrumbs), crumb{pluginsTitle, ""})}
	var body struct {
		Plugins      []cardJSON `json:"plugins"`
		CatalogError string     `json:"catalog_error"`
	}
	if err := h.apiGet(w, r, "/api/v1/admin/plugins", &body); err != nil {
		h.renderAPIError(w, r, p, err)
		return
	}
	health := h.storageHealth(w, r)
	p.Problem = problemOf(health)
	only := h.onlyThere(w, r)
	cards := make([]cardView, 0, len(body.Plugins))
	for _, c := range body.Plugins {
		cards = append(cards, newCardView(c).withHealth(health).withOnlyThere(only[c.ID], only != nil))
	}
	p.Data = pluginsView{Cards: cards, CatalogError: body.CatalogError}
	h.render(w, r, http.StatusOK, "plugins", p)
}

// configPage renders a plugin's config screen from
// GET /api/v1/admin/plugins/{id}/settings.
func (h *handler) configPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p := page{Name: "config", Title: id, Nav: "plugins", Crumbs: append(slices.Clip(settingsCrumbs), crumb{pluginsTitle, PluginsPath})}
	var body settingsJSON
	if err := h.apiGet(w, r, "/api/v1/admin/plugins/"+url.PathEscape(id)+"/settings", &body); err != nil {
		h.renderAPIError(w, r, p, err)
		return
	}
	form, err := buildForm(id, body.Schema, body.Values, body.SecretsSet)
	if err != nil {
		h.opts.Logger.Error("a plugin's settings schema cannot be rendered", "plugin", id, "error", err)
		h.renderAPIError(w, r, p, &apiError{Status: http.StatusBadGateway, Message: err.Error()})
		return
	}
	form.Problem = body.Problem
	form.markMissing()
	health := h.storageHealth(w, r)
	p.Problem = problemOf(health)
	if health != nil {
		for _, o := range health.Options {
			if o.ID == id && (o.Status == "degraded" || o.Status == "failing") {
				form.Health = &o
			}
		}
	}
	p.Title, p.Data = form.Title, form
	p.Crumbs = append(p.Crumbs, crumb{form.Title, ""})
	h.render(w, r, http.StatusOK, "config", p)
}

// resultsPage renders the results from GET /api/v1/results.
func (h *handler) resultsPage(w http.ResponseWriter, r *http.Request) {
	p := page{Name: "results", Title: resultsTitle, Nav: "results"}
	cursor := r.URL.Query().Get("cursor")
	path := "/api/v1/results"
	if cursor != "" {
		path += "?cursor=" + url.QueryEscape(cursor)
	}
	var body struct {
		Results    []resultJSON `json:"results"`
		NextCursor string       `json:"next_cursor"`
	}
	if err := h.apiGet(w, r, path, &body); err != nil {
		h.renderAPIError(w, r, p, err)
		return
	}
	health := h.storageHealth(w, r)
	p.Problem = problemOf(health)
	pi := newProviderInfo(health)
	if unnamed(body.Results, pi) {
		h.addPluginNames(w, r, pi)
	}
	v := resultsView{Paged: cursor != ""}
	for _, res := range body.Results {
		v.Results = append(v.Results, newResultView(res, pi))
	}
	if body.NextCursor != "" {
		v.NextURL = ResultsPath + "?cursor=" + url.QueryEscape(body.NextCursor)
	}
	p.Data = v
	h.render(w, r, http.StatusOK, "results", p)
}

// unnamed is true when a result lives on, or is queued for, a provider the
// storage API did not name (an uninstalled one).
func unnamed(rs []resultJSON, pi providerInfo) bool {
	for _, r := range rs {
		if _, ok := pi.names[r.Storage]; !ok && r.Storage != "" {
			return true
		}
		if u := r.Upload; u != nil && u.Provider != "" {
			if _, ok := pi.names[u.Provider]; !ok {
				return true
			}
		}
	}
	return false
}

// addPluginNames adds the marketplace's plugin names (an uninstalled
// provider's too) to pi; nothing when the plugins cannot be read.
func (h *handler) addPluginNames(w http.ResponseWriter, r *http.Request, pi providerInfo) {
	var body struct {
		Plugins []cardJSON `json:"plugins"`
	}
	if err := h.apiGet(w, r, "/api/v1/admin/plugins", &body); err != nil {
		h.opts.Logger.Debug("the results page could not read the plugin names", "error", err)
		return
	}
	for _, c := range body.Plugins {
		if _, ok := pi.names[c.ID]; !ok && c.Name != "" {
			pi.names[c.ID] = c.Name
		}
	}
}
