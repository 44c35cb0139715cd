package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/shared/catalog"
)

// fixture is a catalog folder signed with a dev key pair.
type fixture struct {
	dir, keys string
	archive   []byte
	srv       *httptest.Server
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureExpiring(t, time.Now().Add(24*time.Hour))
}

// fixtureSerial is the serial of every fixture's index.
const fixtureSerial = 1700000000

// newFixtureExpiring is newFixture with the index expiring at expires.
func newFixtureExpiring(t *testing.T, expires time.Time) *fixture {
	t.Helper()
	base := t.TempDir()
	keys := filepath.Join(base, "keys")
	dir := filepath.Join(base, "catalog")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pub, priv, err := catalog.GenerateKeyPair(keys)
	if err != nil {
		t.Fatal(err)
	}
	archive := []byte("a plugin archive")
	s := sha256.Sum256(archive)
	sum := hex.EncodeToString(s[:])
	sig, err := catalog.SignArchive(priv, "cloudflare-r2", "1.0.0", "linux/amd64", sum)
	if err != nil {
		t.Fatal(err)
	}
	idx := catalog.Index{SchemaVersion: 1, Plugins: []catalog.Plugin{{
		ID: "cloudflare-r2", Name: "Cloudflare R2 Storage", Description: "Offload results to R2.", Kind: "storage-provider",
		Pricing:     catalog.Pricing{Model: "paid", Price: &catalog.Price{Amount: "29.00", Currency: "USD"}, FreeForExtendedLicense: true},
		CheckoutURL: "http://127.0.0.1:8090/checkout/cloudflare-r2",
		Versions: []catalog.Version{{Version: "1.0.0", MinHostVersion: "1.0.0", ProtocolVersions: []int{1}, Archives: map[string]catalog.Archive{
			"linux/amd64": {URL: "cloudflare-r2_1.0.0_linux_amd64.tar.gz", Size: int64(len(archive)), SHA256: sum, Signature: sig},
		}}},
	}}}
	raw, _ := json.Marshal(idx)
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["serial"], doc["expires"] = fixtureSerial, expires.UTC().Format(time.RFC3339)
	data, _ := json.MarshalIndent(doc, "", "  ")
	isig, err := catalog.SignIndex(priv, data)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, _ := catalog.MarshalPublicKey(pub)
	for name, b := range map[string][]byte{
		catalog.IndexFile: data, catalog.IndexSignatureFile: isig, catalog.PublicKeyFile: pubPEM,
		"cloudflare-r2_1.0.0_linux_amd64.tar.gz": archive,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := newServer(dir, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s2.handler())
	t.Cleanup(srv.Close)
	return &fixture{dir: dir, keys: keys, archive: archive, srv: srv}
}

func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := f.srv.Client().Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (f *fixture) post(t *testing.T, path string, form url.Values, accept string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// trusted returns the key a host gets from the served marketplace.pub.
func (f *fixture) trusted(t *testing.T) []ed25519.PublicKey {
	t.Helper()
	code, body := f.get(t, "/"+catalog.PublicKeyFile)
	if code != 200 {
		t.Fatalf("marketplace.pub: %d", code)
	}
	keys, err := catalog.ParsePublicKeys([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestServesCatalog(t *testing.T) {
	f := newFixture(t)
	keys := f.trusted(t)
	ctx := context.Background()
	indexURL := f.srv.URL + "/index.json"
	idx, err := catalog.Fetch(ctx, f.srv.Client(), indexURL, keys)
	if err != nil {
		t.Fatal(err)
	}
	a := idx.Plugins[0].Versions[0].Archives["linux/amd64"]
	u, err := catalog.ResolveURL(indexURL, a.URL)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sum, n, err := catalog.Download(ctx, f.srv.Client(), u, 1<<20, &buf)
	if err != nil || catalog.CheckDownload(a, sum, n) != nil || !bytes.Equal(buf.Bytes(), f.archive) {
		t.Fatalf("archive download: %v", err)
	}
	if code, body := f.get(t, "/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("healthz: %d %q", code, body)
	}
	if code, body := f.get(t, "/"); code != 200 || !strings.Contains(body, "Cloudflare R2 Storage") {
		t.Errorf("home: %d", code)
	}
	// Nothing outside the allow-list is served, even if it lies in the folder.
	if err := os.WriteFile(filepath.Join(f.dir, catalog.PrivateKeyFile), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/marketplace.key", "/notes.txt", "/../keys/marketplace.key", "/%2e%2e%2fkeys%2fmarketplace.key", "/missing.tar.gz", "/checkout"} {
		if code, _ := f.get(t, p); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
}

var receiptRE = regexp.MustCompile(`(?s)<textarea id="receipt"[^>]*>(.*?)</textarea>`)
var returnRE = regexp.MustCompile(`<a class="button" id="return" href="([^"]*)"`)

// TestHomeShowsSerialAndExpiry: the home page shows the index's serial and
// expiry, and says so plainly when hosts will refuse it as expired.
func TestHomeShowsSerialAndExpiry(t *testing.T) {
	f := newFixture(t)
	code, body := f.get(t, "/")
	if code != 200 || !strings.Contains(body, fmt.Sprint(fixtureSerial)) || !strings.Contains(body, "expires") || strings.Contains(body, "has expired") {
		t.Errorf("home of a fresh catalog: %d\n%s", code, body)
	}
	old := newFixtureExpiring(t, time.Now().Add(-time.Hour))
	code, body = old.get(t, "/")
	if code != 200 || !strings.Contains(body, "has expired") || !strings.Contains(body, "scripts/catalog") {
		t.Errorf("home of an expired catalog: %d\n%s", code, body)
	}
}

func TestCheckoutIssuesReceipt(t *testing.T) {
	f := newFixture(t)
	keys := f.trusted(t)
	ret := "http://127.0.0.1:8080/app/admin/general/plugins?tab=market"

	code, body := f.get(t, "/checkout/cloudflare-r2?return="+url.QueryEscape(ret))
	if code != 200 {
		t.Fatalf("checkout page: %d %s", code, body)
	}
	for _, want := range []string{"Cloudflare R2 Storage", "29.00 USD", "Complete purchase", `action="/checkout/cloudflare-r2"`, `value="http://127.0.0.1:8080/app/admin/general/plugins?tab=market"`} {
		if !strings.Contains(html.UnescapeString(body), want) {
			t.Errorf("checkout page lacks %q", want)
		}
	}

	// The browser form.
	code, body = f.post(t, "/checkout/cloudflare-r2", url.Values{"return": {ret}, "buyer": {"ann@example.com"}}, "")
	if code != 200 {
		t.Fatalf("complete: %d %s", code, body)
	}
	m := receiptRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no receipt on the page:\n%s", body)
	}
	receipt := html.UnescapeString(m[1])
	r, err := catalog.VerifyReceipt(receipt, keys)
	if err != nil {
		t.Fatal(err)
	}
	if r.PluginID != "cloudflare-r2" || r.Buyer != "ann@example.com" || r.Nonce == "" || r.IssuedAt.IsZero() {
		t.Errorf("receipt %+v", r)
	}
	lm := returnRE.FindStringSubmatch(body)
	if lm == nil {
		t.Fatal("no return link")
	}
	back, err := url.Parse(html.UnescapeString(lm[1]))
	if err != nil {
		t.Fatal(err)
	}
	if back.Host != "127.0.0.1:8080" || back.Path != "/app/admin/general/plugins" || back.Query().Get("tab") != "market" || back.Query().Get("receipt") != receipt {
		t.Errorf("return link %s", back)
	}

	// Automation: JSON.
	code, body = f.post(t, "/checkout/cloudflare-r2?return="+url.QueryEscape(ret), nil, "application/json")
	if code != 200 {
		t.Fatalf("json: %d %s", code, body)
	}
	var res checkoutResult
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatal(err)
	}
	r2, err := catalog.VerifyReceipt(res.Receipt, keys)
	if err != nil || r2.PluginID != "cloudflare-r2" || r2.Buyer != defaultBuyer || r2.Nonce == r.Nonce {
		t.Errorf("json receipt %+v %v", r2, err)
	}
	if u, _ := url.Parse(res.ReturnURL); u == nil || u.Query().Get("receipt") != res.Receipt {
		t.Errorf("return_url %q", res.ReturnURL)
	}

	// Without a return URL, the receipt is shown alone.
	code, body = f.post(t, "/checkout/cloudflare-r2", nil, "")
	if code != 200 || receiptRE.FindStringSubmatch(body) == nil || returnRE.MatchString(body) {
		t.Errorf("no return: %d", code)
	}
}

func TestCheckoutUnknownPlugin(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"/checkout/aws-s3", "/checkout/BAD_ID", "/checkout/x"} {
		if code, _ := f.get(t, p); code != http.StatusNotFound {
			t.Errorf("GET %s: %d", p, code)
		}
		if code, body := f.post(t, p, nil, "application/json"); code != http.StatusNotFound || strings.Contains(body, "receipt\"") {
			t.Errorf("POST %s: %d %s", p, code, body)
		}
	}
}

func TestCheckoutReturnMustBeHTTP(t *testing.T) {
	f := newFixture(t)
	for _, ret := range []string{
		"javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<script>alert(1)</script>",
		"//evil.example/x", "/app/admin", "ftp://x/y", "http://", "https://user:pw@evil.example/", "vbscript:x",
	} {
		if code, _ := f.get(t, "/checkout/cloudflare-r2?return="+url.QueryEscape(ret)); code != http.StatusBadRequest {
			t.Errorf("GET return=%q: %d, want 400", ret, code)
		}
		code, body := f.post(t, "/checkout/cloudflare-r2", url.Values{"return": {ret}}, "")
		if code != http.StatusBadRequest || receiptRE.MatchString(body) {
			t.Errorf("POST return=%q: %d, want 400 and no receipt", ret, code)
		}
	}
	if code, _ := f.post(t, "/checkout/cloudflare-r2", url.Values{"buyer": {strings.Repeat("b", 300)}}, ""); code != http.StatusBadRequest {
		t.Errorf("long buyer: %d", code)
	}
}

func TestNewServerRefuses(t *testing.T) {
	f := newFixture(t)
	// Keys that did not sign the catalog.
	other := filepath.Join(t.TempDir(), "other")
	if _, _, err := catalog.GenerateKeyPair(other); err != nil {
		t.Fatal(err)
	}
	if _, err := newServer(f.dir, other, nil); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Errorf("other key: %v", err)
	}
	if _, err := newServer(f.dir, filepath.Join(t.TempDir(), "none"), nil); err == nil {
		t.Error("missing keys accepted")
	}
	if _, err := newServer(filepath.Join(t.TempDir(), "none"), f.keys, nil); err == nil {
		t.Error("missing folder accepted")
	}
	// Keys inside the served folder.
	inner := filepath.Join(f.dir, "keys")
	if _, _, err := catalog.GenerateKeyPair(inner); err != nil {
		t.Fatal(err)
	}
	if _, err := newServer(f.dir, inner, nil); err == nil || !strings.Contains(err.Error(), "inside") {
		t.Errorf("keys inside the folder: %v", err)
	}
	if err := run(context.Background(), nil, func(string) string { return "" }, io.Discard); err == nil {
		t.Error("run without --dir")
	}
}

func TestDefaultKeysDir(t *testing.T) {
	env := map[string]string{"HOME": "/home/ann"}
	if got := defaultKeysDir(func(k string) string { return env[k] }); got != filepath.Join("/home/ann", ".config", "magicads", "dev-marketplace") {
		t.Errorf("default %q", got)
	}
	env["MAGICADS_DEV_KEYS"] = "/keys"
	if got := defaultKeysDir(func(k string) string { return env[k] }); got != "/keys" {
		t.Errorf("env %q", got)
	}
}

func TestRunServesAndStops(t *testing.T) {
	f := newFixture(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := l.Addr().String()
	_ = l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--dir", f.dir, "--keys", f.keys, "--addr", ln}, func(string) string { return "" }, io.Discard)
	}()
	var ok bool
	for i := 0; i < 100 && !ok; i++ {
		resp, err := http.Get("http://" + ln + "/healthz")
		if err == nil {
			resp.Body.Close()
			ok = resp.StatusCode == 200
		}
		if !ok {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !ok {
		t.Fatal("devmarket did not answer /healthz")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}
