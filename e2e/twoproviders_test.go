package e2e_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/magicads/r2storage/internal/markettest"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/plugin/s3compat"
	"github.com/magicads/r2storage/shared/catalog"
	"github.com/magicads/r2storage/shared/manifest"
)

// s3PluginBin builds the S3-compatible plugin (pluginBin is the R2 one).
var s3PluginBin plugintest.Builder

const (
	// s3Bucket is the S3-compatible provider's bucket, on its own server.
	s3Bucket = "magicads-s3-media"
	// s3Region is the region that server signs for: a real S3 region.
	s3Region = "us-east-1"
)

// s3CompatiblePlugin packs the S3-compatible plugin, built for this
// machine, with its bundle files into dir and returns its catalog entry (a
// free plugin), its archive signed with priv.
func s3CompatiblePlugin(t *testing.T, dir string, priv ed25519.PrivateKey) catalog.Plugin {
	t.Helper()
	bundle, err := s3compat.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	man, err := manifest.CheckBundle(bundle)
	if err != nil {
		t.Fatalf("the S3-compatible bundle: %v", err)
	}
	bin, err := os.ReadFile(s3PluginBin.Build(t, "./plugin/cmd/s3-compatible"))
	if err != nil {
		t.Fatal(err)
	}
	var files []markettest.File
	err = fs.WalkDir(bundle, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(bundle, p)
		files = append(files, markettest.File{Name: p, Mode: 0o644, Data: data})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	exe, ok := man.Executable(runtime.GOOS, runtime.GOARCH)
	if !ok {
		t.Fatalf("the S3-compatible manifest names no executable for %s", platform)
	}
	archive := markettest.TarGz(append(files, markettest.File{Name: exe, Mode: 0o755, Data: bin}))
	name := fmt.Sprintf("%s_%s_%s.tar.gz", man.ID, man.Version, strings.ReplaceAll(platform, "/", "_"))
	if err := os.WriteFile(filepath.Join(dir, name), archive, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(archive)
	a := catalog.Archive{URL: name, Size: int64(len(archive)), SHA256: hex.EncodeToString(sum[:])}
	if a.Signature, err = catalog.SignArchive(priv, man.ID, man.Version, platform, a.SHA256); err != nil {
		t.Fatal(err)
	}
	return catalog.Plugin{
		ID: man.ID, Name: man.Name, Description: man.Description, Kind: "storage-provider",
		Pricing:  catalog.Pricing{Model: catalog.PricingFree},
		Versions: []catalog.Version{{Version: man.Version, MinHostVersion: man.MinHostVersion, ProtocolVersions: man.ProtocolVersions, Archives: map[string]catalog.Archive{platform: a}}},
	}
}

// s3Side is the S3-compatible provider's bucket server and its public URL
// stand-in.
type s3Side struct {
	s3        *s3test.Server
	publicURL string
}

// startS3Side starts a versitygw signing for s3Region with s3Bucket, and a
// scripts/publicbucket serving it.
func startS3Side(t *testing.T) *s3Side {
	t.Helper()
	s := &s3Side{s3: s3test.StartVersityIn(t, s3Region)}
	s.s3.CreateBucket(t, s3Bucket)
	addr := freePort(t)
	s.publicURL = "http://" + addr
	startProcess(t, s.publicURL+"/healthz", publicBin.Build(t, "./scripts/publicbucket"),
		"--addr", addr, "--endpoint", s.s3.Endpoint, "--bucket", s3Bucket, "--region", s3Region,
		"--access", s.s3.AccessKey, "--secret", s.s3.SecretKey)
	return s
}

// setCheckbox sets the settings form's checkbox whose visible label is
// label (or, with a trailing "…", starts with it) and fires its change.
func setCheckbox(label string, on bool) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
			const want = %q, prefix = want.endsWith('…') ? want.slice(0, -1) : null;
			const l = [...document.querySelectorAll('#settings-form label')].find(l => {
				const t = l.textContent.trim();
				return l.querySelector('input[type=checkbox]') && (prefix ? t.startsWith(prefix) : t === want);
			});
			if (!l) return false;
			const e = l.querySelector('input[type=checkbox]');
			e.checked = %v; e.dispatchEvent(new Event('change', {bubbles: true})); return true })()`, label, on)))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no checkbox labelled %q", label)
		}
		return nil
	})
}

// installFromCard clicks Install on plugin id's marketplace card and waits
// until the card offers Uninstall.
func installFromCard(t *testing.T, ctx context.Context, sh *shots, base, id string) {
	t.Helper()
	must(t, ctx, sh, "plugins page", chromedp.Navigate(base+"/app/admin/general/plugins"), chromedp.WaitVisible(chromedp.ID("plugin-"+id)))
	waitTrue(t, ctx, sh, "the plugins page's script to run", `document.readyState === 'complete'`)
	if cta := evalString(t, ctx, fmt.Sprintf(`document.getElementById('plugin-%s').dataset.cta`, id)); cta != "install" {
		t.Fatalf("%s's card offers %q, want install (without a purchase)", id, cta)
	}
	must(t, ctx, sh, "install "+id, chromedp.Click(chromedp.ID("install-"+id)))
	waitTrue(t, ctx, sh, id+" to be installed", fmt.Sprintf(`(() => { const b = document.getElementById('uninstall-%s'); return !!b && b.offsetParent !== null })()`, id))
	sh.take(ctx, "installed-"+id)
}

// evalString runs a JS expression returning a string.
func evalString(t *testing.T, ctx context.Context, js string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// configureProvider fills plugin id's settings screen, enables it, saves
// and tests the connection (green toast).
func configureProvider(t *testing.T, ctx context.Context, sh *shots, base, id string, values map[string]string) {
	t.Helper()
	must(t, ctx, sh, id+" settings page", chromedp.Navigate(base+"/app/admin/general/plugins/"+id), chromedp.WaitVisible(chromedp.ID("field-bucket")))
	waitTrue(t, ctx, sh, "the settings page's script to run", `document.readyState === 'complete'`)
	must(t, ctx, sh, "fill in the "+id+" settings", fill(values, map[string]bool{"use_path_style": true}),
		setCheckbox("Enable …", true), setCheckbox("Delete local copy after upload", false))
	sh.take(ctx, "settings-"+id)
	must(t, ctx, sh, "save "+id, chromedp.Click(chromedp.ID("save")))
	toast(t, ctx, sh, "ok")
	must(t, ctx, sh, "test "+id, chromedp.Click(chromedp.ID("test-connection")))
	if msg := toast(t, ctx, sh, "ok"); !strings.Contains(msg, "successful") {
		t.Fatalf("%s: test connection toast %q", id, msg)
	}
}

// setDefaultStorage picks id on the Default Storage page and saves.
func setDefaultStorage(t *testing.T, ctx context.Context, sh *shots, base, id string) {
	t.Helper()
	must(t, ctx, sh, "default storage page", chromedp.Navigate(base+"/app/admin/general"), chromedp.WaitVisible(chromedp.ID("default-storage")))
	waitTrue(t, ctx, sh, "the Default Storage page's script to run", `document.readyState === 'complete'`)
	for _, want := range []string{"cloudflare-r2", "s3-compatible"} {
		if !evalBool(t, ctx, fmt.Sprintf(`[...document.querySelectorAll('#default-storage option')].some(o => o.value === %q)`, want)) {
			t.Fatalf("%s is not a Default Storage option", want)
		}
	}
	must(t, ctx, sh, "default storage "+id, chromedp.SetValue(chromedp.ID("default-storage"), id), chromedp.Click(chromedp.ID("save-storage")))
	toast(t, ctx, sh, "ok")
}

// newestResult is the id of the newest result on the results page.
func newestResult(t *testing.T, ctx context.Context) string {
	t.Helper()
	return evalString(t, ctx, `(() => { const li = document.querySelector('li.result'); return li ? li.dataset.id : '' })()`)
}

// displaysFrom waits until result id's image is shown, loaded from base.
func displaysFrom(t *testing.T, ctx context.Context, sh *shots, id, base, what string) {
	t.Helper()
	waitTrue(t, ctx, sh, what, fmt.Sprintf(`(() => { const i = document.querySelector('#result-%s img.result-image'); return !!i && i.src.startsWith(%q + '/') && i.complete && i.naturalWidth > 0 })()`, id, base))
}

// TestTwoProvidersSwitchDefault walks the console with both providers:
// install both from the marketplace, configure and test both, Default
// Storage R2 → a result in R2; switch to S3-compatible → the next result in
// the S3 bucket, while the first still displays from R2's public URL and
// its delete removes its R2 object.
func TestTwoProvidersSwitchDefault(t *testing.T) {
	s := newStack(t, "extended")
	s3s := startS3Side(t)
	ctx := browser(t)
	sh := newShots(t)
	base := s.host.URL

	must(t, ctx, sh, "login",
		chromedp.Navigate(base+"/app/admin/general/plugins"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="password"]`)),
		chromedp.SetValue(chromedp.CSS(`input[name="username"]`), "admin"),
		chromedp.SetValue(chromedp.CSS(`input[name="password"]`), s.password),
		chromedp.Submit(chromedp.CSS(`input[name="password"]`)),
	)
	must(t, ctx, sh, "signed in", chromedp.WaitVisible(chromedp.ID("plugin-cards")))
	logs := watchConsole(t, ctx)

	// Install both from the marketplace: R2 (free with the Extended
	// License) and S3-compatible (a free plugin).
	installFromCard(t, ctx, sh, base, "cloudflare-r2")
	installFromCard(t, ctx, sh, base, "s3-compatible")

	// Fill both settings screens and test both connections.
	configureProvider(t, ctx, sh, base, "cloudflare-r2", map[string]string{
		"access_key_id": s.s3.AccessKey, "secret_access_key": s.s3.SecretKey,
		"bucket": bucketName, "endpoint": s.s3.Endpoint, "public_url": s.publicURL, "key_prefix": "magicads",
	})
	configureProvider(t, ctx, sh, base, "s3-compatible", map[string]string{
		"access_key_id": s3s.s3.AccessKey, "secret_access_key": s3s.s3.SecretKey, "region": s3Region,
		"bucket": s3Bucket, "endpoint": s3s.s3.Endpoint, "public_url": s3s.publicURL, "key_prefix": "s3media",
	})

	// Default Storage R2: a result lands in R2.
	setDefaultStorage(t, ctx, sh, base, "cloudflare-r2")
	if r := generate(t, ctx, sh, base); !strings.HasPrefix(r, "cloudflare-r2 ") {
		t.Fatalf("a result with Default Storage R2: %q", r)
	}
	first := newestResult(t, ctx)
	r2Keys := s.s3.Keys(t, bucketName)
	if len(r2Keys) != 1 || !strings.HasPrefix(r2Keys[0], "magicads/images/") {
		t.Fatalf("R2 bucket after the first result: %v", r2Keys)
	}
	if keys := s3s.s3.Keys(t, s3Bucket); len(keys) != 0 {
		t.Fatalf("Default Storage R2 but the S3 bucket has %v", keys)
	}
	displaysFrom(t, ctx, sh, first, s.publicURL, "the first result to display from R2's public URL")

	// Switch Default Storage to S3-compatible: the next result lands in
	// the S3 bucket, and R2's object stays where it is.
	setDefaultStorage(t, ctx, sh, base, "s3-compatible")
	if r := generate(t, ctx, sh, base); !strings.HasPrefix(r, "s3-compatible ") {
		t.Fatalf("a result with Default Storage S3-compatible: %q", r)
	}
	second := newestResult(t, ctx)
	if second == first {
		t.Fatal("the second result is not listed first")
	}
	s3Keys := s3s.s3.Keys(t, s3Bucket)
	if len(s3Keys) != 1 || !strings.HasPrefix(s3Keys[0], "s3media/images/") {
		t.Fatalf("S3 bucket after the second result: %v", s3Keys)
	}
	if keys := s.s3.Keys(t, bucketName); len(keys) != 1 || keys[0] != r2Keys[0] {
		t.Fatalf("R2 bucket after switching: %v, want only %v", keys, r2Keys)
	}

	// The first still displays from R2's public URL, the second from the S3 one.
	displaysFrom(t, ctx, sh, first, s.publicURL, "the R2 result to display from R2's public URL after the switch")
	displaysFrom(t, ctx, sh, second, s3s.publicURL, "the S3 result to display from the S3 public URL")
	if got := evalString(t, ctx, fmt.Sprintf(`document.getElementById('result-%s').dataset.storage`, first)); got != "cloudflare-r2" {
		t.Fatalf("the first result's card says it lives in %q after the switch", got)
	}
	sh.take(ctx, "both-displayed")

	// Deleting the first removes its R2 object, and nothing in the S3 bucket.
	must(t, ctx, sh, "delete the R2 result: ask", chromedp.Click(chromedp.ID("delete-"+first)), chromedp.WaitVisible(chromedp.ID("confirm-dialog")))
	if msg, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("confirm-message"))); !strings.Contains(msg, "Its object is deleted from Cloudflare R2") {
		t.Errorf("delete confirmation of the R2 result: %q", msg)
	}
	must(t, ctx, sh, "delete the R2 result: confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	toastSaying(t, ctx, sh, "ok", "Result deleted")
	waitTrue(t, ctx, sh, "the deleted result to leave the list", fmt.Sprintf(`!document.getElementById('result-%s')`, first))
	deadline := time.Now().Add(30 * time.Second)
	for len(s.s3.Keys(t, bucketName)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the R2 object of the deleted result is still there: %v", s.s3.Keys(t, bucketName))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if keys := s3s.s3.Keys(t, s3Bucket); len(keys) != 1 || keys[0] != s3Keys[0] {
		t.Fatalf("deleting the R2 result changed the S3 bucket: %v", keys)
	}
	displaysFrom(t, ctx, sh, second, s3s.publicURL, "the S3 result to still display")
	sh.take(ctx, "done")
	noConsoleErrors(t, logs, "while switching Default Storage between two providers")
}
