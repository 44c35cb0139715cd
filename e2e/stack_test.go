package e2e_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	r2storage "github.com/magicads/r2storage"
	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/internal/markettest"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/shared/catalog"
)

var (
	pluginBin  plugintest.Builder
	marketBin  plugintest.Builder
	publicBin  plugintest.Builder
	platform   = runtime.GOOS + "/" + runtime.GOARCH
	bucketName = "magicads-media"
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, b := range []*plugintest.Builder{&pluginBin, &s3PluginBin, &marketBin, &publicBin} {
		b.Cleanup()
	}
	os.Exit(code)
}

// stack is everything the go-live checklist needs, on 127.0.0.1.
type stack struct {
	host      *httptest.Server
	app       *app.App
	s3        *s3test.Server
	publicURL string
	password  string
	dataDir   string
	logs      *plugintest.Logs
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcess runs a helper binary until the test ends, waiting for url.
func startProcess(t *testing.T, url string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %s:\n%s", filepath.Base(name), url, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// publishCatalog writes a signed catalog of the real plugins (R2, then
// S3-compatible) into dir and returns the key dir.
func publishCatalog(t *testing.T, dir, checkoutBase string) string {
	t.Helper()
	keys := t.TempDir()
	pub, priv, err := catalog.GenerateKeyPair(keys)
	if err != nil {
		t.Fatal(err)
	}
	_ = pub
	data, _ := os.ReadFile(filepath.Join(keys, catalog.PublicKeyFile))
	os.WriteFile(filepath.Join(dir, catalog.PublicKeyFile), data, 0o644)
	man, err := r2storage.LoadManifest()
	if err != nil {
		t.Fatal(err)
	}
	archive := buildArchive(t, man.Version)
	name := fmt.Sprintf("%s_%s_%s.tar.gz", man.ID, man.Version, strings.ReplaceAll(platform, "/", "_"))
	os.WriteFile(filepath.Join(dir, name), archive, 0o644)
	sum := sha256.Sum256(archive)
	a := catalog.Archive{URL: name, Size: int64(len(archive)), SHA256: hex.EncodeToString(sum[:])}
	if a.Signature, err = catalog.SignArchive(priv, man.ID, man.Version, platform, a.SHA256); err != nil {
		t.Fatal(err)
	}
	idx := catalog.Index{SchemaVersion: 1, Serial: time.Now().Unix(), Expires: time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second), Plugins: []catalog.Plugin{{
		ID: man.ID, Name: man.Name, Description: man.Description, Kind: "storage-provider",
		Pricing:     catalog.Pricing{Model: "paid", Price: &catalog.Price{Amount: "29.00", Currency: "USD"}, FreeForExtendedLicense: true},
		CheckoutURL: checkoutBase + "/checkout/" + man.ID,
		Versions:    []catalog.Version{{Version: man.Version, MinHostVersion: "1.0.0", ProtocolVersions: []int{1}, Archives: map[string]catalog.Archive{platform: a}}},
	}, s3CompatiblePlugin(t, dir, priv)}}
	index, _ := json.MarshalIndent(idx, "", "  ")
	os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644)
	sig, err := catalog.SignIndex(priv, index)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "index.json.sig"), sig, 0o644)
	return keys
}

// newStack starts versitygw, the public-URL stand-in, the dev marketplace
// and the host (in-process, SQLite, extended license unless told).
func newStack(t *testing.T, license string) *stack {
	t.Helper()
	s, catalogURL, keyFile := newSupport(t)
	a, err := app.New(context.Background(), app.Config{
		DataDir: s.dataDir, AppKey: "base64:" + b64(randBytes(32)), AdminPassword: s.password,
		Logger:     slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		CatalogURL: catalogURL, TrustedKeyFiles: []string{keyFile}, License: license,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.app = a
	s.host = httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		s.host.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		a.Close(ctx)
	})
	return s
}

// newSupport starts what a host needs around it (versitygw, the
// public-URL stand-in, the dev marketplace) and picks an admin password;
// it returns the stack without a host, the catalog's URL and the public
// key file to trust.
func newSupport(t *testing.T) (s *stack, catalogURL, keyFile string) {
	t.Helper()
	s = &stack{s3: s3test.StartVersity(t), dataDir: t.TempDir(), logs: &plugintest.Logs{}}
	s.s3.CreateBucket(t, bucketName)

	publicAddr := freePort(t)
	s.publicURL = "http://" + publicAddr
	startProcess(t, s.publicURL+"/healthz", publicBin.Build(t, "./scripts/publicbucket"),
		"--addr", publicAddr, "--endpoint", s.s3.Endpoint, "--bucket", bucketName, "--access", s.s3.AccessKey, "--secret", s.s3.SecretKey)

	marketAddr := freePort(t)
	catDir := t.TempDir()
	keys := publishCatalog(t, catDir, "http://"+marketAddr)
	startProcess(t, "http://"+marketAddr+"/healthz", marketBin.Build(t, "./scripts/devmarket"), "--dir", catDir, "--addr", marketAddr, "--keys", keys)

	s.password = "pw-" + hex.EncodeToString(randBytes(12))
	return s, "http://" + marketAddr + "/index.json", filepath.Join(catDir, catalog.PublicKeyFile)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// buildArchive packs the real plugin, built for this machine, as the
// marketplace archive of version.
func buildArchive(t *testing.T, version string) []byte {
	data, err := os.ReadFile(pluginBin.Build(t, "./plugin/cmd/cloudflare-r2"))
	if err != nil {
		t.Fatal(err)
	}
	return markettest.TarGz(markettest.Bundle(t, version, data, nil))
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// useR2 saves R2's settings for the stack's bucket (with extra on top)
// through the host, and makes R2 the Default Storage once it is offered.
func (s *stack) useR2(t *testing.T, extra map[string]any) {
	t.Helper()
	bg := context.Background()
	values := map[string]any{
		"enabled": true, "access_key_id": s.s3.AccessKey, "secret_access_key": s.s3.SecretKey, "bucket": bucketName,
		"endpoint": s.s3.Endpoint, "public_url": s.publicURL, "key_prefix": "magicads", "use_path_style": true,
	}
	maps.Copy(values, extra)
	if fields, err := s.app.Providers.SaveSettings(bg, "cloudflare-r2", values); err != nil || len(fields) > 0 {
		t.Fatalf("saving the R2 settings: %v %v", fields, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.app.Providers.SetDefault(bg, "cloudflare-r2")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("R2 never became a Default Storage option: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
