package r2_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/shared/conformance"
	"github.com/magicads/r2storage/shared/storage"
)

// sdkBeforeLocations is the commit whose SDK and protocol predate
// storage.Locator (Capabilities.Locations, GetAt, StatAt, DeleteAt,
// ObjectInfo.StoredKey and Bucket): what plugins and hosts in the field
// were built from.
const sdkBeforeLocations = "ef3fed347f950821faa8c5d161bd7a66a4bd433f"

// TestPluginFromTheOldSDKPassesTheSuite: the R2 plugin built from the
// pinned commit passes the current conformance suite through the current
// host-side client. It does not declare Locations, reports no bucket or
// stored key, and the locations case passes because the client answers
// the calls with Unimplemented without asking it. It passes read-at-end,
// a rule settled after it was built, because the client turns its answer
// to a Get at Offset == size (S3's 416, as InvalidArgument) into the empty
// read the rule asks for (storage.ReadAtEnd).
func TestPluginFromTheOldSDKPassesTheSuite(t *testing.T) {
	old := plugintest.BuildAt(t, sdkBeforeLocations, pluginPkg)
	srv, p, _, res := launchBinary(t, old)
	ctx := context.Background()
	info, err := p.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Capabilities.Locations || res.Bucket != "" || res.KeyPrefix != "" {
		t.Fatalf("the plugin built at %s declares Locations (%v) or reports a bucket (%+v): it is not the old SDK", sdkBeforeLocations[:7], info.Capabilities.Locations, res)
	}
	results := map[string]error{}
	passed, failed := conformance.RunAll(ctx, p, func(name string, err error, d time.Duration) {
		results[name] = err
		if err != nil && !conformance.IsSkip(err) {
			t.Errorf("%s: %v", name, err)
		}
	}, conformance.Configured(res))
	if failed != 0 || passed != len(conformance.Cases()) {
		t.Fatalf("%d passed, %d failed of %d cases; want all to pass", passed, failed, len(conformance.Cases()))
	}
	if err, ran := results["read-at-end"]; !ran || err != nil {
		t.Fatalf("read-at-end case: ran %v, %v; want a pass", ran, err)
	}
	if err, ran := results["locations"]; !ran || err != nil {
		t.Fatalf("locations case: ran %v, %v; want a pass, not a skip", ran, err)
	}
	_, err = p.StatAt(ctx, storage.Location{Bucket: "r2:any/bucket", Key: "magicads/a.png"})
	if storage.Code(err) != storage.Unimplemented {
		t.Fatalf("stat at through the old plugin: %v, want Unimplemented", err)
	}
	pi, err := p.Put(ctx, "a.png", strings.NewReader("x"), storage.PutOptions{Size: 1})
	if err != nil || pi.StoredKey != "" || pi.Bucket != "" || pi.URL != "https://pub-test.r2.dev/magicads/a.png" {
		t.Fatalf("put through the old plugin = %+v, %v; want no StoredKey or Bucket", pi, err)
	}
	if err := p.Delete(ctx, "a.png"); err != nil {
		t.Fatal(err)
	}
	if keys := srv.Keys(t, "conformance"); len(keys) != 0 {
		t.Errorf("the suite left objects in the bucket: %v", keys)
	}
}

// TestHostFromTheOldSDKUsesTheNewPlugin: the conformance command built
// from the pinned commit (a host side that knows nothing of Locations)
// passes every one of its cases against the current plugin, which still
// serves Configure, Put, Get, Stat and Delete by key under the key prefix.
func TestHostFromTheOldSDKUsesTheNewPlugin(t *testing.T) {
	oldCmd := plugintest.BuildAt(t, sdkBeforeLocations, "./shared/cmd/conformance")
	srv := s3test.StartVersity(t)
	srv.CreateBucket(t, "old-host")
	settings := fmt.Sprintf(`{"access_key_id": %q, "secret_access_key": %q, "bucket": "old-host", "endpoint": %q, "public_url": "https://pub-test.r2.dev", "key_prefix": "media", "use_path_style": true}`,
		srv.AccessKey, srv.SecretKey, srv.Endpoint)
	path := filepath.Join(t.TempDir(), "settings.json")
	if err := os.WriteFile(path, []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(oldCmd, "--list").Output()
	if err != nil {
		t.Fatalf("old conformance --list: %v", err)
	}
	n := len(strings.Fields(string(list)))
	if n == 0 || strings.Contains(string(list), "locations") {
		t.Fatalf("the command built at %s lists %q: it is not the old suite", sdkBeforeLocations[:7], list)
	}
	out, err := exec.Command(oldCmd, "--plugin", binary.Build(t, pluginPkg), "--settings", path).CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if last := lines[len(lines)-1]; err != nil || last != fmt.Sprintf("%d passed, 0 failed", n) {
		t.Fatalf("old conformance command against the new plugin: %v, last line %q, want %d passed\n%s", err, last, n, out)
	}
	if strings.Contains(string(out), srv.SecretKey) {
		t.Fatal("the command printed the secret")
	}
	if keys := srv.Keys(t, "old-host"); len(keys) != 0 {
		t.Fatalf("the command left %v in the bucket", keys)
	}
}
