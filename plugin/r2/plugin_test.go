package r2_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/shared/conformance"
	"github.com/magicads/r2storage/shared/storage"
)

// binary is the real plugin, built once for this test binary.
var binary plugintest.Builder

func TestMain(m *testing.M) {
	code := m.Run()
	binary.Cleanup()
	os.Exit(code)
}

const pluginPkg = "./plugin/cmd/cloudflare-r2"

// launchConfigured starts versitygw and the plugin binary, configured for it.
func launchConfigured(t *testing.T) (*s3test.Server, *plugintest.Plugin, storage.Settings) {
	t.Helper()
	srv, p, settings, _ := launchBinary(t, binary.Build(t, pluginPkg))
	return srv, p, settings
}

// launchBinary starts versitygw and the plugin binary at path, configured
// for it, and returns what Configure reported.
func launchBinary(t *testing.T, path string) (*s3test.Server, *plugintest.Plugin, storage.Settings, storage.ConfigureResult) {
	t.Helper()
	srv := s3test.StartVersity(t)
	srv.CreateBucket(t, "conformance")
	settings := storage.Settings{
		"access_key_id": srv.AccessKey, "secret_access_key": srv.SecretKey,
		"bucket": "conformance", "endpoint": srv.Endpoint, "public_url": "https://pub-test.r2.dev",
		"key_prefix": "magicads", "use_path_style": true,
	}
	p := plugintest.Launch(t, path)
	res, err := p.Configure(context.Background(), settings)
	if err != nil {
		t.Fatalf("configure: %v", err)
	}
	return srv, p, settings, res
}

// TestConformanceOverGoPlugin runs the contract's conformance suite against
// the built plugin binary, over go-plugin gRPC, against versitygw.
func TestConformanceOverGoPlugin(t *testing.T) {
	srv, p, settings, res := launchBinary(t, binary.Build(t, pluginPkg))
	if want := (storage.ConfigureResult{PublicBaseURL: "https://pub-test.r2.dev", Bucket: strings.TrimPrefix(srv.Endpoint, "http://") + "/conformance", KeyPrefix: "magicads/"}); res != want {
		t.Fatalf("configure = %+v, want %+v", res, want)
	}
	conformance.Run(t, p, conformance.Configured(res))
	t.Run(conformance.MissingBucketCaseName, func(t *testing.T) {
		if err := conformance.CheckMissingBucket(t.Context(), p, settings); err != nil {
			t.Error(err)
		}
	})
	if keys := srv.Keys(t, "conformance"); len(keys) != 0 {
		t.Errorf("the suite left objects in the bucket: %v", keys)
	}
	if ups := srv.MultipartUploads(t, "conformance"); len(ups) != 0 {
		t.Errorf("the suite left multipart uploads: %v", ups)
	}
	if secret := settings["secret_access_key"].(string); strings.Contains(p.Logs(), secret) {
		t.Error("the plugin logged the secret")
	}
}

func TestPluginDescribesItself(t *testing.T) {
	p := plugintest.Launch(t, binary.Build(t, pluginPkg))
	info, err := p.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != "cloudflare-r2" || info.Name != "Cloudflare R2 Storage" || info.Version == "" || !info.Capabilities.PublicURLs || !info.Capabilities.Locations {
		t.Fatalf("describe = %+v", info)
	}
	h, err := p.Health(context.Background())
	if err != nil || !h.OK || h.Configured {
		t.Fatalf("health before configure = %+v, %v", h, err)
	}
}

func TestPluginReturnsFieldErrors(t *testing.T) {
	p := plugintest.Launch(t, binary.Build(t, pluginPkg))
	ctx := context.Background()
	fe, err := p.ValidateSettings(ctx, storage.Settings{"bucket": "Bad_Name", "jurisdiction": "mars", "endpoint": 7})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range fe {
		got[f.Field] = true
		if f.Message == "" {
			t.Errorf("field %s has no message", f.Field)
		}
	}
	for _, want := range []string{"bucket", "jurisdiction", "endpoint"} {
		if !got[want] {
			t.Errorf("no field error for %s in %v", want, fe)
		}
	}
	_, err = p.Configure(ctx, storage.Settings{"bucket": "media"})
	if storage.Code(err) != storage.InvalidSettings || len(storage.FieldsOf(err)) == 0 {
		t.Fatalf("configure with incomplete settings: %v", err)
	}
	// The plugin is still alive and answering after bad input.
	if _, err := p.Describe(ctx); err != nil || p.Exited() {
		t.Fatalf("plugin died after bad input: %v", err)
	}
}

func TestPluginRunByHandExplainsAndExits1(t *testing.T) {
	cmd := exec.Command(binary.Build(t, pluginPkg))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1", err)
	}
	if !strings.Contains(string(out), "plugin for the MagicAds host") || !strings.Contains(string(out), "Cloudflare R2 Storage") {
		t.Fatalf("output does not say what it is:\n%s", out)
	}
}

func TestWrongSecretOverThePlugin(t *testing.T) {
	srv, p, settings := launchConfigured(t)
	settings["secret_access_key"] = strings.Repeat("x", len(srv.SecretKey))
	if _, err := p.Configure(context.Background(), settings); err != nil {
		t.Fatal(err)
	}
	res, err := p.TestConnection(context.Background())
	if err != nil || res.OK || res.Step != storage.StepUpload || !strings.HasPrefix(res.Message, "Connection failed: bad credentials") {
		t.Fatalf("wrong secret: %+v, %v", res, err)
	}
	_, err = p.Put(context.Background(), "a.png", strings.NewReader("x"), storage.PutOptions{Size: 1})
	if storage.Code(err) != storage.PermissionDenied || storage.IsRetryable(err) {
		t.Fatalf("put with a wrong secret: %v (code %v)", err, storage.Code(err))
	}
}

// conformanceCmd is the conformance command of ../shared/api.md, built once.
var conformanceCmd plugintest.Builder

// TestConformanceCommandAgainstR2 runs the conformance command, as a provider
// author would, against the built R2 plugin and versitygw.
func TestConformanceCommandAgainstR2(t *testing.T) {
	t.Cleanup(conformanceCmd.Cleanup)
	srv := s3test.StartVersity(t)
	srv.CreateBucket(t, "cmd")
	settings := fmt.Sprintf(`{"access_key_id": %q, "secret_access_key": %q, "bucket": "cmd", "endpoint": %q, "public_url": "https://pub-test.r2.dev", "use_path_style": true}`,
		srv.AccessKey, srv.SecretKey, srv.Endpoint)
	path := filepath.Join(t.TempDir(), "settings.json")
	if err := os.WriteFile(path, []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(conformanceCmd.Build(t, "./shared/cmd/conformance"), "--plugin", binary.Build(t, pluginPkg), "--settings", path)
	out, err := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if err != nil || !strings.HasSuffix(last, " passed, 0 failed") || strings.HasPrefix(last, "0 passed") {
		t.Fatalf("conformance command: %v, last line %q\n%s", err, last, out)
	}
	if !strings.Contains(string(out), "PASS "+conformance.MissingBucketCaseName+" (") {
		t.Errorf("the command did not pass case %s:\n%s", conformance.MissingBucketCaseName, out)
	}
	if strings.Contains(string(out), srv.SecretKey) {
		t.Fatal("the command printed the secret")
	}
	if keys := srv.Keys(t, "cmd"); len(keys) != 0 {
		t.Fatalf("the command left %v in the bucket", keys)
	}
	t.Log(last)
}

// TestAbortUploadsOverThePlugin: the built plugin declares AbortUploads, and
// the call, over go-plugin, aborts only the incomplete uploads of the
// exact key under the key prefix, leaving the stored object readable.
func TestAbortUploadsOverThePlugin(t *testing.T) {
	srv, p, _ := launchConfigured(t)
	ctx := context.Background()
	info, err := p.Describe(ctx)
	if err != nil || !info.Capabilities.AbortUploads {
		t.Fatalf("describe: %+v, %v; want Capabilities.AbortUploads", info, err)
	}
	const stored = "stored result"
	if _, err := p.Put(ctx, "a/b.png", strings.NewReader(stored), storage.PutOptions{ContentType: "image/png", Size: int64(len(stored))}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"magicads/a/b.png", "magicads/a/b.png2", "magicads/other.png"} {
		srv.StartMultipartUpload(t, "conformance", k, []byte("part"))
	}
	var a storage.UploadAborter = p
	n, err := a.AbortUploads(ctx, []string{"a/b.png"})
	if err != nil || n != 1 {
		t.Fatalf("abort uploads: %d, %v; want 1, nil", n, err)
	}
	if got, want := srv.MultipartUploads(t, "conformance"), []string{"magicads/a/b.png2", "magicads/other.png"}; !slices.Equal(got, want) {
		t.Fatalf("uploads left %q, want %q", got, want)
	}
	rc, _, err := p.Get(ctx, "a/b.png", storage.GetOptions{Length: -1})
	if err != nil {
		t.Fatalf("get after abort uploads: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != stored {
		t.Fatalf("the stored object reads %q, %v after AbortUploads", got, err)
	}
	if _, err := a.AbortUploads(ctx, []string{"a//b.png"}); storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("bad key: %v, want InvalidArgument", err)
	}
}
