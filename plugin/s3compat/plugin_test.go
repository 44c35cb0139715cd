package s3compat_test

import (
	"context"
	"fmt"
	"github.com/magicads/r2storage/internal/s3test"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/magicads/r2storage/internal/plugintest"
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

const pluginPkg = "./plugin/cmd/s3-compatible"

// region is the region the test servers sign for, as Amazon S3's default
// region and MinIO's default.
const region = "us-east-1"

// launchConfigured starts versitygw for region us-east-1 with the bucket
// "conformance", and the plugin binary configured for it.
func launchConfigured(t *testing.T) (*s3test.Server, *plugintest.Plugin, storage.Settings, storage.ConfigureResult) {
	t.Helper()
	srv := s3test.StartVersityIn(t, region)
	srv.CreateBucket(t, "conformance")
	settings := storage.Settings{
		"access_key_id": srv.AccessKey, "secret_access_key": srv.SecretKey,
		"region": region, "endpoint": srv.Endpoint, "bucket": "conformance", "use_path_style": true,
		"key_prefix": "magicads", "public_url": "https://cdn.example.com",
	}
	p := plugintest.Launch(t, binary.Build(t, pluginPkg))
	res, err := p.Configure(context.Background(), settings)
	if err != nil {
		t.Fatalf("configure: %v", err)
	}
	return srv, p, settings, res
}

// TestConformanceOverGoPlugin runs the contract's conformance suite against
// the built plugin binary, over go-plugin gRPC, against versitygw signing
// for us-east-1.
func TestConformanceOverGoPlugin(t *testing.T) {
	srv, p, settings, res := launchConfigured(t)
	want := storage.ConfigureResult{PublicBaseURL: "https://cdn.example.com", Bucket: strings.TrimPrefix(srv.Endpoint, "http://") + "/conformance", KeyPrefix: "magicads/"}
	if res != want {
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
	c := info.Capabilities
	if info.ID != "s3-compatible" || info.Name != "S3-Compatible Storage" || info.Version != "1.0.0" ||
		!c.PublicURLs || !c.RangeReads || !c.AbortUploads || !c.Locations || c.MaxObjectSize <= 0 {
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
	fe, err := p.ValidateSettings(ctx, storage.Settings{"bucket": "Bad_Name", "region": "US East", "endpoint": 7, "account_id": "x"})
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
	for _, want := range []string{"bucket", "region", "endpoint", "account_id"} {
		if !got[want] {
			t.Errorf("no field error for %s in %v", want, fe)
		}
	}
	fe, err = p.ValidateSettings(ctx, storage.Settings{"region": "auto"})
	if err != nil || len(fe) != 1 || fe[0].Field != "region" || !strings.Contains(fe[0].Message, "us-east-1") {
		t.Fatalf("region auto: %v, %v; want one region error naming a real region", fe, err)
	}
	_, err = p.Configure(ctx, storage.Settings{"bucket": "media", "access_key_id": "a", "secret_access_key": "b"})
	if storage.Code(err) != storage.InvalidSettings || !slices.ContainsFunc(storage.FieldsOf(err), func(f storage.FieldError) bool { return f.Field == "region" }) {
		t.Fatalf("configure without a region: %v, want a region field error", err)
	}
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
	if !strings.Contains(string(out), "plugin for the MagicAds host") || !strings.Contains(string(out), "S3-Compatible Storage") {
		t.Fatalf("output does not say what it is:\n%s", out)
	}
}

// TestWrongRegionOverThePlugin: a bucket signed for another region than
// the server's is reported as a wrong region, naming the configured one,
// not as bad credentials.
func TestWrongRegionOverThePlugin(t *testing.T) {
	_, p, settings, _ := launchConfigured(t)
	ctx := context.Background()
	settings["region"] = "eu-west-1"
	if _, err := p.Configure(ctx, settings); err != nil {
		t.Fatal(err)
	}
	res, err := p.TestConnection(ctx)
	if err != nil || res.OK || res.Step != storage.StepUpload || !strings.HasPrefix(res.Message, "Connection failed: wrong region") || !strings.Contains(res.Message, `"eu-west-1"`) {
		t.Fatalf("wrong region: %+v, %v", res, err)
	}
	_, err = p.Put(ctx, "a.png", strings.NewReader("x"), storage.PutOptions{Size: 1})
	if storage.Code(err) != storage.FailedPrecondition || storage.IsRetryable(err) || !strings.Contains(err.Error(), "wrong region") {
		t.Fatalf("put with a wrong region: %v (code %v), want FailedPrecondition naming the region", err, storage.Code(err))
	}
}

func TestWrongSecretOverThePlugin(t *testing.T) {
	srv, p, settings, _ := launchConfigured(t)
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

// TestAbortUploadsOverThePlugin: AbortUploads aborts only the incomplete
// uploads of the exact key under the key prefix.
func TestAbortUploadsOverThePlugin(t *testing.T) {
	srv, p, _, _ := launchConfigured(t)
	ctx := context.Background()
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
		t.Fatalf("the stored object reads %q, %v", got, err)
	}
}

// conformanceCmd is the conformance command of ../shared/api.md, built once.
var conformanceCmd plugintest.Builder

// TestConformanceCommandAgainstS3Compatible runs the conformance command,
// as a provider author would, against the built plugin and versitygw
// signing for us-east-1, checking the plugin's bundle folder too.
func TestConformanceCommandAgainstS3Compatible(t *testing.T) {
	t.Cleanup(conformanceCmd.Cleanup)
	srv := s3test.StartVersityIn(t, region)
	srv.CreateBucket(t, "cmd")
	settings := fmt.Sprintf(`{"access_key_id": %q, "secret_access_key": %q, "region": %q, "bucket": "cmd", "endpoint": %q, "public_url": "https://cdn.example.com", "use_path_style": true}`,
		srv.AccessKey, srv.SecretKey, region, srv.Endpoint)
	path := filepath.Join(t.TempDir(), "settings.json")
	if err := os.WriteFile(path, []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(conformanceCmd.Build(t, "./shared/cmd/conformance"), "--plugin", binary.Build(t, pluginPkg), "--settings", path, "--bundle", "bundle")
	out, err := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if err != nil || !strings.HasSuffix(last, " passed, 0 failed") || strings.HasPrefix(last, "0 passed") {
		t.Fatalf("conformance command: %v, last line %q\n%s", err, last, out)
	}
	for _, c := range []string{"bundle", conformance.MissingBucketCaseName} {
		if !strings.Contains(string(out), "PASS "+c+" (") {
			t.Errorf("the command did not pass case %s:\n%s", c, out)
		}
	}
	if strings.Contains(string(out), srv.SecretKey) {
		t.Fatal("the command printed the secret")
	}
	if keys := srv.Keys(t, "cmd"); len(keys) != 0 {
		t.Fatalf("the command left %v in the bucket", keys)
	}
	t.Log(last)
}
