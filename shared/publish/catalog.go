package publish

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/magicads/r2storage/shared/catalog"
	"github.com/magicads/r2storage/shared/manifest"
)

// DefaultCheckoutBase is where scripts/devmarket listens by default.
const DefaultCheckoutBase = "http://127.0.0.1:8090"

// DefaultValidFor is how long an index is valid by default: long enough
// that a host never sees an index expire while the marketplace re-signs it
// on schedule, short enough that a frozen index stops working in a month.
const DefaultValidFor = 30 * 24 * time.Hour

// MaxValidFor caps CatalogOptions.ValidFor: an index valid for years is a
// frozen catalog waiting to happen.
const MaxValidFor = 366 * 24 * time.Hour

// maxManifestBytes caps manifest.json read from an archive.
const maxManifestBytes = 1 << 20

// CatalogOptions says what Catalog signs and how.
type CatalogOptions struct {
	// Dir is the catalog folder: it holds the archives, and receives
	// index.json, index.json.sig and marketplace.pub.
	Dir string
	// KeysDir holds marketplace.key and marketplace.pub, created on first
	// use. It may not be inside Dir or any Forbid folder.
	KeysDir string
	// Forbid are folders the keys folder may not be inside (e.g. the
	// repository), besides Dir.
	Forbid []string
	// CheckoutBase is the base URL of the checkout; each plugin's
	// checkout_url is CheckoutBase + "/checkout/" + id. "" is
	// DefaultCheckoutBase.
	CheckoutBase string
	// ValidFor is how long hosts accept the index; 0 is DefaultValidFor,
	// at most MaxValidFor.
	ValidFor time.Duration
	// Serial is the index serial; 0 is the build time in Unix seconds,
	// raised above the serial of the index.json already in Dir. A given
	// serial must be above that one too.
	Serial int64
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// CatalogResult is what Catalog wrote.
type CatalogResult struct {
	// Index is the signed index.
	Index *catalog.Index
	// KeyID is the id of the signing key (catalog.KeyID).
	KeyID string
	// KeysCreated is true when the key pair was created by this call.
	KeysCreated bool
	// Files are the paths written: index.json, index.json.sig, marketplace.pub.
	Files []string
}

// Catalog signs every archive in o.Dir into a new index.json,
// index.json.sig and marketplace.pub there, then verifies the result as a
// host would (Verify). See the package documentation for the format.
func Catalog(ctx context.Context, o CatalogOptions) (*CatalogResult, error) {
	if o.Dir == "" || o.KeysDir == "" {
		return nil, errors.New("catalog: the catalog folder and the keys folder are required")
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	validFor := o.ValidFor
	if validFor == 0 {
		validFor = DefaultValidFor
	}
	if validFor < 0 || validFor > MaxValidFor {
		return nil, fmt.Errorf("catalog: valid-for %s must be more than 0 and at most %s (e.g. 720h for 30 days)", validFor, MaxValidFor)
	}
	base := o.CheckoutBase
	if base == "" {
		base = DefaultCheckoutBase
	}
	if _, err := CheckoutURL(base, "x"); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("catalog: the catalog folder %s is not a folder; pack archives into it first", dir)
	}
	if err := RefuseKeysInside(o.KeysDir, append([]string{dir}, o.Forbid...)...); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	t := now()
	serial, err := nextSerial(filepath.Join(dir, catalog.IndexFile), o.Serial, t)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	plugins, err := scanArchives(dir)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	pub, created, err := EnsureKeys(o.KeysDir)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	priv, err := catalog.LoadPrivateKey(filepath.Join(o.KeysDir, catalog.PrivateKeyFile))
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}

	idx := catalog.Index{SchemaVersion: catalog.SchemaVersion, Serial: serial, Expires: t.Add(validFor).UTC().Truncate(time.Second), Plugins: []catalog.Plugin{}}
	for _, sp := range plugins {
		p, err := sp.plugin(priv, base)
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		idx.Plugins = append(idx.Plugins, p)
	}
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	data = append(data, '\n')
	parsed, err := catalog.ParseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("catalog: the generated index is invalid: %w", err)
	}
	sig, err := catalog.SignIndex(priv, data)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	pubPEM, err := catalog.MarshalPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	res := &CatalogResult{Index: parsed, KeyID: catalog.KeyID(pub), KeysCreated: created}
	for _, f := range []struct {
		name string
		data []byte
	}{{catalog.PublicKeyFile, pubPEM}, {catalog.IndexFile, data}, {catalog.IndexSignatureFile, sig}} {
		p := filepath.Join(dir, f.name)
		if err := writeFile(p, f.data, 0o644); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		res.Files = append(res.Files, p)
	}
	if _, err := Verify(ctx, VerifyOptions{Dir: dir, TrustedKeys: []ed25519.PublicKey{pub}, Now: func() time.Time { return t }}); err != nil {
		return nil, fmt.Errorf("catalog: the written catalog does not verify: %w", err)
	}
	return res, nil
}

// scannedArchive is one archive found in a catalog folder.
type scannedArchive struct {
	name     string
	platform string
	sha256   string
	size     int64
	man      manifest.Manifest
}

// scannedPlugin is all the archives of one plugin id, by version.
type scannedPlugin struct {
	id       string
	versions map[string][]scannedArchive
}

// scanArchives reads every archive of dir, sorted by plugin id.
func scanArchives(dir string) ([]*scannedPlugin, error) {
	names, err := archiveNames(dir)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s holds no %s archives; pack some into it first (magicads-plugin pack --out %s)", dir, ArchiveSuffix, dir)
	}
	byID := map[string]*scannedPlugin{}
	for _, n := range names {
		a, err := scanArchive(dir, n)
		if err != nil {
			return nil, err
		}
		sp := byID[a.man.ID]
		if sp == nil {
			sp = &scannedPlugin{id: a.man.ID, versions: map[string][]scannedArchive{}}
			byID[a.man.ID] = sp
		}
		sp.versions[a.man.Version] = append(sp.versions[a.man.Version], a)
	}
	out := make([]*scannedPlugin, 0, len(byID))
	for _, sp := range byID {
		out = append(out, sp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}

// scanArchive hashes one archive, checks its .sha256 file and reads its
// manifest; the name must be the one Pack gives it.
func scanArchive(dir, name string) (scannedArchive, error) {
	p := filepath.Join(dir, name)
	sum, size, err := hashFile(p)
	if err != nil {
		return scannedArchive{}, err
	}
	if err := checkSumFile(p+".sha256", sum); err != nil {
		return scannedArchive{}, err
	}
	man, err := readArchiveManifest(p)
	if err != nil {
		return scannedArchive{}, fmt.Errorf("%s: %w (pack it again, or remove it from %s)", name, err, dir)
	}
	platform := ""
	for _, pl := range man.Platforms() {
		if ArchiveName(man.ID, man.Version, pl) == name {
			platform = pl
		}
	}
	if platform == "" {
		return scannedArchive{}, fmt.Errorf("%s: its manifest says %s %s with platforms %s, so its name must be %s_%s_<os>_<arch>%s; pack it again or remove it from %s",
			name, man.ID, man.Version, strings.Join(man.Platforms(), ", "), man.ID, man.Version, ArchiveSuffix, dir)
	}
	return scannedArchive{name: name, platform: platform, sha256: sum, size: size, man: man}, nil
}

// readArchiveManifest returns the parsed manifest.json of a plugin archive.
func readArchiveManifest(p string) (manifest.Manifest, error) {
	f, err := os.Open(p)
	if err != nil {
		return manifest.Manifest{}, err
	}
	defer func() { _ = f.Close() }()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return manifest.Manifest{}, fmt.Errorf("not a gzip archive: %w", err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return manifest.Manifest{}, fmt.Errorf("the archive has no %s", manifest.Path)
		}
		if err != nil {
			return manifest.Manifest{}, fmt.Errorf("not a tar.gz archive: %w", err)
		}
		if h.Name != manifest.Path || h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Size > maxManifestBytes {
			return manifest.Manifest{}, fmt.Errorf("%s is %d bytes, over %d", manifest.Path, h.Size, maxManifestBytes)
		}
		data, err := io.ReadAll(io.LimitReader(tr, maxManifestBytes))
		if err != nil {
			return manifest.Manifest{}, err
		}
		return manifest.Parse(data)
	}
}

// checkSumFile compares an archive's .sha256 file, when present, with sum.
func checkSumFile(name, sum string) error {
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 || fields[0] != sum {
		return fmt.Errorf("%s does not match the archive's sha256 %s; pack the archive again (or delete the stale .sha256 file)", name, sum)
	}
	return nil
}

// plugin builds the signed catalog entry of a scanned plugin.
func (sp *scannedPlugin) plugin(priv ed25519.PrivateKey, base string) (catalog.Plugin, error) {
	versions := make([]string, 0, len(sp.versions))
	for v := range sp.versions {
		versions = append(versions, v)
	}
	var sortErr error
	sort.Slice(versions, func(i, j int) bool {
		c, err := catalog.CompareVersions(versions[i], versions[j])
		if err != nil {
			sortErr = err
		}
		return c < 0
	})
	if sortErr != nil {
		return catalog.Plugin{}, fmt.Errorf("%s: %w", sp.id, sortErr)
	}
	newest := sp.versions[versions[len(versions)-1]][0].man
	checkout, err := CheckoutURL(base, sp.id)
	if err != nil {
		return catalog.Plugin{}, err
	}
	p := catalog.Plugin{
		ID: newest.ID, Name: newest.Name, Description: newest.Description, Kind: newest.Kind,
		Pricing:     catalog.Pricing{Model: newest.Pricing.Model, FreeForExtendedLicense: newest.Pricing.FreeForExtendedLicense},
		CheckoutURL: checkout,
	}
	if newest.Pricing.Price != nil {
		p.Pricing.Price = &catalog.Price{Amount: newest.Pricing.Price.Amount, Currency: newest.Pricing.Price.Currency}
	}
	for _, v := range versions {
		archives := sp.versions[v]
		first := archives[0].man
		cv := catalog.Version{Version: v, MinHostVersion: first.MinHostVersion, ProtocolVersions: append([]int(nil), first.ProtocolVersions...), Archives: map[string]catalog.Archive{}}
		for _, a := range archives {
			if a.man.MinHostVersion != first.MinHostVersion || !equalInts(a.man.ProtocolVersions, first.ProtocolVersions) {
				return catalog.Plugin{}, fmt.Errorf("%s and %s are both %s %s but their manifests differ in min_host_version or protocol_versions; pack every platform of a version from one bundle", archives[0].name, a.name, sp.id, v)
			}
			sig, err := catalog.SignArchive(priv, sp.id, v, a.platform, a.sha256)
			if err != nil {
				return catalog.Plugin{}, err
			}
			cv.Archives[a.platform] = catalog.Archive{URL: url.PathEscape(a.name), Size: a.size, SHA256: a.sha256, Signature: sig}
		}
		p.Versions = append(p.Versions, cv)
	}
	return p, nil
}

// equalInts reports whether a and b hold the same ints in the same order.
func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// nextSerial returns the serial of the index about to be written at path:
// requested if set, else the build time in Unix seconds; either way above
// the serial of the index already at path (if it has one), so hosts that
// accepted that index accept this one.
func nextSerial(path string, requested int64, now time.Time) (int64, error) {
	var prev struct {
		Serial int64 `json:"serial"`
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return 0, err
	default:
		// An earlier index without a serial (or unreadable) counts as 0.
		_ = json.Unmarshal(data, &prev)
	}
	switch {
	case requested < 0:
		return 0, fmt.Errorf("serial %d must be positive", requested)
	case requested == 0:
		return max(now.Unix(), prev.Serial+1), nil
	case requested <= prev.Serial:
		return 0, fmt.Errorf("serial %d is not above %d, the serial of %s: hosts that accepted that index would refuse this one as stale; pass a larger serial or leave it out", requested, prev.Serial, path)
	}
	return requested, nil
}

// CheckoutURL returns base + "/checkout/" + id; base must be an http(s)
// URL without query or fragment.
func CheckoutURL(base, id string) (string, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("checkout base %q must be an http(s) URL without user, query or fragment, e.g. %s", base, DefaultCheckoutBase)
	}
	return u.String() + "/checkout/" + url.PathEscape(id), nil
}
