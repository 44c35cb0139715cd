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
	const id = "cloudflare-r2"
	archive := TarGz(files)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sum := sha256.Sum256(archive)
	a := catalog.Archive{URL: id + ".tar.gz", Size: int64(len(archive)), SHA256: hex.EncodeToString(sum[:])}
	if a.Signature, err = catalog.SignArchive(priv, id, version, Platform, a.SHA256); err != nil {
		t.Fatal(err)
	}
	idx := catalog.Index{
		SchemaVersion: catalog.SchemaVersion, Serial: 1, Expires: time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second),
		Plugins: []catalog.Plugin{{
			ID: id, Name: "Cloudflare R2 Storage", Description: "Offload results to R2.", Kind: "storage-provider",
			Pricing: catalog.Pricing{Model: catalog.PricingFree},
			Versions: []catalog.Version{{Version: version, MinHostVersion: "1.0.0", ProtocolVersions: []int{1},
				Archives: map[string]catalog.Archive{Platform: a}}},
		}},
	}
	index, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := catalog.SignIndex(priv, index)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := catalog.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		a.URL: archive, catalog.IndexFile: index, catalog.IndexSignatureFile: sig, catalog.PublicKeyFile: pubPEM,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return "file://" + filepath.Join(dir, catalog.IndexFile), filepath.Join(dir, catalog.PublicKeyFile)
}
