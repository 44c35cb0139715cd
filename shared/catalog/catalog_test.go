package catalog_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/shared/catalog"
)

// keyPair generates a key pair in a fresh folder.
func keyPair(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	pub, priv, err := catalog.GenerateKeyPair(dir)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv, dir
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

var platforms = []string{"darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64", "windows/amd64"}

// testIndex returns a valid index for plugin "cloudflare-r2" 1.0.0 whose
// archives are archives (signed by priv) named <os>_<arch>.tar.gz.
func testIndex(t *testing.T, priv ed25519.PrivateKey, archives map[string][]byte) *catalog.Index {
	t.Helper()
	v := catalog.Version{Version: "1.0.0", MinHostVersion: "1.0.0", ProtocolVersions: []int{1}, Archives: map[string]catalog.Archive{}}
	for p, data := range archives {
		sig, err := catalog.SignArchive(priv, "cloudflare-r2", "1.0.0", p, sum(data))
		if err != nil {
			t.Fatal(err)
		}
		v.Archives[p] = catalog.Archive{URL: strings.ReplaceAll(p, "/", "_") + ".tar.gz", Size: int64(len(data)), SHA256: sum(data), Signature: sig}
	}
	return &catalog.Index{SchemaVersion: 1, Serial: 1700000000, Expires: time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second), Plugins: []catalog.Plugin{{
		ID: "cloudflare-r2", Name: "Cloudflare R2 Storage", Description: "Offload results.", Kind: "storage-provider",
		Pricing:     catalog.Pricing{Model: "paid", Price: &catalog.Price{Amount: "29.00", Currency: "USD"}, FreeForExtendedLicense: true},
		CheckoutURL: "http://127.0.0.1:8090/checkout/cloudflare-r2",
		Versions:    []catalog.Version{v},
	}}}
}

func testArchives() map[string][]byte {
	m := map[string][]byte{}
	for _, p := range platforms {
		m[p] = []byte("archive for " + p + strings.Repeat("x", 1000))
	}
	return m
}

// writeCatalog writes archives, index.json and index.json.sig into dir and
// returns the index bytes.
func writeCatalog(t *testing.T, dir string, priv ed25519.PrivateKey) ([]byte, map[string][]byte) {
	t.Helper()
	archives := testArchives()
	for p, data := range archives {
		if err := os.WriteFile(filepath.Join(dir, strings.ReplaceAll(p, "/", "_")+".tar.gz"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := json.MarshalIndent(testIndex(t, priv, archives), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := catalog.SignIndex(priv, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, catalog.IndexFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, catalog.IndexSignatureFile), sig, 0o644); err != nil {
		t.Fatal(err)
	}
	return data, archives
}

func fileURL(p string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(p)}).String()
}

func TestKeyPairFiles(t *testing.T) {
	pub, priv, dir := keyPair(t)
	if runtime.GOOS != "windows" {
		for name, want := range map[string]os.FileMode{catalog.PrivateKeyFile: 0o600, catalog.PublicKeyFile: 0o644} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != want {
				t.Errorf("%s mode %04o, want %04o", name, fi.Mode().Perm(), want)
			}
		}
	}
	gotPriv, err := catalog.LoadPrivateKey(filepath.Join(dir, catalog.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !gotPriv.Equal(priv) {
		t.Error("loaded private key differs")
	}
	keys, err := catalog.LoadPublicKeys(filepath.Join(dir, catalog.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !keys[0].Equal(pub) {
		t.Errorf("loaded public keys %v", keys)
	}
	pemData, _ := os.ReadFile(filepath.Join(dir, catalog.PublicKeyFile))
	if !bytes.HasPrefix(pemData, []byte("-----BEGIN PUBLIC KEY-----\n")) {
		t.Errorf("marketplace.pub is not PEM:\n%s", pemData)
	}
	if _, _, err := catalog.GenerateKeyPair(dir); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second GenerateKeyPair: %v, want fs.ErrExist", err)
	}
	if len(catalog.KeyID(pub)) != 16 {
		t.Errorf("KeyID %q", catalog.KeyID(pub))
	}
}

func TestKeyFileFormats(t *testing.T) {
	pub, priv, dir := keyPair(t)
	pub2, _, dir2 := keyPair(t)
	tmp := t.TempDir()
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Base64 forms.
	b64pub := write("b64.pub", "# dev key\n"+base64.StdEncoding.EncodeToString(pub)+"\n\n"+base64.StdEncoding.EncodeToString(pub2)+"\n", 0o644)
	keys, err := catalog.LoadPublicKeys(b64pub)
	if err != nil || len(keys) != 2 || !keys[0].Equal(pub) || !keys[1].Equal(pub2) {
		t.Fatalf("base64 public keys: %v %v", keys, err)
	}
	seed := write("seed.key", base64.StdEncoding.EncodeToString(priv.Seed())+"\n", 0o600)
	k, err := catalog.LoadPrivateKey(seed)
	if err != nil || !k.Equal(priv) {
		t.Fatalf("base64 seed: %v", err)
	}
	// Several files, and several PEM blocks in one file.
	a, _ := os.ReadFile(filepath.Join(dir, catalog.PublicKeyFile))
	b, _ := os.ReadFile(filepath.Join(dir2, catalog.PublicKeyFile))
	both := write("both.pub", string(a)+string(b), 0o644)
	if keys, err := catalog.LoadPublicKeys(both, b64pub); err != nil || len(keys) != 4 {
		t.Fatalf("PEM bundle: %d keys, %v", len(keys), err)
	}
	// Refused.
	keyPEM, _ := os.ReadFile(filepath.Join(dir, catalog.PrivateKeyFile))
	for name, data := range map[string]string{
		"empty":         "",
		"garbage":       "hello world",
		"short":         base64.StdEncoding.EncodeToString(pub[:31]),
		"private-pem":   string(keyPEM),
		"trailing-junk": string(a) + "junk",
		"bad-pem":       "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
	} {
		p := write(name+".pub", data, 0o644)
		if _, err := catalog.LoadPublicKeys(p); err == nil {
			t.Errorf("public key %s accepted", name)
		} else if strings.Contains(err.Error(), "PRIVATE") && name == "private-pem" && strings.Contains(err.Error(), string(keyPEM[30:60])) {
			t.Errorf("error prints the private key: %v", err)
		}
	}
	if _, err := catalog.LoadPublicKeys(); err == nil {
		t.Error("no files accepted")
	}
	if _, err := catalog.LoadPublicKeys(filepath.Join(tmp, "missing.pub")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	for name, data := range map[string]string{
		"garbage": "not a key",
		"public":  string(a),
		"short":   base64.StdEncoding.EncodeToString(priv.Seed()[:16]),
	} {
		p := write(name+".key", data, 0o600)
		if _, err := catalog.LoadPrivateKey(p); err == nil {
			t.Errorf("private key %s accepted", name)
		}
	}
	if runtime.GOOS != "windows" {
		p := write("open.key", string(keyPEM), 0o644)
		_, err := catalog.LoadPrivateKey(p)
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("world-readable private key: %v", err)
		}
		if err != nil && strings.Contains(err.Error(), strings.Split(string(keyPEM), "\n")[1]) {
			t.Error("error prints the private key")
		}
	}
}

func TestIndexSignature(t *testing.T) {
	pub, priv, _ := keyPair(t)
	otherPub, otherPriv, _ := keyPair(t)
	data, err := json.Marshal(testIndex(t, priv, testArchives()))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := catalog.SignIndex(priv, data)
	if err != nil {
		t.Fatal(err)
	}
	trusted := []ed25519.PublicKey{pub}
	if err := catalog.VerifyIndex(data, sig, trusted); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if err := catalog.VerifyIndex(data, sig, []ed25519.PublicKey{otherPub, pub}); err != nil {
		t.Fatalf("second trusted key: %v", err)
	}
	// Every single-byte change (pricing included) is refused.
	for _, i := range []int{0, bytes.Index(data, []byte("29.00")), len(data) - 1} {
		tampered := bytes.Clone(data)
		tampered[i] ^= 0x01
		if err := catalog.VerifyIndex(tampered, sig, trusted); !errors.Is(err, catalog.ErrBadSignature) {
			t.Errorf("byte %d tampered: %v, want ErrBadSignature", i, err)
		}
	}
	cheaper := bytes.Replace(data, []byte(`"29.00"`), []byte(`"00.01"`), 1)
	if err := catalog.VerifyIndex(cheaper, sig, trusted); !errors.Is(err, catalog.ErrBadSignature) {
		t.Errorf("price changed: %v", err)
	}
	otherSig, _ := catalog.SignIndex(otherPriv, data)
	if err := catalog.VerifyIndex(data, otherSig, trusted); !errors.Is(err, catalog.ErrUnknownKey) {
		t.Errorf("untrusted key: %v, want ErrUnknownKey", err)
	}
	if err := catalog.VerifyIndex(data, nil, trusted); !errors.Is(err, catalog.ErrUnsigned) {
		t.Errorf("no signature: %v, want ErrUnsigned", err)
	}
	if err := catalog.VerifyIndex(data, []byte(" \n"), trusted); !errors.Is(err, catalog.ErrUnsigned) {
		t.Errorf("blank signature: %v, want ErrUnsigned", err)
	}
	if err := catalog.VerifyIndex(data, sig, nil); !errors.Is(err, catalog.ErrUnknownKey) {
		t.Errorf("no trusted keys: %v, want ErrUnknownKey", err)
	}
	for name, bad := range map[string][]byte{
		"not base64":  []byte("!!!!"),
		"short":       []byte(base64.StdEncoding.EncodeToString([]byte("short"))),
		"raw ed25519": []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(priv, data))),
		"huge":        bytes.Repeat([]byte("A"), 10000),
	} {
		if err := catalog.VerifyIndex(data, bad, trusted); !errors.Is(err, catalog.ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", name, err)
		}
	}
	// A truncated key in the trusted list must not panic.
	if err := catalog.VerifyIndex(data, sig, []ed25519.PublicKey{pub[:10]}); err == nil {
		t.Error("truncated key accepted")
	}
	if _, err := catalog.SignIndex(priv[:5], data); err == nil {
		t.Error("signing with a truncated key")
	}
}

func TestArchiveSignature(t *testing.T) {
	pub, priv, _ := keyPair(t)
	_, otherPriv, _ := keyPair(t)
	keys := []ed25519.PublicKey{pub}
	sha := sum([]byte("archive"))
	sig, err := catalog.SignArchive(priv, "cloudflare-r2", "1.0.0", "linux/amd64", sha)
	if err != nil {
		t.Fatal(err)
	}
	a := catalog.Archive{URL: "a.tar.gz", Size: 7, SHA256: sha, Signature: sig}
	if err := catalog.VerifyArchive(a, "cloudflare-r2", "1.0.0", "linux/amd64", keys); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	for _, c := range []struct{ id, version, platform string }{
		{"cloudflare-r2", "1.0.0", "linux/arm64"},
		{"cloudflare-r2", "1.0.1", "linux/amd64"},
		{"aws-s3", "1.0.0", "linux/amd64"},
	} {
		if err := catalog.VerifyArchive(a, c.id, c.version, c.platform, keys); !errors.Is(err, catalog.ErrBadSignature) {
			t.Errorf("reused for %v: %v, want ErrBadSignature", c, err)
		}
	}
	other := a
	other.SHA256 = sum([]byte("other archive"))
	if err := catalog.VerifyArchive(other, "cloudflare-r2", "1.0.0", "linux/amd64", keys); !errors.Is(err, catalog.ErrBadSignature) {
		t.Errorf("other sha256: %v", err)
	}
	unsigned := a
	unsigned.Signature = ""
	if err := catalog.VerifyArchive(unsigned, "cloudflare-r2", "1.0.0", "linux/amd64", keys); !errors.Is(err, catalog.ErrUnsigned) {
		t.Errorf("unsigned: %v", err)
	}
	untrusted := a
	untrusted.Signature, _ = catalog.SignArchive(otherPriv, "cloudflare-r2", "1.0.0", "linux/amd64", sha)
	if err := catalog.VerifyArchive(untrusted, "cloudflare-r2", "1.0.0", "linux/amd64", keys); !errors.Is(err, catalog.ErrUnknownKey) {
		t.Errorf("untrusted: %v", err)
	}
	upper := a
	upper.SHA256 = strings.ToUpper(sha)
	if err := catalog.VerifyArchive(upper, "cloudflare-r2", "1.0.0", "linux/amd64", keys); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("uppercase sha: %v", err)
	}
	// Fields with separators can't forge another message.
	if err := catalog.VerifyArchive(a, "cloudflare-r2\n1.0.0", "1.0.0", "linux/amd64", keys); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("newline in id: %v", err)
	}
	if _, err := catalog.SignArchive(priv, "cloudflare-r2", "1.0", "linux/amd64", sha); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("sign with bad version: %v", err)
	}
	want := "magicads-archive-v1\ncloudflare-r2\n1.0.0\nlinux/amd64\n" + sha + "\n"
	if got := string(catalog.ArchiveMessage("cloudflare-r2", "1.0.0", "linux/amd64", sha)); got != want {
		t.Errorf("ArchiveMessage = %q", got)
	}
}

// TestIndexSerialAndExpiry: serial and expires round-trip (RFC 3339, any
// offset); missing, null, fractional or out-of-range values are refused;
// Expired has no grace period.
func TestIndexSerialAndExpiry(t *testing.T) {
	_, priv, _ := keyPair(t)
	x := testIndex(t, priv, testArchives())
	x.Serial, x.Expires = 1754000000, time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	data, _ := json.Marshal(x)
	if !bytes.Contains(data, []byte(`"serial":1754000000,"expires":"2030-06-01T12:00:00Z"`)) {
		t.Errorf("encoded as %s", data)
	}
	got, err := catalog.ParseIndex(data)
	if err != nil || got.Serial != x.Serial || !got.Expires.Equal(x.Expires) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	var doc map[string]any
	_ = json.Unmarshal(data, &doc)
	for name, edit := range map[string]func(map[string]any){
		"serial missing":    func(d map[string]any) { delete(d, "serial") },
		"serial null":       func(d map[string]any) { d["serial"] = nil },
		"serial fraction":   func(d map[string]any) { d["serial"] = 1.5 },
		"serial huge":       func(d map[string]any) { d["serial"] = 1e30 },
		"serial string":     func(d map[string]any) { d["serial"] = "42" },
		"expires missing":   func(d map[string]any) { delete(d, "expires") },
		"expires null":      func(d map[string]any) { d["expires"] = nil },
		"expires not 3339":  func(d map[string]any) { d["expires"] = "June 1, 2030" },
		"expires date only": func(d map[string]any) { d["expires"] = "2030-06-01" },
		"expires number":    func(d map[string]any) { d["expires"] = 1900000000 },
	} {
		d := map[string]any{}
		for k, v := range doc {
			d[k] = v
		}
		edit(d)
		b, _ := json.Marshal(d)
		if _, err := catalog.ParseIndex(b); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	d := map[string]any{}
	for k, v := range doc {
		d[k] = v
	}
	d["expires"] = "2030-06-01T14:00:00+02:00"
	b, _ := json.Marshal(d)
	if got, err := catalog.ParseIndex(b); err != nil || !got.Expires.Equal(x.Expires) {
		t.Errorf("an offset expiry: %+v %v", got, err)
	}
	if _, err := catalog.ParseIndex(bytes.Replace(data, []byte(`"serial":1754000000`), []byte(`"serial":0`), 1)); err == nil ||
		!strings.Contains(err.Error(), "serial") || !strings.Contains(err.Error(), "scripts/catalog") {
		t.Errorf("serial 0: %v, want the cause and the fix", err)
	}
	if x.Expired(x.Expires.Add(-time.Nanosecond)) || !x.Expired(x.Expires) || !x.Expired(x.Expires.Add(time.Second)) {
		t.Error("Expired: valid strictly before expires, expired from then on")
	}
}

func TestParseIndexValidation(t *testing.T) {
	_, priv, _ := keyPair(t)
	base := func() *catalog.Index { return testIndex(t, priv, testArchives()) }
	good, _ := json.Marshal(base())
	if _, err := catalog.ParseIndex(good); err != nil {
		t.Fatalf("valid index: %v", err)
	}
	mutations := map[string]func(*catalog.Index){
		"schema version":      func(x *catalog.Index) { x.SchemaVersion = 2 },
		"no serial":           func(x *catalog.Index) { x.Serial = 0 },
		"negative serial":     func(x *catalog.Index) { x.Serial = -1 },
		"no expiry":           func(x *catalog.Index) { x.Expires = time.Time{} },
		"bad id":              func(x *catalog.Index) { x.Plugins[0].ID = "Cloudflare_R2" },
		"duplicate id":        func(x *catalog.Index) { x.Plugins = append(x.Plugins, x.Plugins[0]) },
		"no name":             func(x *catalog.Index) { x.Plugins[0].Name = "" },
		"bad kind":            func(x *catalog.Index) { x.Plugins[0].Kind = "Storage Provider" },
		"bad model":           func(x *catalog.Index) { x.Plugins[0].Pricing.Model = "cheap" },
		"paid without price":  func(x *catalog.Index) { x.Plugins[0].Pricing.Price = nil },
		"bad amount":          func(x *catalog.Index) { x.Plugins[0].Pricing.Price.Amount = "29" },
		"bad currency":        func(x *catalog.Index) { x.Plugins[0].Pricing.Price.Currency = "usd" },
		"paid no checkout":    func(x *catalog.Index) { x.Plugins[0].CheckoutURL = "" },
		"javascript checkout": func(x *catalog.Index) { x.Plugins[0].CheckoutURL = "javascript:alert(1)" },
		"relative checkout":   func(x *catalog.Index) { x.Plugins[0].CheckoutURL = "/checkout/x" },
		"no versions":         func(x *catalog.Index) { x.Plugins[0].Versions = nil },
		"bad semver":          func(x *catalog.Index) { x.Plugins[0].Versions[0].Version = "1.0" },
		"leading zero":        func(x *catalog.Index) { x.Plugins[0].Versions[0].Version = "01.0.0" },
		"bad min host":        func(x *catalog.Index) { x.Plugins[0].Versions[0].MinHostVersion = "latest" },
		"duplicate version": func(x *catalog.Index) {
			x.Plugins[0].Versions = append(x.Plugins[0].Versions, x.Plugins[0].Versions[0])
		},
		"no protocols":  func(x *catalog.Index) { x.Plugins[0].Versions[0].ProtocolVersions = nil },
		"protocol zero": func(x *catalog.Index) { x.Plugins[0].Versions[0].ProtocolVersions = []int{0} },
		"no archives":   func(x *catalog.Index) { x.Plugins[0].Versions[0].Archives = nil },
		"bad platform": func(x *catalog.Index) {
			x.Plugins[0].Versions[0].Archives["Linux-AMD64"] = x.Plugins[0].Versions[0].Archives["linux/amd64"]
		},
		"uppercase sha": func(x *catalog.Index) {
			a := x.Plugins[0].Versions[0].Archives["linux/amd64"]
			a.SHA256 = strings.ToUpper(a.SHA256)
			x.Plugins[0].Versions[0].Archives["linux/amd64"] = a
		},
		"short sha": func(x *catalog.Index) {
			a := x.Plugins[0].Versions[0].Archives["linux/amd64"]
			a.SHA256 = a.SHA256[:63]
			x.Plugins[0].Versions[0].Archives["linux/amd64"] = a
		},
		"zero size": func(x *catalog.Index) {
			a := x.Plugins[0].Versions[0].Archives["linux/amd64"]
			a.Size = 0
			x.Plugins[0].Versions[0].Archives["linux/amd64"] = a
		},
		"empty url": func(x *catalog.Index) {
			a := x.Plugins[0].Versions[0].Archives["linux/amd64"]
			a.URL = ""
			x.Plugins[0].Versions[0].Archives["linux/amd64"] = a
		},
	}
	for name, mutate := range mutations {
		x := base()
		mutate(x)
		data, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := catalog.ParseIndex(data); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	raw := map[string][]byte{
		"unknown top field":    bytes.Replace(good, []byte(`{"schema_version"`), []byte(`{"extra":1,"schema_version"`), 1),
		"unknown plugin field": bytes.Replace(good, []byte(`"id":"cloudflare-r2"`), []byte(`"id":"cloudflare-r2","discount":100`), 1),
		"trailing data":        append(bytes.Clone(good), []byte(` {}`)...),
		"not json":             []byte("<html>"),
		"empty":                nil,
		"null":                 []byte("null"),
		"wrong type":           bytes.Replace(good, []byte(`"size":`), []byte(`"size":"1"`), 1),
	}
	for name, data := range raw {
		if _, err := catalog.ParseIndex(data); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := catalog.ParseIndex(make([]byte, catalog.MaxIndexBytes+1)); !errors.Is(err, catalog.ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	free := base()
	free.Plugins[0].Pricing = catalog.Pricing{Model: "free"}
	free.Plugins[0].CheckoutURL = ""
	data, _ := json.Marshal(free)
	if _, err := catalog.ParseIndex(data); err != nil {
		t.Errorf("free plugin without checkout: %v", err)
	}
}

func TestFetchHTTP(t *testing.T) {
	pub, priv, _ := keyPair(t)
	otherPub, _, _ := keyPair(t)
	dir := t.TempDir()
	_, archives := writeCatalog(t, dir, priv)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	ctx := context.Background()
	indexURL := srv.URL + "/index.json"

	idx, err := catalog.Fetch(ctx, srv.Client(), indexURL, []ed25519.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	p, ok := idx.Plugin("cloudflare-r2")
	if !ok || p.Pricing.Price.Amount != "29.00" || !p.Pricing.FreeForExtendedLicense {
		t.Fatalf("plugin %+v", p)
	}
	v, _ := p.Latest()
	for _, platform := range platforms {
		a := v.Archives[platform]
		if err := catalog.VerifyArchive(a, p.ID, v.Version, platform, []ed25519.PublicKey{pub}); err != nil {
			t.Fatalf("%s: %v", platform, err)
		}
		u, err := catalog.ResolveURL(indexURL, a.URL)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u, srv.URL+"/") {
			t.Errorf("resolved %q", u)
		}
		var buf bytes.Buffer
		sha, n, err := catalog.Download(ctx, srv.Client(), u, 1<<20, &buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := catalog.CheckDownload(a, sha, n); err != nil {
			t.Errorf("%s: %v", platform, err)
		}
		if !bytes.Equal(buf.Bytes(), archives[platform]) {
			t.Errorf("%s: downloaded bytes differ", platform)
		}
	}

	if _, err := catalog.Fetch(ctx, srv.Client(), indexURL, []ed25519.PublicKey{otherPub}); !errors.Is(err, catalog.ErrUnknownKey) {
		t.Errorf("untrusted key: %v", err)
	}
	if _, err := catalog.Fetch(ctx, srv.Client(), srv.URL+"/missing.json", []ed25519.PublicKey{pub}); err == nil {
		t.Error("missing index fetched")
	}
	if err := os.Remove(filepath.Join(dir, catalog.IndexSignatureFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Fetch(ctx, srv.Client(), indexURL, []ed25519.PublicKey{pub}); !errors.Is(err, catalog.ErrUnsigned) {
		t.Errorf("missing .sig: %v, want ErrUnsigned", err)
	}
}

func TestFetchTamperedAndOversized(t *testing.T) {
	pub, priv, _ := keyPair(t)
	dir := t.TempDir()
	data, _ := writeCatalog(t, dir, priv)
	sig, _ := os.ReadFile(filepath.Join(dir, catalog.IndexSignatureFile))
	tampered := bytes.Replace(data, []byte(`"29.00"`), []byte(`"19.00"`), 1)
	huge := append(bytes.Clone(data), bytes.Repeat([]byte(" "), catalog.MaxIndexBytes)...)
	mux := http.NewServeMux()
	serve := func(name string, body []byte, chunked bool) {
		mux.HandleFunc("/"+name, func(w http.ResponseWriter, r *http.Request) {
			if chunked {
				// No Content-Length: the cap must hold while reading.
				for off := 0; off < len(body); off += 4096 {
					_, _ = w.Write(body[off:min(off+4096, len(body))])
					w.(http.Flusher).Flush()
				}
				return
			}
			_, _ = w.Write(body)
		})
	}
	serve("tampered/index.json", tampered, false)
	serve("tampered/index.json.sig", sig, false)
	serve("huge/index.json", huge, false)
	serve("huge/index.json.sig", sig, false)
	serve("chunked/index.json", huge, true)
	serve("chunked/index.json.sig", sig, false)
	mux.HandleFunc("/broken/index.json", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(data) })
	mux.HandleFunc("/broken/index.json.sig", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	keys := []ed25519.PublicKey{pub}
	ctx := context.Background()
	if _, err := catalog.Fetch(ctx, srv.Client(), srv.URL+"/tampered/index.json", keys); !errors.Is(err, catalog.ErrBadSignature) {
		t.Errorf("tampered: %v", err)
	}
	for _, name := range []string{"huge", "chunked"} {
		if _, err := catalog.Fetch(ctx, srv.Client(), srv.URL+"/"+name+"/index.json", keys); !errors.Is(err, catalog.ErrTooLarge) {
			t.Errorf("%s: %v, want ErrTooLarge", name, err)
		}
	}
	_, err := catalog.Fetch(ctx, srv.Client(), srv.URL+"/broken/index.json", keys)
	if err == nil || errors.Is(err, catalog.ErrUnsigned) || !strings.Contains(err.Error(), "500") {
		t.Errorf("server error on .sig: %v", err)
	}
	for _, u := range []string{"ftp://x/index.json", "index.json", "javascript:alert(1)", "http:///index.json", "file://remote-host/index.json"} {
		if _, err := catalog.Fetch(ctx, nil, u, keys); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("Fetch(%q): %v, want ErrInvalid", u, err)
		}
	}
}

func TestFetchFile(t *testing.T) {
	pub, priv, _ := keyPair(t)
	dir := t.TempDir()
	_, archives := writeCatalog(t, dir, priv)
	indexURL := fileURL(filepath.Join(dir, catalog.IndexFile))
	ctx := context.Background()
	idx, err := catalog.Fetch(ctx, nil, indexURL, []ed25519.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	a := idx.Plugins[0].Versions[0].Archives["linux/arm64"]
	u, err := catalog.ResolveURL(indexURL, a.URL)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sha, n, err := catalog.Download(ctx, nil, u, 1<<20, &buf)
	if err != nil || catalog.CheckDownload(a, sha, n) != nil || !bytes.Equal(buf.Bytes(), archives["linux/arm64"]) {
		t.Fatalf("file download: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, catalog.IndexSignatureFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Fetch(ctx, nil, indexURL, []ed25519.PublicKey{pub}); !errors.Is(err, catalog.ErrUnsigned) {
		t.Errorf("missing .sig: %v, want ErrUnsigned", err)
	}
}

func TestFetchRefusesFileArchiveInRemoteCatalog(t *testing.T) {
	pub, priv, _ := keyPair(t)
	x := testIndex(t, priv, testArchives())
	a := x.Plugins[0].Versions[0].Archives["linux/amd64"]
	a.URL = "file:///etc/passwd"
	x.Plugins[0].Versions[0].Archives["linux/amd64"] = a
	data, _ := json.Marshal(x)
	sig, _ := catalog.SignIndex(priv, data)
	mux := http.NewServeMux()
	mux.HandleFunc("/index.json", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(data) })
	mux.HandleFunc("/index.json.sig", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(sig) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if _, err := catalog.Fetch(context.Background(), srv.Client(), srv.URL+"/index.json", []ed25519.PublicKey{pub}); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("file archive URL in an http catalog: %v", err)
	}
}

func TestResolveURL(t *testing.T) {
	cases := []struct{ base, ref, want string }{
		{"https://m.example/c/index.json", "a.tar.gz", "https://m.example/c/a.tar.gz"},
		{"https://m.example/c/index.json", "../a.tar.gz", "https://m.example/a.tar.gz"},
		{"https://m.example/c/index.json", "https://cdn.example/a.tar.gz", "https://cdn.example/a.tar.gz"},
		{"https://m.example/c/index.json", "//cdn.example/a.tar.gz", "https://cdn.example/a.tar.gz"},
		{"file:///srv/c/index.json", "a.tar.gz", "file:///srv/c/a.tar.gz"},
		{"file:///srv/c/index.json", "https://cdn.example/a.tar.gz", "https://cdn.example/a.tar.gz"},
		{"https://m.example/c/index.json", "file:///etc/passwd", ""},
		{"https://m.example/c/index.json", "javascript:alert(1)", ""},
		{"https://m.example/c/index.json", "ftp://x/a", ""},
		{"https://m.example/c/index.json", "", ""},
		{"ftp://m.example/index.json", "a.tar.gz", ""},
	}
	for _, c := range cases {
		got, err := catalog.ResolveURL(c.base, c.ref)
		if c.want == "" {
			if err == nil {
				t.Errorf("ResolveURL(%q, %q) = %q, want an error", c.base, c.ref, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ResolveURL(%q, %q) = %q, %v; want %q", c.base, c.ref, got, err, c.want)
		}
	}
}

func TestDownloadLimits(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 10000) // 100000 bytes
	mux := http.NewServeMux()
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) })
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for off := 0; off < len(body); off += 1000 {
			_, _ = w.Write(body[off : off+1000])
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body[:10])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	mux.HandleFunc("/missing", http.NotFound)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()
	want := sum(body)

	for _, path := range []string{"/plain", "/chunked"} {
		var buf bytes.Buffer
		sha, n, err := catalog.Download(ctx, srv.Client(), srv.URL+path, int64(len(body)), &buf)
		if err != nil || sha != want || n != int64(len(body)) {
			t.Errorf("%s at the exact limit: %s %d %v", path, sha, n, err)
		}
		buf.Reset()
		_, _, err = catalog.Download(ctx, srv.Client(), srv.URL+path, int64(len(body))-1, &buf)
		if !errors.Is(err, catalog.ErrTooLarge) {
			t.Errorf("%s over the limit: %v", path, err)
		}
		if buf.Len() > len(body)-1 {
			t.Errorf("%s: wrote %d bytes past the limit", path, buf.Len())
		}
	}
	if _, _, err := catalog.Download(ctx, srv.Client(), srv.URL+"/missing", 100, io.Discard); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("404: %v", err)
	}
	if _, _, err := catalog.Download(ctx, srv.Client(), srv.URL+"/plain", 0, io.Discard); err == nil {
		t.Error("zero limit accepted")
	}
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := catalog.Download(cctx, srv.Client(), srv.URL+"/slow", 1<<20, io.Discard); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled download: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("cancel took too long")
	}

	// file://: limit and cancellation.
	p := filepath.Join(t.TempDir(), "a.bin")
	if err := os.WriteFile(p, body, 0o644); err != nil {
		t.Fatal(err)
	}
	if sha, n, err := catalog.Download(ctx, nil, fileURL(p), 1<<20, io.Discard); err != nil || sha != want || n != int64(len(body)) {
		t.Errorf("file download: %s %d %v", sha, n, err)
	}
	if _, _, err := catalog.Download(ctx, nil, fileURL(p), 10, io.Discard); !errors.Is(err, catalog.ErrTooLarge) {
		t.Errorf("file over the limit: %v", err)
	}
	done, cancel2 := context.WithCancel(ctx)
	cancel2()
	if _, _, err := catalog.Download(done, nil, fileURL(p), 1<<20, io.Discard); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled file download: %v", err)
	}
	if _, _, err := catalog.Download(ctx, nil, fileURL(t.TempDir()), 1<<20, io.Discard); err == nil {
		t.Error("directory downloaded")
	}
}

func TestCheckDownload(t *testing.T) {
	a := catalog.Archive{Size: 3, SHA256: sum([]byte("abc"))}
	if err := catalog.CheckDownload(a, sum([]byte("abc")), 3); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		sha string
		n   int64
	}{"size": {sum([]byte("abc")), 4}, "sha": {sum([]byte("abd")), 3}, "garbage": {"zz", 3}} {
		if err := catalog.CheckDownload(a, c.sha, c.n); !errors.Is(err, catalog.ErrChecksum) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestReceipts(t *testing.T) {
	pub, priv, _ := keyPair(t)
	_, otherPriv, _ := keyPair(t)
	keys := []ed25519.PublicKey{pub}
	r := catalog.Receipt{PluginID: "cloudflare-r2", Buyer: "dev@example.com", License: "regular", IssuedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Nonce: "abc123"}
	s, err := catalog.SignReceipt(priv, r)
	if err != nil {
		t.Fatal(err)
	}
	if url.QueryEscape(s) != s {
		t.Errorf("receipt %q is not URL-safe", s)
	}
	got, err := catalog.VerifyReceipt(" "+s+"\n", keys)
	if err != nil {
		t.Fatal(err)
	}
	if got != r {
		t.Errorf("round trip: %+v", got)
	}
	payload, sigPart, _ := strings.Cut(s, ".")
	enc := base64.RawURLEncoding
	// Tampered payload: another plugin id, signed bytes unchanged.
	js, _ := enc.DecodeString(payload)
	forged := enc.EncodeToString(bytes.Replace(js, []byte("cloudflare-r2"), []byte("cloudflare-r3"), 1)) + "." + sigPart
	if _, err := catalog.VerifyReceipt(forged, keys); !errors.Is(err, catalog.ErrBadSignature) {
		t.Errorf("tampered payload: %v", err)
	}
	rawSig, _ := enc.DecodeString(sigPart)
	rawSig[len(rawSig)-1] ^= 1
	if _, err := catalog.VerifyReceipt(payload+"."+enc.EncodeToString(rawSig), keys); !errors.Is(err, catalog.ErrBadSignature) {
		t.Errorf("tampered signature: %v", err)
	}
	other, _ := catalog.SignReceipt(otherPriv, r)
	if _, err := catalog.VerifyReceipt(other, keys); !errors.Is(err, catalog.ErrUnknownKey) {
		t.Errorf("untrusted: %v", err)
	}
	for _, s := range []string{payload, payload + "."} {
		if _, err := catalog.VerifyReceipt(s, keys); !errors.Is(err, catalog.ErrUnsigned) {
			t.Errorf("unsigned %q: %v", s, err)
		}
	}
	for name, bad := range map[string]string{
		"empty":      "",
		"three":      s + ".x",
		"padded":     payload + "=." + sigPart,
		"bad base64": "!!!." + sigPart,
	} {
		if _, err := catalog.VerifyReceipt(bad, keys); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	for _, bad := range []string{"hello", "hello.world", "a.b.c", "\x00.\xff", "{}.{}"} {
		if _, err := catalog.VerifyReceipt(bad, keys); err == nil {
			t.Errorf("garbage %q accepted", bad)
		}
	}
	if _, err := catalog.VerifyReceipt(strings.Repeat("a", catalog.MaxReceiptBytes+1), keys); !errors.Is(err, catalog.ErrTooLarge) {
		t.Errorf("huge: %v", err)
	}
	if _, err := catalog.VerifyReceipt(s, nil); !errors.Is(err, catalog.ErrUnknownKey) {
		t.Errorf("no keys: %v", err)
	}
	if _, err := catalog.SignReceipt(priv, catalog.Receipt{Buyer: "x"}); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("sign without plugin id: %v", err)
	}

	// Correctly signed but not a valid receipt: unknown field, no plugin id.
	signed := func(js string) string {
		raw, err := catalog.SignRaw(priv, []byte(catalog.ReceiptDomain+js))
		if err != nil {
			t.Fatal(err)
		}
		return enc.EncodeToString([]byte(js)) + "." + enc.EncodeToString(raw)
	}
	for _, js := range []string{
		`{"plugin_id":"cloudflare-r2","issued_at":"2025-01-01T00:00:00Z","admin":true}`,
		`{"buyer":"x","issued_at":"2025-01-01T00:00:00Z"}`,
		`{"plugin_id":"cloudflare-r2","issued_at":"2025-01-01T00:00:00Z"} {}`,
		`[]`,
	} {
		if _, err := catalog.VerifyReceipt(signed(js), keys); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("signed %s: %v, want ErrInvalid", js, err)
		}
	}
}

func TestSignaturesAreDomainSeparated(t *testing.T) {
	pub, priv, _ := keyPair(t)
	keys := []ed25519.PublicKey{pub}
	enc := base64.RawURLEncoding
	// An index.json signature presented as a receipt.
	js := []byte(`{"plugin_id":"cloudflare-r2","issued_at":"2025-01-01T00:00:00Z"}`)
	sig, _ := catalog.SignIndex(priv, js)
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sig)))
	if _, err := catalog.VerifyReceipt(enc.EncodeToString(js)+"."+enc.EncodeToString(raw), keys); !errors.Is(err, catalog.ErrBadSignature) {
		t.Errorf("index signature as a receipt: %v", err)
	}
	// A receipt signature presented as an index signature.
	s, _ := catalog.SignReceipt(priv, catalog.Receipt{PluginID: "cloudflare-r2"})
	p, sp, _ := strings.Cut(s, ".")
	payload, _ := enc.DecodeString(p)
	rsig, _ := enc.DecodeString(sp)
	if err := catalog.VerifyIndex(payload, []byte(base64.StdEncoding.EncodeToString(rsig)), keys); !errors.Is(err, catalog.ErrBadSignature) {
		t.Errorf("receipt signature as an index signature: %v", err)
	}
}

func TestVersions(t *testing.T) {
	ordered := []string{"0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "2.0.0"}
	for i := range ordered {
		for j := range ordered {
			c, err := catalog.CompareVersions(ordered[i], ordered[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if err != nil || c != want {
				t.Errorf("CompareVersions(%s, %s) = %d, %v; want %d", ordered[i], ordered[j], c, err, want)
			}
		}
	}
	if c, _ := catalog.CompareVersions("1.0.0+build.1", "1.0.0"); c != 0 {
		t.Error("build metadata counted")
	}
	if _, err := catalog.CompareVersions("1.0", "1.0.0"); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("bad version: %v", err)
	}
	p := catalog.Plugin{Versions: []catalog.Version{{Version: "1.2.0"}, {Version: "1.10.0"}, {Version: "1.10.0-rc.1"}}}
	if v, ok := p.Latest(); !ok || v.Version != "1.10.0" {
		t.Errorf("Latest = %v", v)
	}
	if _, ok := (&catalog.Plugin{}).Latest(); ok {
		t.Error("Latest of no versions")
	}
}

// FuzzVerifyReceipt: no panic, and nothing but correctly signed receipts verify.
func FuzzVerifyReceipt(f *testing.F) {
	seed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	good, err := catalog.SignReceipt(seed, catalog.Receipt{PluginID: "cloudflare-r2", Nonce: "n"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add(".")
	f.Add("a.b")
	f.Add(good[:len(good)-2])
	f.Add(strings.Replace(good, ".", "..", 1))
	keys := []ed25519.PublicKey{seed.Public().(ed25519.PublicKey)}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := catalog.VerifyReceipt(s, keys)
		if err != nil {
			return
		}
		if !catalog.ValidID(r.PluginID) {
			t.Fatalf("verified a receipt without a valid plugin id: %q", s)
		}
		if strings.TrimSpace(s) != good {
			// Any other accepted string must be a different encoding of a signed payload, which
			// strict base64 forbids.
			t.Fatalf("accepted %q", s)
		}
	})
}

// FuzzParseIndex: no panic on any input, and whatever parses is valid.
func FuzzParseIndex(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	x := &catalog.Index{SchemaVersion: 1, Serial: 1, Expires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Plugins: []catalog.Plugin{{
		ID: "cloudflare-r2", Name: "R2", Kind: "storage-provider", Pricing: catalog.Pricing{Model: "free"},
		Versions: []catalog.Version{{Version: "1.0.0", MinHostVersion: "1.0.0", ProtocolVersions: []int{1}, Archives: map[string]catalog.Archive{
			"linux/amd64": {URL: "a.tar.gz", Size: 1, SHA256: strings.Repeat("a", 64), Signature: "x"},
		}}},
	}}}
	good, _ := json.Marshal(x)
	f.Add(good)
	f.Add([]byte(`{"schema_version":1,"serial":1,"expires":"2030-01-01T00:00:00Z","plugins":[]}`))
	f.Add([]byte(`{"schema_version":1,"serial":1,"expires":"2030-01-01T00:00:00+02:00","plugins":null}`))
	f.Add([]byte(`{"schema_version":1,"serial":-1,"expires":"not a time","plugins":[]}`))
	f.Add([]byte(`{"schema_version":1,"serial":1e30,"expires":null,"plugins":[]}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`{"schema_version":1e400}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		idx, err := catalog.ParseIndex(data)
		if err == nil {
			if err := idx.Validate(); err != nil {
				t.Fatalf("parsed an invalid index: %v", err)
			}
			for _, p := range idx.Plugins {
				p.Latest()
			}
		}
		sig, _ := catalog.SignIndex(priv, data)
		_ = catalog.VerifyIndex(data, data, []ed25519.PublicKey{priv.Public().(ed25519.PublicKey)})
		if err := catalog.VerifyIndex(data, sig, []ed25519.PublicKey{priv.Public().(ed25519.PublicKey)}); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
	})
}

func ExampleArchiveMessage() {
	fmt.Printf("%q\n", catalog.ArchiveMessage("cloudflare-r2", "1.0.0", "linux/amd64", strings.Repeat("0", 64)))
	// Output: "magicads-archive-v1\ncloudflare-r2\n1.0.0\nlinux/amd64\n0000000000000000000000000000000000000000000000000000000000000000\n"
}
