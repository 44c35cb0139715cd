// Command devmarket is the development marketplace: it serves a catalog
// written by scripts/catalog (any number of plugins) and a minimal checkout that issues purchase
// receipts signed with the dev marketplace key.
//
//	go run ./scripts/devmarket --dir OUT_DIR [--addr 127.0.0.1:8090] [--keys DIR]
//
// Routes:
//
//	GET  /healthz                         200 "ok"
//	GET  /                                the catalog's plugins, its serial and
//	                                      expiry (and a warning once expired)
//	GET  /index.json, /index.json.sig, /marketplace.pub, /SHA256SUMS,
//	     /<archive>.tar.gz[.sha256]        files of OUT_DIR (nothing else is served)
//	GET  /checkout/{id}?return=URL         checkout page: name, price, "Complete purchase";
//	                                      for a free plugin, a page saying no purchase is needed
//	POST /checkout/{id} (form: return, buyer)
//	                                      signs a receipt and shows it with a link back
//	                                      to return?receipt=…; with Accept:
//	                                      application/json it answers
//	                                      {"plugin_id","receipt","return_url"};
//	                                      409 and no receipt for a free plugin
//
// return must be an absolute http(s) URL. --keys defaults to
// $MAGICADS_DEV_KEYS, else $HOME/.config/magicads/dev-marketplace, the key
// pair scripts/catalog created; OUT_DIR/marketplace.pub must be its public
// key. Anyone who can reach the server can get a receipt: it is for
// development only and listens on 127.0.0.1 by default.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/magicads/r2storage/shared/catalog"
)

// defaultAddr is the listen address; scripts/catalog's default checkout base points here.
const defaultAddr = "127.0.0.1:8090"

// maxFormBytes caps a checkout form.
const maxFormBytes = 64 << 10

// defaultBuyer is the receipt's buyer when the form leaves it blank.
const defaultBuyer = "developer@example.com"

// receiptLicense is the license every dev receipt grants.
const receiptLicense = "regular"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devmarket:", err)
		os.Exit(1)
	}
}

// defaultKeysDir is $MAGICADS_DEV_KEYS, else $HOME/.config/magicads/dev-marketplace.
func defaultKeysDir(getenv func(string) string) string {
	if d := getenv("MAGICADS_DEV_KEYS"); d != "" {
		return d
	}
	home := getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".config", "magicads", "dev-marketplace")
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fl := flag.NewFlagSet("devmarket", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("dir", "", "catalog folder written by scripts/catalog (required)")
	addr := fl.String("addr", defaultAddr, "listen address")
	keys := fl.String("keys", defaultKeysDir(getenv), "folder of the dev marketplace.key")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("--dir is required (the OUT_DIR of scripts/catalog)")
	}
	if fl.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	if *keys == "" {
		return errors.New("--keys is required (no MAGICADS_DEV_KEYS or HOME)")
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	s, err := newServer(*dir, *keys, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      10 * time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	base := "http://" + ln.Addr().String()
	log.Info("devmarket listening", "url", base, "index", base+"/"+catalog.IndexFile, "dir", s.dir, "key", catalog.KeyID(s.pub))
	if idx, err := s.loadIndex(ctx); err != nil {
		log.Warn("the catalog can't be read; hosts will refuse it", "error", err)
	} else if idx.Expired(s.now()) {
		log.Warn("the catalog has expired: hosts refuse it; rerun scripts/catalog", "serial", idx.Serial, "expires", idx.Expires)
	} else {
		log.Info("catalog", "serial", idx.Serial, "expires", idx.Expires)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("devmarket stopped")
	return nil
}

// server serves one catalog folder and its checkout.
type server struct {
	dir   string
	priv  ed25519.PrivateKey
	pub   ed25519.PublicKey
	log   *slog.Logger
	now   func() time.Time
	pages *template.Template
}

// newServer checks dir and the key pair in keysDir: the private key loads,
// it is not inside dir, and dir/marketplace.pub is its public key.
func newServer(dir, keysDir string, log *slog.Logger) (*server, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("catalog folder: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("catalog folder %s is not a folder", abs)
	}
	inside, err := isInside(keysDir, abs)
	if err != nil {
		return nil, err
	}
	if inside {
		return nil, fmt.Errorf("the key folder %s is inside the served folder %s; move the keys out", keysDir, abs)
	}
	priv, err := catalog.LoadPrivateKey(filepath.Join(keysDir, catalog.PrivateKeyFile))
	if err != nil {
		return nil, fmt.Errorf("%w (run scripts/catalog first, or pass --keys)", err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	served, err := catalog.LoadPublicKeys(filepath.Join(abs, catalog.PublicKeyFile))
	if err != nil {
		return nil, fmt.Errorf("%w (run scripts/catalog %s first)", err, abs)
	}
	if len(served) != 1 || !served[0].Equal(pub) {
		return nil, fmt.Errorf("%s is not the public key of %s: the catalog was signed with another key; rerun scripts/catalog or pass --keys", filepath.Join(abs, catalog.PublicKeyFile), filepath.Join(keysDir, catalog.PrivateKeyFile))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pages, err := template.New("pages").Parse(pagesHTML)
	if err != nil {
		return nil, err
	}
	return &server{dir: abs, priv: priv, pub: pub, log: log, now: time.Now, pages: pages}, nil
}

// isInside reports whether path is dir or inside it (symlinks resolved where they exist).
func isInside(path, dir string) (bool, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return false, err
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	d, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false, err
	}
	rel, err := filepath.Rel(d, p)
	if err != nil {
		return false, nil
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))), nil
}

// handler routes the server's requests.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /{file}", s.serveFile)
	mux.HandleFunc("GET /checkout/{id}", s.checkoutPage)
	mux.HandleFunc("POST /checkout/{id}", s.checkoutComplete)
	return securityHeaders(mux)
}

// securityHeaders sets headers that keep the pages inert outside this origin.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// servedFileRE matches the archives and checksum files scripts/package writes.
var servedFileRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*\.tar\.gz(?:\.sha256)?$`)

// contentType returns the Content-Type of a served file, or "" if the name is not served.
func contentType(name string) string {
	switch {
	case name == catalog.IndexFile:
		return "application/json"
	case name == catalog.IndexSignatureFile, name == catalog.PublicKeyFile, name == "SHA256SUMS":
		return "text/plain; charset=utf-8"
	case servedFileRE.MatchString(name) && strings.HasSuffix(name, ".sha256"):
		return "text/plain; charset=utf-8"
	case servedFileRE.MatchString(name):
		return "application/gzip"
	}
	return ""
}

// serveFile serves an allow-listed file of the catalog folder.
func (s *server) serveFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	ct := contentType(name)
	if ct == "" || strings.ContainsAny(name, `/\`) {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, fi.ModTime(), f)
}

// loadIndex reads and verifies the catalog on every request, so a rebuilt
// catalog is served at once.
func (s *server) loadIndex(ctx context.Context) (*catalog.Index, error) {
	p := filepath.ToSlash(filepath.Join(s.dir, catalog.IndexFile))
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return catalog.Fetch(ctx, nil, (&url.URL{Scheme: "file", Path: p}).String(), []ed25519.PublicKey{s.pub})
}

// pluginView is what the pages show of a plugin.
type pluginView struct {
	ID, Name, Description, Version, Price string
	Free, FreeForExtendedLicense          bool
}

func viewOf(p *catalog.Plugin) pluginView {
	v := pluginView{ID: p.ID, Name: p.Name, Description: p.Description, Free: p.Pricing.Model == catalog.PricingFree, FreeForExtendedLicense: p.Pricing.FreeForExtendedLicense}
	if latest, ok := p.Latest(); ok {
		v.Version = latest.Version
	}
	switch {
	case p.Pricing.Price != nil:
		v.Price = p.Pricing.Price.Amount + " " + p.Pricing.Price.Currency
	case v.Free:
		v.Price = "Free"
	}
	return v
}

// home lists the catalog's plugins.
func (s *server) home(w http.ResponseWriter, r *http.Request) {
	idx, err := s.loadIndex(r.Context())
	if err != nil {
		s.fail(w, http.StatusInternalServerError, fmt.Sprintf("The catalog can't be read: %v", err))
		return
	}
	views := make([]pluginView, 0, len(idx.Plugins))
	for i := range idx.Plugins {
		views = append(views, viewOf(&idx.Plugins[i]))
	}
	s.render(w, http.StatusOK, "home", map[string]any{"Plugins": views, "KeyID": catalog.KeyID(s.pub),
		"Serial": idx.Serial, "Expires": idx.Expires.UTC().Format(time.RFC3339), "Expired": idx.Expired(s.now())})
}

// plugin finds the checkout's plugin, answering 404 or 500 itself when it can't.
func (s *server) plugin(w http.ResponseWriter, r *http.Request) (*catalog.Plugin, bool) {
	id := r.PathValue("id")
	if !catalog.ValidID(id) {
		s.fail(w, http.StatusNotFound, "There is no such plugin.")
		return nil, false
	}
	idx, err := s.loadIndex(r.Context())
	if err != nil {
		s.log.Error("catalog unreadable", "err", err)
		s.fail(w, http.StatusInternalServerError, fmt.Sprintf("The catalog can't be read: %v", err))
		return nil, false
	}
	p, ok := idx.Plugin(id)
	if !ok {
		s.fail(w, http.StatusNotFound, fmt.Sprintf("The catalog has no plugin %q.", id))
		return nil, false
	}
	return p, true
}

// checkReturn accepts "" or an absolute http(s) URL with a host and no user info.
func checkReturn(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > 2048 {
		return errors.New("the return URL is too long")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("the return URL %q must be an absolute http(s) URL", s)
	}
	return nil
}

// withReceipt appends receipt=… to the return URL's query.
func withReceipt(ret, receipt string) string {
	u, err := url.Parse(ret)
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Set("receipt", receipt)
	u.RawQuery = q.Encode()
	return u.String()
}

// checkoutPage shows the plugin, its price and the "Complete purchase" form.
func (s *server) checkoutPage(w http.ResponseWriter, r *http.Request) {
	ret := r.URL.Query().Get("return")
	if err := checkReturn(ret); err != nil {
		s.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	p, ok := s.plugin(w, r)
	if !ok {
		return
	}
	if p.Pricing.Model == catalog.PricingFree {
		s.render(w, http.StatusOK, "free", map[string]any{"Plugin": viewOf(p), "Return": ret})
		return
	}
	s.render(w, http.StatusOK, "checkout", map[string]any{
		"Plugin": viewOf(p), "Return": ret, "Action": "/checkout/" + p.ID, "Buyer": defaultBuyer,
	})
}

// checkoutResult is the JSON answer of a completed checkout.
type checkoutResult struct {
	PluginID  string `json:"plugin_id"`
	Receipt   string `json:"receipt"`
	ReturnURL string `json:"return_url,omitempty"`
}

// checkoutComplete signs a receipt for the plugin and shows it.
func (s *server) checkoutComplete(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.fail(w, http.StatusBadRequest, "The form can't be read.")
		return
	}
	ret := r.PostForm.Get("return")
	if ret == "" {
		ret = r.URL.Query().Get("return")
	}
	if err := checkReturn(ret); err != nil {
		s.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	buyer := strings.TrimSpace(r.PostForm.Get("buyer"))
	if buyer == "" {
		buyer = defaultBuyer
	}
	if len(buyer) > 256 {
		s.fail(w, http.StatusBadRequest, "The buyer is too long.")
		return
	}
	p, ok := s.plugin(w, r)
	if !ok {
		return
	}
	if p.Pricing.Model == catalog.PricingFree {
		s.fail(w, http.StatusConflict, fmt.Sprintf("%s is free: no purchase is needed, so no receipt is issued. Install it from the MagicAds plugins page.", p.Name))
		return
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		s.fail(w, http.StatusInternalServerError, "No randomness for the receipt.")
		return
	}
	rc := catalog.Receipt{PluginID: p.ID, Buyer: buyer, License: receiptLicense, IssuedAt: s.now().UTC().Truncate(time.Second), Nonce: hex.EncodeToString(nonce[:])}
	receipt, err := catalog.SignReceipt(s.priv, rc)
	if err != nil {
		s.log.Error("sign receipt", "err", err)
		s.fail(w, http.StatusInternalServerError, "The receipt can't be signed.")
		return
	}
	s.log.Info("receipt issued", "plugin", rc.PluginID, "buyer", rc.Buyer, "nonce", rc.Nonce)
	back := ""
	if ret != "" {
		back = withReceipt(ret, receipt)
	}
	w.Header().Set("Cache-Control", "no-store")
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(checkoutResult{PluginID: p.ID, Receipt: receipt, ReturnURL: back})
		return
	}
	s.render(w, http.StatusOK, "done", map[string]any{"Plugin": viewOf(p), "Receipt": receipt, "Back": back, "Buyer": buyer})
}

// fail renders an error page.
func (s *server) fail(w http.ResponseWriter, status int, msg string) {
	s.render(w, status, "error", map[string]any{"Status": status, "Message": msg})
}

// render executes one page template.
func (s *server) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.pages.ExecuteTemplate(w, name, data); err != nil {
		s.log.Error("render", "page", name, "err", err)
	}
}

// pagesHTML holds the server-rendered pages.
const pagesHTML = `
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} · MagicAds dev marketplace</title>
<style>
body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1f2328}
.card{border:1px solid #d0d7de;border-radius:8px;padding:1.5rem}
.price{font-size:1.5rem;font-weight:600}
button,.button{background:#1f6feb;color:#fff;border:0;border-radius:6px;padding:.6rem 1.2rem;font-size:1rem;text-decoration:none;display:inline-block;cursor:pointer}
textarea{width:100%;font-family:monospace;font-size:.8rem}
.note{color:#59636e}
.warning{color:#b42318}
label{display:block;margin:1rem 0 .3rem}
input{width:100%;padding:.4rem;font-size:1rem;box-sizing:border-box}
</style></head><body>
<p class="note">MagicAds dev marketplace — test purchases only, no payment is taken.</p>{{end}}

{{define "foot"}}</body></html>{{end}}

{{define "home"}}{{template "head" "Catalog"}}
<h1>Catalog</h1>
<p class="note"><a href="/index.json">index.json</a> · <a href="/index.json.sig">index.json.sig</a> · <a href="/marketplace.pub">marketplace.pub</a> (key {{.KeyID}})</p>
<p class="note" id="freshness">Serial {{.Serial}}, expires {{.Expires}}.</p>
{{if .Expired}}<p class="warning" id="expired"><strong>This catalog has expired: hosts refuse it. Rerun scripts/catalog to re-sign it.</strong></p>{{end}}
{{range .Plugins}}<div class="card"><h2>{{.Name}} <small class="note">{{.Version}}</small></h2><p>{{.Description}}</p>
<p class="price">{{.Price}}</p>{{if .Free}}<p class="note">No purchase needed: install it from MagicAds.</p>{{else}}<a class="button" href="/checkout/{{.ID}}">Checkout</a>{{end}}</div>
{{else}}<p>The catalog is empty.</p>{{end}}
{{template "foot"}}{{end}}

{{define "checkout"}}{{template "head" "Checkout"}}
<div class="card">
<h1>{{.Plugin.Name}}</h1>
<p>{{.Plugin.Description}}</p>
<p class="price" id="price">{{.Plugin.Price}}</p>
{{if .Plugin.FreeForExtendedLicense}}<p class="note">Free for Extended License holders.</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="return" value="{{.Return}}">
<label for="buyer">Buyer</label>
<input id="buyer" name="buyer" type="email" value="{{.Buyer}}" maxlength="256">
<p><button type="submit">Complete purchase</button></p>
</form>
</div>
{{template "foot"}}{{end}}

{{define "free"}}{{template "head" "Free plugin"}}
<div class="card">
<h1>{{.Plugin.Name}}</h1>
<p>{{.Plugin.Description}}</p>
<p class="price" id="price">{{.Plugin.Price}}</p>
<p id="free">This plugin is free: no purchase is needed. Install it from the MagicAds plugins page.</p>
{{if .Return}}<p><a class="button" id="return" href="{{.Return}}">Return to MagicAds</a></p>{{end}}
</div>
{{template "foot"}}{{end}}

{{define "done"}}{{template "head" "Purchase complete"}}
<div class="card">
<h1>Purchase complete</h1>
<p>{{.Plugin.Name}} — {{.Plugin.Price}}, bought by {{.Buyer}}.</p>
<label for="receipt">Receipt</label>
<textarea id="receipt" rows="6" readonly>{{.Receipt}}</textarea>
{{if .Back}}<p><a class="button" id="return" href="{{.Back}}">Return to MagicAds</a></p>
{{else}}<p class="note">Paste the receipt into MagicAds (POST /api/v1/admin/purchases).</p>{{end}}
</div>
{{template "foot"}}{{end}}

{{define "error"}}{{template "head" "Error"}}
<h1>{{.Status}}</h1><p>{{.Message}}</p>
{{template "foot"}}{{end}}
`
