package markettest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/magicads/r2storage/shared/catalog"
)

// FreeR2Catalog writes into a new temp folder a signed catalog offering
// the cloudflare-r2 plugin built as binary, at version, free, for this
// platform, with a fresh key pair; it returns the index's file:// URL and
// the public key file the host must trust.
func FreeR2Catalog(t testing.TB, version string, binary []byte) (indexURL, pubKeyFile string) {
	t.Helper()
	return FreeR2CatalogOf(t, Bundle(t, version, binary, nil), version)
}

// FreeR2CatalogOf is FreeR2Catalog offering the bundle files (BundleOf).
func FreeR2CatalogOf(t testing.TB, files []File, version string) (indexURL, pubKeyFile string) {
	t.Helper()
	c := NewCatalog(t)
	c.Publish(t, map[string][]File{version: files})
	return c.IndexURL(), c.PublicKeyFile()
}

// Catalog is a signed file:// catalog of the free cloudflare-r2 plugin
// whose versions can be published again (a newer serial, the same key),
// as a marketplace publishing an update does.
type Catalog struct {
	dir    string
	priv   ed25519.PrivateKey
	serial int64
}

// NewCatalog makes an empty catalog folder with a fresh key pair.
func NewCatalog(t testing.TB) *Catalog {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &Catalog{dir: t.TempDir(), priv: priv}
	pubPEM, err := catalog.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.PublicKeyFile(), pubPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// IndexURL is the catalog's index, as a file:// URL.
func (c *Catalog) IndexURL() string { return "file://" + filepath.Join(c.dir, catalog.IndexFile) }

// PublicKeyFile is the key file a host must trust.
func (c *Catalog) PublicKeyFile() string { return filepath.Join(c.dir, catalog.PublicKeyFile) }

// Publish writes a signed index offering exactly versions (each a bundle,
// see BundleOf) for this platform, under the next serial.
func (c *Catalog) Publish(t testing.TB, versions map[string][]File) {
	t.Helper()
	const id = "cloudflare-r2"
	c.serial++
	p := catalog.Plugin{ID: id, Name: "Cloudflare R2 Storage", Description: "Offload results to R2.", Kind: "storage-provider",
		Pricing: catalog.Pricing{Model: catalog.PricingFree}}
	files := map[string][]byte{}
	for version, bundle := range versions {
		archive := TarGz(bundle)
		sum := sha256.Sum256(archive)
		a := catalog.Archive{URL: id + "-" + version + ".tar.gz", Size: int64(len(archive)), SHA256: hex.EncodeToString(sum[:])}
		var err error
		if a.Signature, err = catalog.SignArchive(c.priv, id, version, Platform, a.SHA256); err != nil {
			t.Fatal(err)
		}
		files[a.URL] = archive
		p.Versions = append(p.Versions, catalog.Version{Version: version, MinHostVersion: "1.0.0", ProtocolVersions: []int{1},
			Archives: map[string]catalog.Archive{Platform: a}})
	}
	idx := catalog.Index{SchemaVersion: catalog.SchemaVersion, Serial: c.serial, Expires: time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second),
		Plugins: []catalog.Plugin{p}}
	index, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := catalog.SignIndex(c.priv, index)
	if err != nil {
		t.Fatal(err)
	}
	// The archives first, the signature before the index: a host reading
	// meanwhile sees the old index or a mismatch it refuses, never an
	// index naming a missing archive.
	files[catalog.IndexSignatureFile] = sig
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(c.dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(c.dir, catalog.IndexFile), index, 0o600); err != nil {
		t.Fatal(err)
	}
}
