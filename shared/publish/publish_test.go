package publish_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/shared/catalog"
	"github.com/magicads/r2storage/shared/publish"
)

// repoRoot is the repository root, relative to this package.
const repoRoot = "../.."

// s3Bundle is the s3-compatible provider's bundle folder.
var s3Bundle = filepath.Join(repoRoot, "plugin", "s3compat", "bundle")

// copyBundle copies the bundle files of src (manifest.json, schema/,
// migrations/) into a new folder, applying edit to the manifest.
func copyBundle(t *testing.T, src string, edit func(man map[string]any)) string {
	t.Helper()
	dst := t.TempDir()
	for _, rel := range []string{"schema/settings.schema.json", "migrations"} {
		from := filepath.Join(src, rel)
		fi, err := os.Stat(from)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() {
			copyFile(t, from, filepath.Join(dst, rel))
			continue
		}
		entries, err := os.ReadDir(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dst, rel), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			copyFile(t, filepath.Join(from, e.Name()), filepath.Join(dst, rel, e.Name()))
		}
	}
	var man map[string]any
	if err := json.Unmarshal(readFile(t, filepath.Join(src, "manifest.json")), &man); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(man)
	}
	data, _ := json.MarshalIndent(man, "", "  ")
	if err := os.WriteFile(filepath.Join(dst, "manifest.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, readFile(t, from), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// fakeBinary writes a stand-in plugin binary.
func fakeBinary(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "plugin-bin")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// entries lists an archive's entries: name → mode, checking the fixed
// owner, group and mtime of each.
func entries(t *testing.T, archive string, mtime time.Time) (map[string]int64, []string) {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(readFile(t, archive)))
	if err != nil {
		t.Fatal(err)
	}
	if gz.Name != "" || !gz.ModTime.IsZero() {
		t.Errorf("gzip header carries name %q, time %v", gz.Name, gz.ModTime)
	}
	tr := tar.NewReader(gz)
	got := map[string]int64{}
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		got[h.Name] = h.Mode
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(mtime) {
			t.Errorf("%s: uid %d gid %d %q %q mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("entries not sorted: %v", names)
		}
	}
	return got, names
}

// TestPackIsReproducibleAndComplete: two packs of the same bundle and
// binary give the same bytes whatever the files' on-disk times; the
// archive holds exactly the bundle files and the binary, with fixed modes.
func TestPackIsReproducibleAndComplete(t *testing.T) {
	bin := fakeBinary(t, "MZ fake binary")
	ctx := context.Background()
	var sums []string
	var outs []string
	for i := range 2 {
		out := t.TempDir()
		res, err := publish.Pack(ctx, publish.PackOptions{BundleDir: repoRoot, Binaries: map[string]string{"windows/amd64": bin, "linux/arm64": bin}, OutDir: out})
		if err != nil {
			t.Fatalf("pack %d: %v", i, err)
		}
		if len(res.Archives) != 2 || res.Archives[0].Platform != "linux/arm64" || res.Archives[1].Platform != "windows/amd64" || res.Manifest.ID != "cloudflare-r2" {
			t.Fatalf("pack %d: %+v", i, res)
		}
		a := res.Archives[1]
		if filepath.Base(a.Path) != "cloudflare-r2_1.0.0_windows_amd64.tar.gz" {
			t.Errorf("archive name %s", a.Path)
		}
		if side := string(readFile(t, a.Path+".sha256")); side != a.SHA256+"  cloudflare-r2_1.0.0_windows_amd64.tar.gz\n" {
			t.Errorf(".sha256 = %q", side)
		}
		sums = append(sums, a.SHA256)
		outs = append(outs, out)
		// Later files get another on-disk mtime; the archive must not care.
		later := time.Now().Add(time.Duration(i+1) * time.Hour)
		if err := os.Chtimes(bin, later, later); err != nil {
			t.Fatal(err)
		}
	}
	if sums[0] != sums[1] {
		t.Fatalf("two packs differ: %s vs %s", sums[0], sums[1])
	}
	got, names := entries(t, filepath.Join(outs[0], "cloudflare-r2_1.0.0_windows_amd64.tar.gz"), publish.DefaultModTime)
	want := map[string]int64{
		"bin/":                        0o755,
		"bin/cloudflare-r2.exe":       0o755,
		"manifest.json":               0o644,
		"migrations/":                 0o755,
		"schema/":                     0o755,
		"schema/settings.schema.json": 0o644,
		"migrations/000001_register_provider.up.sql":   0o644,
		"migrations/000001_register_provider.down.sql": 0o644,
	}
	for n, mode := range want {
		if got[n] != mode {
			t.Errorf("%s: mode %o, want %o (entries %v)", n, got[n], mode, names)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries %v, want exactly %d (the bundle at the repository root must not pull in other files)", names, len(want))
	}
	sumsFile := string(readFile(t, filepath.Join(outs[0], publish.SumsFile)))
	if lines := strings.Split(strings.TrimSpace(sumsFile), "\n"); len(lines) != 2 || !strings.HasSuffix(lines[0], "  cloudflare-r2_1.0.0_linux_arm64.tar.gz") ||
		lines[1] != sums[0]+"  cloudflare-r2_1.0.0_windows_amd64.tar.gz" {
		t.Errorf("SHA256SUMS = %q", sumsFile)
	}

	// SOURCE_DATE_EPOCH (ModTime) changes every entry's mtime.
	epoch, err := publish.ModTimeFromEnv("1700000000")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res, err := publish.Pack(ctx, publish.PackOptions{BundleDir: repoRoot, Binaries: map[string]string{"windows/amd64": bin}, OutDir: out, ModTime: epoch})
	if err != nil {
		t.Fatal(err)
	}
	entries(t, res.Archives[0].Path, time.Unix(1700000000, 0))
	for _, bad := range []string{"-1", "soon", "1.5"} {
		if _, err := publish.ModTimeFromEnv(bad); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
			t.Errorf("SOURCE_DATE_EPOCH %q: %v", bad, err)
		}
	}
}

// TestPackSumsCoverEveryArchive: packing a second provider into the same
// folder keeps the first one's archives in SHA256SUMS.
func TestPackSumsCoverEveryArchive(t *testing.T) {
	out := t.TempDir()
	ctx := context.Background()
	bin := fakeBinary(t, "ELF fake")
	if _, err := publish.Pack(ctx, publish.PackOptions{BundleDir: repoRoot, Binaries: map[string]string{"linux/amd64": bin}, OutDir: out}); err != nil {
		t.Fatal(err)
	}
	res, err := publish.Pack(ctx, publish.PackOptions{BundleDir: s3Bundle, Binaries: map[string]string{"linux/amd64": bin}, OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := entries(t, res.Archives[0].Path, publish.DefaultModTime)
	if got["bin/s3-compatible"] != 0o755 || got["migrations/000001_init.up.sql"] != 0o644 {
		t.Errorf("s3-compatible archive entries %v", got)
	}
	sums := string(readFile(t, filepath.Join(out, publish.SumsFile)))
	for _, name := range []string{"cloudflare-r2_1.0.0_linux_amd64.tar.gz", "s3-compatible_1.0.0_linux_amd64.tar.gz"} {
		if !strings.Contains(sums, "  "+name+"\n") {
			t.Errorf("SHA256SUMS lacks %s:\n%s", name, sums)
		}
	}
}

// TestPackRefuses: a bad bundle is refused before anything is built, and
// platforms must be the manifest's.
func TestPackRefuses(t *testing.T) {
	ctx := context.Background()
	bin := fakeBinary(t, "x")
	out := t.TempDir()
	noSchema := copyBundle(t, s3Bundle, func(man map[string]any) { man["settings_schema"] = "schema/missing.json" })
	badID := copyBundle(t, s3Bundle, func(man map[string]any) { man["id"] = "Not An ID" })
	strayMigration := copyBundle(t, s3Bundle, nil)
	if err := os.WriteFile(filepath.Join(strayMigration, "migrations", "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		o    publish.PackOptions
		want string
	}{
		{"no manifest", publish.PackOptions{BundleDir: t.TempDir(), Binaries: map[string]string{"linux/amd64": bin}, OutDir: out}, "manifest.json"},
		{"missing schema", publish.PackOptions{BundleDir: noSchema, Binaries: map[string]string{"linux/amd64": bin}, OutDir: out}, "schema/missing.json"},
		{"bad id", publish.PackOptions{BundleDir: badID, Binaries: map[string]string{"linux/amd64": bin}, OutDir: out}, "id"},
		{"stray migration", publish.PackOptions{BundleDir: strayMigration, Binaries: map[string]string{"linux/amd64": bin}, OutDir: out}, "notes.txt"},
		{"unknown platform", publish.PackOptions{BundleDir: s3Bundle, Binaries: map[string]string{"plan9/amd64": bin}, OutDir: out}, "plan9/amd64"},
		{"unknown build platform", publish.PackOptions{BundleDir: s3Bundle, Main: "./x", Platforms: []string{"plan9/amd64"}, OutDir: out}, "plan9/amd64"},
		{"main and binaries", publish.PackOptions{BundleDir: s3Bundle, Main: "./x", Binaries: map[string]string{"linux/amd64": bin}, OutDir: out}, "not both"},
		{"neither", publish.PackOptions{BundleDir: s3Bundle, OutDir: out}, "not both or neither"},
		{"missing binary", publish.PackOptions{BundleDir: s3Bundle, Binaries: map[string]string{"linux/amd64": filepath.Join(out, "none")}, OutDir: out}, "linux/amd64 binary"},
		{"build fails", publish.PackOptions{BundleDir: s3Bundle, Main: "./does-not-exist", MainDir: t.TempDir(), Platforms: []string{"linux/amd64"}, OutDir: out}, "go build ./does-not-exist for linux/amd64"},
	} {
		_, err := publish.Pack(ctx, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
	}
	if left, _ := os.ReadDir(out); len(left) != 0 {
		t.Errorf("refused packs wrote %d files", len(left))
	}
}

// packFake packs bundle with a fake binary for each platform into out.
func packFake(t *testing.T, bundle, out string, platforms ...string) {
	t.Helper()
	bins := map[string]string{}
	for _, p := range platforms {
		bins[p] = fakeBinary(t, "fake "+bundle+" "+p)
	}
	if _, err := publish.Pack(context.Background(), publish.PackOptions{BundleDir: bundle, Binaries: bins, OutDir: out}); err != nil {
		t.Fatal(err)
	}
}

// TestCatalogSignsEveryPluginAndVersion: one catalog of two providers,
// one of them with two versions, with metadata from each archive's
// manifest, verifies as a host would.
func TestCatalogSignsEveryPluginAndVersion(t *testing.T) {
	ctx := context.Background()
	out := t.TempDir()
	packFake(t, repoRoot, out, "linux/amd64", "darwin/arm64", "windows/amd64")
	packFake(t, s3Bundle, out, "linux/amd64")
	packFake(t, copyBundle(t, s3Bundle, func(man map[string]any) { man["version"] = "1.10.0"; man["name"] = "S3-Compatible Storage Next" }), out, "linux/amd64")
	packFake(t, copyBundle(t, s3Bundle, func(man map[string]any) { man["version"] = "1.2.0" }), out, "linux/amd64")
	keys := filepath.Join(t.TempDir(), "keys")
	res, err := publish.Catalog(ctx, publish.CatalogOptions{Dir: out, KeysDir: keys, CheckoutBase: "http://market.test:9000/"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.KeysCreated {
		t.Error("keys not reported created")
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
		t.Fatal("the catalog's marketplace.pub is not the signing key")
	}
	indexURL, _ := publish.FileURL(filepath.Join(out, catalog.IndexFile))
	idx, err := catalog.Fetch(ctx, nil, indexURL, trusted)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Plugins) != 2 || idx.Plugins[0].ID != "cloudflare-r2" || idx.Plugins[1].ID != "s3-compatible" {
		t.Fatalf("plugins %+v", idx.Plugins)
	}
	r2, s3 := idx.Plugins[0], idx.Plugins[1]
	if r2.Name != "Cloudflare R2 Storage" || r2.Kind != "storage-provider" || r2.Pricing.Model != "paid" || !r2.Pricing.FreeForExtendedLicense ||
		r2.Pricing.Price == nil || *r2.Pricing.Price != (catalog.Price{Amount: "29.00", Currency: "USD"}) || r2.CheckoutURL != "http://market.test:9000/checkout/cloudflare-r2" {
		t.Errorf("cloudflare-r2 %+v", r2)
	}
	if len(r2.Versions) != 1 || len(r2.Versions[0].Archives) != 3 {
		t.Errorf("cloudflare-r2 versions %+v", r2.Versions)
	}
	if s3.Pricing.Model != "free" || s3.Pricing.Price != nil || s3.Name != "S3-Compatible Storage Next" || s3.CheckoutURL != "http://market.test:9000/checkout/s3-compatible" {
		t.Errorf("s3-compatible %+v (metadata must come from the newest version)", s3)
	}
	var versions []string
	for _, v := range s3.Versions {
		versions = append(versions, v.Version)
		if v.MinHostVersion != "1.0.0" || len(v.ProtocolVersions) != 1 || v.ProtocolVersions[0] != 1 {
			t.Errorf("version %+v", v)
		}
	}
	if strings.Join(versions, " ") != "1.0.0 1.2.0 1.10.0" {
		t.Errorf("s3-compatible versions %v, want oldest first by semver", versions)
	}
	for _, p := range idx.Plugins {
		for _, v := range p.Versions {
			for platform, a := range v.Archives {
				if a.URL != publish.ArchiveName(p.ID, v.Version, platform) {
					t.Errorf("%s %s %s: url %q", p.ID, v.Version, platform, a.URL)
				}
				if err := catalog.VerifyArchive(a, p.ID, v.Version, platform, trusted); err != nil {
					t.Error(err)
				}
			}
		}
	}
	vr, err := publish.Verify(ctx, publish.VerifyOptions{Dir: out, TrustedKeys: trusted})
	if err != nil || len(vr.Archives) != 6 {
		t.Fatalf("verify: %+v %v", vr, err)
	}

	// Rerunning gives the same index but for a larger serial and a later
	// expiry (ed25519 is deterministic, so only those differ).
	before := readFile(t, filepath.Join(out, catalog.IndexFile))
	res2, err := publish.Catalog(ctx, publish.CatalogOptions{Dir: out, KeysDir: keys, CheckoutBase: "http://market.test:9000"})
	if err != nil {
		t.Fatal(err)
	}
	if res2.KeysCreated || res2.KeyID != res.KeyID {
		t.Error("the second run did not reuse the key pair")
	}
	after := readFile(t, filepath.Join(out, catalog.IndexFile))
	b, a := freshness(t, before), freshness(t, after)
	if a.serial <= b.serial || a.expires.Before(b.expires) {
		t.Errorf("rebuilt: serial %d then %d, expires %s then %s; the serial must grow", b.serial, a.serial, b.expires, a.expires)
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

// freshness reads the serial and expiry of index.json's bytes.
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

// TestCatalogSerialAndExpiry: the serial is the build time in seconds and
// never goes back (not even below an earlier index's, whatever the clock
// says); the expiry defaults to 30 days and ValidFor changes it.
func TestCatalogSerialAndExpiry(t *testing.T) {
	ctx := context.Background()
	keys := filepath.Join(t.TempDir(), "keys")
	out := t.TempDir()
	packFake(t, s3Bundle, out, "linux/amd64")
	now := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	cat := func(o publish.CatalogOptions) (indexFreshness, error) {
		o.Dir, o.KeysDir, o.Now = out, keys, clock
		if _, err := publish.Catalog(ctx, o); err != nil {
			return indexFreshness{}, err
		}
		return freshness(t, readFile(t, filepath.Join(out, catalog.IndexFile))), nil
	}
	f, err := cat(publish.CatalogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if f.serial != now.Unix() || !f.expires.Equal(now.Add(30*24*time.Hour)) {
		t.Errorf("serial %d expires %s; want %d and 30 days on", f.serial, f.expires, now.Unix())
	}
	// Same second again: the serial still grows; ValidFor changes the expiry.
	g, err := cat(publish.CatalogOptions{ValidFor: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if g.serial != f.serial+1 || !g.expires.Equal(now.Add(48*time.Hour)) {
		t.Errorf("second build: serial %d expires %s", g.serial, g.expires)
	}
	// An index from the future (a clock that was ahead): the next build
	// still goes above it.
	ahead := now.Add(1000 * time.Hour).Unix()
	if _, err := cat(publish.CatalogOptions{Serial: ahead}); err != nil {
		t.Fatal(err)
	}
	h, err := cat(publish.CatalogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h.serial != ahead+1 {
		t.Errorf("after serial %d, the next build has %d", ahead, h.serial)
	}
	// A serial not above the previous one, or a bad validity, is refused.
	for _, o := range []publish.CatalogOptions{{Serial: ahead}, {Serial: -3}, {ValidFor: -time.Hour}, {ValidFor: 9000 * time.Hour}} {
		if _, err := cat(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// TestKeys: the key pair is created once and reused; a missing
// marketplace.pub is rewritten; a mismatched or orphan one is refused.
func TestKeys(t *testing.T) {
	base := t.TempDir()
	keys := filepath.Join(base, "home", ".config", "magicads", "dev-marketplace")
	pub, created, err := publish.EnsureKeys(keys)
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	if fi, err := os.Stat(filepath.Join(keys, catalog.PrivateKeyFile)); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600) {
		t.Fatalf("private key: %v %v", fi, err)
	}
	keyPEM := readFile(t, filepath.Join(keys, catalog.PrivateKeyFile))
	pub2, created, err := publish.EnsureKeys(keys)
	if err != nil || created || !pub.Equal(pub2) || !bytes.Equal(readFile(t, filepath.Join(keys, catalog.PrivateKeyFile)), keyPEM) {
		t.Fatalf("second: %v %v", created, err)
	}
	if err := os.Remove(filepath.Join(keys, catalog.PublicKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := publish.EnsureKeys(keys); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(keys, catalog.PublicKeyFile)); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(base, "other")
	if _, _, err := catalog.GenerateKeyPair(other); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(other, catalog.PublicKeyFile), filepath.Join(keys, catalog.PublicKeyFile))
	if _, _, err := publish.EnsureKeys(keys); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched pub: %v", err)
	}
	if err := os.Remove(filepath.Join(other, catalog.PrivateKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := publish.EnsureKeys(other); err == nil || !strings.Contains(err.Error(), "without") {
		t.Errorf("pub without key: %v", err)
	}
}

// TestKeysRefusedInsideRepositoryAndCatalog: a key folder in a forbidden
// folder (through a symbolic link too) or in the catalog is refused, and
// nothing is created there.
func TestKeysRefusedInsideRepositoryAndCatalog(t *testing.T) {
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
		if err := publish.RefuseKeysInside(dir, filepath.Join(base, "elsewhere"), repo); err == nil || !strings.Contains(err.Error(), "inside") {
			t.Errorf("%s: %v", dir, err)
		}
	}
	if err := publish.RefuseKeysInside(filepath.Join(base, "repo-keys"), repo); err != nil {
		t.Errorf("a sibling named like the repository: %v", err)
	}

	out := filepath.Join(repo, "dist")
	packFake(t, s3Bundle, out, "linux/amd64")
	ctx := context.Background()
	for _, o := range []publish.CatalogOptions{
		{Dir: out, KeysDir: filepath.Join(out, "keys")},
		{Dir: out, KeysDir: filepath.Join(link, "keys"), Forbid: []string{repo}},
	} {
		if _, err := publish.Catalog(ctx, o); err == nil || !strings.Contains(err.Error(), "inside") {
			t.Errorf("keys %s: %v", o.KeysDir, err)
		}
		if _, err := os.Stat(o.KeysDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused key folder %s was created", o.KeysDir)
		}
	}
	if _, err := os.Stat(filepath.Join(out, catalog.IndexFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused catalog was written")
	}
}

// TestCatalogRefuses: bad checkout bases, stale .sha256 files, misnamed
// archives and empty folders are refused with the cause and the fix.
func TestCatalogRefuses(t *testing.T) {
	ctx := context.Background()
	keys := filepath.Join(t.TempDir(), "keys")
	out := t.TempDir()
	packFake(t, s3Bundle, out, "linux/amd64")
	for _, base := range []string{"javascript:alert(1)", "ftp://x", "127.0.0.1:8090", "http://x/?a=b", "http://u:p@x"} {
		if _, err := publish.Catalog(ctx, publish.CatalogOptions{Dir: out, KeysDir: keys, CheckoutBase: base}); err == nil || !strings.Contains(err.Error(), "checkout base") {
			t.Errorf("checkout base %q: %v", base, err)
		}
	}
	archive := filepath.Join(out, "s3-compatible_1.0.0_linux_amd64.tar.gz")
	good := readFile(t, archive+".sha256")
	if err := os.WriteFile(archive+".sha256", []byte(strings.Repeat("0", 64)+"  x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := publish.Catalog(ctx, publish.CatalogOptions{Dir: out, KeysDir: keys}); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("stale .sha256: %v", err)
	}
	if err := os.WriteFile(archive+".sha256", good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(archive, filepath.Join(out, "renamed.tar.gz")); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(archive + ".sha256")
	if _, err := publish.Catalog(ctx, publish.CatalogOptions{Dir: out, KeysDir: keys}); err == nil || !strings.Contains(err.Error(), "s3-compatible_1.0.0_<os>_<arch>.tar.gz") {
		t.Errorf("misnamed archive: %v", err)
	}
	if _, err := publish.Catalog(ctx, publish.CatalogOptions{Dir: t.TempDir(), KeysDir: keys}); err == nil || !strings.Contains(err.Error(), "no .tar.gz archives") {
		t.Errorf("empty folder: %v", err)
	}
}

// TestVerifyRefuses: tampered archives, untrusted keys and archives the
// host would refuse to unpack fail verification.
func TestVerifyRefuses(t *testing.T) {
	ctx := context.Background()
	keys := filepath.Join(t.TempDir(), "keys")
	out := t.TempDir()
	packFake(t, s3Bundle, out, "linux/amd64")
	if _, err := publish.Catalog(ctx, publish.CatalogOptions{Dir: out, KeysDir: keys}); err != nil {
		t.Fatal(err)
	}
	trusted, _ := catalog.LoadPublicKeys(filepath.Join(out, catalog.PublicKeyFile))

	// Over HTTP, as a host fetches it.
	srv := httptest.NewServer(http.FileServer(http.Dir(out)))
	defer srv.Close()
	if _, err := publish.Verify(ctx, publish.VerifyOptions{URL: srv.URL + "/index.json", TrustedKeys: trusted}); err != nil {
		t.Fatalf("over http: %v", err)
	}
	otherPub, _, _ := ed25519.GenerateKey(nil)
	if _, err := publish.Verify(ctx, publish.VerifyOptions{Dir: out, TrustedKeys: []ed25519.PublicKey{otherPub}}); !errors.Is(err, catalog.ErrUnknownKey) {
		t.Errorf("untrusted key: %v", err)
	}
	if _, err := publish.Verify(ctx, publish.VerifyOptions{Dir: out, TrustedKeys: trusted, Now: func() time.Time { return time.Now().Add(31 * 24 * time.Hour) }}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired: %v", err)
	}
	archive := filepath.Join(out, "s3-compatible_1.0.0_linux_amd64.tar.gz")
	data := readFile(t, archive)
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(archive, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := publish.Verify(ctx, publish.VerifyOptions{Dir: out, TrustedKeys: trusted}); !errors.Is(err, catalog.ErrChecksum) {
		t.Errorf("tampered archive: %v", err)
	}

	// An archive with a symbolic link: Catalog's own check refuses it.
	hostile := t.TempDir()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	man := readFile(t, filepath.Join(s3Bundle, "manifest.json"))
	_ = tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(man)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(man)
	_ = tw.WriteHeader(&tar.Header{Name: "bin/s3-compatible", Typeflag: tar.TypeSymlink, Linkname: "/bin/sh"})
	_ = tw.Close()
	_ = gz.Close()
	if err := os.WriteFile(filepath.Join(hostile, "s3-compatible_1.0.0_linux_amd64.tar.gz"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := publish.Catalog(ctx, publish.CatalogOptions{Dir: hostile, KeysDir: keys}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("symlink archive: %v", err)
	}
}

// TestThirdPartyProvider: a provider outside this repository, with its own
// module and main package, packs (reproducibly), signs and verifies.
func TestThirdPartyProvider(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("the go command is needed to build the plugin")
	}
	mod := t.TempDir()
	files := map[string]string{
		"go.mod":                 "module example.com/acme-store\n\ngo 1.21\n",
		"cmd/acme-store/main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"acme-store\") }\n",
	}
	for name, content := range files {
		p := filepath.Join(mod, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bundle := copyBundle(t, s3Bundle, func(man map[string]any) {
		man["id"], man["name"], man["version"], man["publisher"] = "acme-store", "Acme Store", "0.3.0", "Acme"
		exes := map[string]any{}
		for p := range man["executables"].(map[string]any) {
			exe := "acme/bin/acme-store"
			if strings.HasPrefix(p, "windows/") {
				exe += ".exe"
			}
			exes[p] = exe
		}
		man["executables"] = exes
		man["migrations"] = "db/migrations"
	})
	if err := os.Rename(filepath.Join(bundle, "migrations"), filepath.Join(bundle, "db")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(bundle, "db", "migrations"), 0o755); err != nil { // an empty migrations folder
		t.Fatal(err)
	}
	host := runtime.GOOS + "/" + runtime.GOARCH
	ctx := context.Background()
	var sums []string
	var out string
	for range 2 {
		out = t.TempDir()
		res, err := publish.Pack(ctx, publish.PackOptions{BundleDir: bundle, Main: "./cmd/acme-store", MainDir: mod, Platforms: []string{host}, OutDir: out})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Archives) != 1 || filepath.Base(res.Archives[0].Path) != publish.ArchiveName("acme-store", "0.3.0", host) {
			t.Fatalf("archives %+v", res.Archives)
		}
		sums = append(sums, res.Archives[0].SHA256)
		got, names := entries(t, res.Archives[0].Path, publish.DefaultModTime)
		if got["db/migrations/"] != 0o755 || got["acme/bin/"] != 0o755 || len(got) != 8 {
			t.Errorf("entries %v", names)
		}
	}
	if sums[0] != sums[1] {
		t.Errorf("two builds of the same module differ: %s vs %s", sums[0], sums[1])
	}
	keys := filepath.Join(t.TempDir(), "keys")
	if _, err := publish.Catalog(ctx, publish.CatalogOptions{Dir: out, KeysDir: keys, Forbid: []string{mod}}); err != nil {
		t.Fatal(err)
	}
	trusted, _ := catalog.LoadPublicKeys(filepath.Join(out, catalog.PublicKeyFile))
	res, err := publish.Verify(ctx, publish.VerifyOptions{Dir: out, TrustedKeys: trusted})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.Archives); got != fmt.Sprintf("[{acme-store 0.3.0 %s %s}]", host, res.Archives[0].URL) {
		t.Errorf("verified %s", got)
	}
}
