package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	r2storage "github.com/magicads/r2storage"
	"github.com/magicads/r2storage/shared/catalog"
	"github.com/magicads/r2storage/shared/manifest"
)

func runTool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, &out)
	return out.String(), err
}

func TestKeys(t *testing.T) {
	base := t.TempDir()
	keys := filepath.Join(base, "home", ".config", "magicads", "dev-marketplace")
	out, err := runTool(t, "keys", "-dir", keys, "-forbid", filepath.Join(base, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "(created)") {
		t.Errorf("first run: %q", out)
	}
	keyPEM, err := os.ReadFile(filepath.Join(keys, catalog.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "PRIVATE") || strings.Contains(out, strings.Split(string(keyPEM), "\n")[1]) {
		t.Fatal("the private key was printed")
	}
	out2, err := runTool(t, "keys", "-dir", keys)
	if err != nil || !strings.Contains(out2, "(existing)") || strings.Fields(out)[2] != strings.Fields(out2)[2] {
		t.Fatalf("second run: %q %v", out2, err)
	}
	after, _ := os.ReadFile(filepath.Join(keys, catalog.PrivateKeyFile))
	if !bytes.Equal(after, keyPEM) {
		t.Fatal("the key changed")
	}

	// A missing marketplace.pub is rewritten from the private key.
	if err := os.Remove(filepath.Join(keys, catalog.PublicKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := runTool(t, "keys", "-dir", keys); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(keys, catalog.PublicKeyFile)); err != nil {
		t.Fatal(err)
	}

	// A marketplace.pub of another key is refused.
	other := filepath.Join(base, "other")
	if _, _, err := catalog.GenerateKeyPair(other); err != nil {
		t.Fatal(err)
	}
	otherPub, _ := os.ReadFile(filepath.Join(other, catalog.PublicKeyFile))
	if err := os.WriteFile(filepath.Join(keys, catalog.PublicKeyFile), otherPub, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runTool(t, "keys", "-dir", keys); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched pub: %v", err)
	}

	// marketplace.pub without its private key is refused, not overwritten.
	if err := os.Remove(filepath.Join(other, catalog.PrivateKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := runTool(t, "keys", "-dir", other); err == nil {
		t.Error("pub without key accepted")
	}
}

func TestKeysRefusesRepositoryAndCatalog(t *testing.T) {
	base := t.TempDir()
	repo := filepath.Join(base, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(repo, link); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{repo, filepath.Join(repo, "keys"), filepath.Join(repo, "a", "..", "keys"), filepath.Join(link, "keys", "deeper")} {
		_, err := runTool(t, "keys", "-dir", dir, "-forbid", filepath.Join(base, "elsewhere"), "-forbid", repo)
		if err == nil || !strings.Contains(err.Error(), "inside") {
			t.Errorf("%s: %v", dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(repo, "keys")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused key folder was created")
	}
	// A sibling whose name starts like the repository's is fine.
	if _, err := runTool(t, "keys", "-dir", filepath.Join(base, "repo-keys"), "-forbid", repo); err != nil {
		t.Errorf("sibling: %v", err)
	}
}

// fakeArchives writes one small archive per manifest platform into dir.
func fakeArchives(t *testing.T, dir string) manifest.Manifest {
	t.Helper()
	m, err := r2storage.LoadManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Platforms() {
		goos, goarch, _ := strings.Cut(p, "/")
		name := fmt.Sprintf("%s_%s_%s_%s.tar.gz", m.ID, m.Version, goos, goarch)
		if err := os.WriteFile(filepath.Join(dir, name), []byte("fake archive "+p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func TestIndex(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	if _, err := runTool(t, "keys", "-dir", keys); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	m := fakeArchives(t, out)
	stdout, err := runTool(t, "index", "-keys", keys, "-dir", out, "-checkout-base", "http://market.test:9000/")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "5 platforms") {
		t.Errorf("stdout %q", stdout)
	}
	for _, name := range []string{catalog.IndexFile, catalog.IndexSignatureFile, catalog.PublicKeyFile} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, catalog.PrivateKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the private key was copied into the catalog")
	}
	trusted, err := catalog.LoadPublicKeys(filepath.Join(out, catalog.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	own, _ := catalog.LoadPublicKeys(filepath.Join(keys, catalog.PublicKeyFile))
	if !trusted[0].Equal(own[0]) {
		t.Fatal("OUT_DIR/marketplace.pub is not the dev key")
	}
	idx, err := catalog.Fetch(context.Background(), nil, "file://"+filepath.ToSlash(filepath.Join(out, catalog.IndexFile)), trusted)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Plugins) != 1 {
		t.Fatalf("%d plugins", len(idx.Plugins))
	}
	p := idx.Plugins[0]
	if p.ID != m.ID || p.Name != m.Name || p.Description != m.Description || p.Kind != m.Kind {
		t.Errorf("plugin %+v", p)
	}
	if p.Pricing.Model != m.Pricing.Model || p.Pricing.FreeForExtendedLicense != m.Pricing.FreeForExtendedLicense ||
		p.Pricing.Price == nil || *p.Pricing.Price != (catalog.Price{Amount: m.Pricing.Price.Amount, Currency: m.Pricing.Price.Currency}) {
		t.Errorf("pricing %+v", p.Pricing)
	}
	if p.CheckoutURL != "http://market.test:9000/checkout/cloudflare-r2" {
		t.Errorf("checkout_url %q", p.CheckoutURL)
	}
	if len(p.Versions) != 1 || p.Versions[0].Version != m.Version || p.Versions[0].MinHostVersion != m.MinHostVersion {
		t.Fatalf("versions %+v", p.Versions)
	}
	v := p.Versions[0]
	if len(v.Archives) != len(m.Platforms()) {
		t.Fatalf("%d archives", len(v.Archives))
	}
	for platform, a := range v.Archives {
		if strings.Contains(a.URL, "/") || !strings.HasSuffix(a.URL, ".tar.gz") {
			t.Errorf("%s: url %q is not a relative file name", platform, a.URL)
		}
		if err := catalog.VerifyArchive(a, p.ID, v.Version, platform, trusted); err != nil {
			t.Errorf("%s: %v", platform, err)
		}
	}

	// Rerunning gives the same index but for a larger serial and a later
	// expiry (ed25519 is deterministic, so only those differ).
	before, _ := os.ReadFile(filepath.Join(out, catalog.IndexFile))
	if _, err := runTool(t, "index", "-keys", keys, "-dir", out, "-checkout-base", "http://market.test:9000"); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(out, catalog.IndexFile))
	b, a := freshness(t, before), freshness(t, after)
	if a.serial <= b.serial || a.expires.Before(b.expires) {
		t.Errorf("rebuilt in the same second: serial %d then %d, expires %s then %s; the serial must grow", b.serial, a.serial, b.expires, a.expires)
	}
	if !bytes.Equal(withoutFreshness(t, before), withoutFreshness(t, after)) {
		t.Error("index.json is not reproducible")
	}
}

// indexFreshness is the serial and expiry of an index.json.
type indexFreshness struct {
	serial  int64
	expires time.Time
}

// freshness reads the serial and expiry of index.json's bytes, failing the
// test when either is missing.
func freshness(t *testing.T, data []byte) indexFreshness {
	t.Helper()
	var doc struct {
		Serial  *int64  `json:"serial"`
		Expires *string `json:"expires"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Serial == nil || doc.Expires == nil {
		t.Fatalf("index.json has no serial or no expires:\n%s", data)
	}
	exp, err := time.Parse(time.RFC3339, *doc.Expires)
	if err != nil {
		t.Fatalf("expires %q is not RFC 3339: %v", *doc.Expires, err)
	}
	return indexFreshness{serial: *doc.Serial, expires: exp}
}

// withoutFreshness returns index.json without its serial and expiry.
func withoutFreshness(t *testing.T, data []byte) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "serial")
	delete(doc, "expires")
	out, _ := json.Marshal(doc)
	return out
}

// TestIndexSerialAndExpiry: the serial is the build time in seconds and
// never goes back (not even below an earlier index's, whatever the clock
// says); the expiry defaults to 30 days and -valid-for changes it.
func TestIndexSerialAndExpiry(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	if _, err := runTool(t, "keys", "-dir", keys); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	fakeArchives(t, out)
	start := time.Now()
	if _, err := runTool(t, "index", "-keys", keys, "-dir", out); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(out, catalog.IndexFile))
	f := freshness(t, data)
	if f.serial < start.Unix() || f.serial > time.Now().Unix()+1 {
		t.Errorf("serial %d is not the build time in seconds (%d)", f.serial, start.Unix())
	}
	if want := start.Add(30 * 24 * time.Hour); f.expires.Before(want.Add(-2*time.Second)) || f.expires.After(want.Add(2*time.Second)) {
		t.Errorf("expires %s, want 30 days from now (%s)", f.expires, want)
	}

	// -valid-for changes the expiry.
	if _, err := runTool(t, "index", "-keys", keys, "-dir", out, "-valid-for", "48h"); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(filepath.Join(out, catalog.IndexFile))
	g := freshness(t, data)
	if want := time.Now().Add(48 * time.Hour); g.expires.Before(want.Add(-5*time.Second)) || g.expires.After(want.Add(2*time.Second)) {
		t.Errorf("-valid-for 48h: expires %s, want %s", g.expires, want)
	}
	if g.serial <= f.serial {
		t.Errorf("second build: serial %d, first %d", g.serial, f.serial)
	}

	// An index from the future (a clock that was ahead): the next build
	// still goes above it.
	ahead := time.Now().Add(1000 * time.Hour).Unix()
	if _, err := runTool(t, "index", "-keys", keys, "-dir", out, "-serial", fmt.Sprint(ahead)); err != nil {
		t.Fatal(err)
	}
	if _, err := runTool(t, "index", "-keys", keys, "-dir", out); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(filepath.Join(out, catalog.IndexFile))
	if h := freshness(t, data); h.serial != ahead+1 {
		t.Errorf("after serial %d, the next build has %d", ahead, h.serial)
	}

	// A serial that is not above the previous one, or a bad validity, is refused.
	for _, args := range [][]string{{"-serial", fmt.Sprint(ahead)}, {"-serial", "-3"}, {"-valid-for", "0s"}, {"-valid-for", "-1h"}, {"-valid-for", "9000h"}} {
		if _, err := runTool(t, append([]string{"index", "-keys", keys, "-dir", out}, args...)...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestIndexRefuses(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	if _, err := runTool(t, "keys", "-dir", keys); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	m := fakeArchives(t, out)
	for _, base := range []string{"javascript:alert(1)", "ftp://x", "127.0.0.1:8090", "http://x/?a=b"} {
		if _, err := runTool(t, "index", "-keys", keys, "-dir", out, "-checkout-base", base); err == nil {
			t.Errorf("checkout base %q accepted", base)
		}
	}
	archive := filepath.Join(out, fmt.Sprintf("%s_%s_linux_amd64.tar.gz", m.ID, m.Version))
	if err := os.WriteFile(archive+".sha256", []byte(strings.Repeat("0", 64)+"  x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runTool(t, "index", "-keys", keys, "-dir", out); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("stale .sha256: %v", err)
	}
	_ = os.Remove(archive + ".sha256")
	if err := os.Remove(archive); err != nil {
		t.Fatal(err)
	}
	if _, err := runTool(t, "index", "-keys", keys, "-dir", out); err == nil || !strings.Contains(err.Error(), "linux/amd64") {
		t.Errorf("missing archive: %v", err)
	}
	if _, err := runTool(t, "index", "-keys", filepath.Join(t.TempDir(), "none"), "-dir", out); err == nil {
		t.Error("missing keys accepted")
	}
	if _, err := runTool(t, "bogus"); err == nil {
		t.Error("unknown command accepted")
	}
}
