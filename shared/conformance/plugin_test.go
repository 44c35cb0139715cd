package conformance_test

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/conformance"
	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/sdk"
	"github.com/magicads/r2storage/shared/storage"
)

// TestMain lets this test binary act as a plugin serving memstore (with
// the one bucket "media", so another is missing), as a provider author's
// TestMain does with their own provider.
func TestMain(m *testing.M) {
	sdk.ServeIfPlugin(func() sdk.Provider { return memstore.NewWithBuckets("", "media") })
	os.Exit(m.Run())
}

// TestRunPluginWithTheTestBinary runs the whole suite over the plugin
// protocol against this test binary serving memstore.
func TestRunPluginWithTheTestBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	conformance.RunPlugin(t, exe, storage.Settings{"bucket": "media", "key_prefix": "tenant/a", "public_url": "https://cdn.example.test"})
}

// unhealthyUntilConfigured fails Health before Configure and changes its
// range-read capability with Configure.
type unhealthyUntilConfigured struct {
	*memstore.Store
	configured bool
}

func (u *unhealthyUntilConfigured) Health(ctx context.Context) (storage.Health, error) {
	if !u.configured {
		return storage.Health{}, errors.New("no client yet")
	}
	return u.Store.Health(ctx)
}

func (u *unhealthyUntilConfigured) Configure(ctx context.Context, s storage.Settings) (storage.ConfigureResult, error) {
	u.configured = true
	return u.Store.Configure(ctx, s)
}

func (u *unhealthyUntilConfigured) Describe(ctx context.Context) (storage.Info, error) {
	info, err := u.Store.Describe(ctx)
	info.Capabilities.RangeReads = u.configured
	return info, err
}

func TestConfigureFresh(t *testing.T) {
	ctx := t.Context()
	settings := storage.Settings{"bucket": "media", "public_url": "https://cdn.example.test"}
	// memstore works with its defaults and gains PublicURLs from the settings: allowed.
	res, configured, err := conformance.ConfigureFresh(ctx, memstore.New(""), settings)
	if err != nil || !configured || res.PublicBaseURL != "https://cdn.example.test" {
		t.Errorf("memstore: %+v, %v, %v; want its ConfigureResult and no error", res, configured, err)
	}
	_, configured, err = conformance.ConfigureFresh(ctx, &unhealthyUntilConfigured{Store: memstore.New("")}, settings)
	if !configured || err == nil || !strings.Contains(err.Error(), "health before configure: no client yet") ||
		!strings.Contains(err.Error(), "only PublicURLs may change") {
		t.Errorf("broken provider: configured %v, error %v; want both broken rules named", configured, err)
	}
	_, configured, err = conformance.ConfigureFresh(ctx, memstore.New(""), storage.Settings{"bucket": ""})
	if configured || storage.Code(err) != storage.InvalidSettings {
		t.Errorf("bad settings: configured %v, error %v; want the InvalidSettings error of Configure", configured, err)
	}
}

// statNotFound answers Stat in a missing bucket with NotFound, as S3's
// HEAD does (a 404 without a body) when nothing tells the cases apart.
type statNotFound struct{ *memstore.Store }

func (s statNotFound) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	info, err := s.Store.Stat(ctx, key)
	if storage.Code(err) == storage.FailedPrecondition {
		return info, storage.Errorf(storage.NotFound, "stat %s: not found", key)
	}
	return info, err
}

// deleteSucceeds lets Delete in a missing bucket succeed, as for a
// missing key.
type deleteSucceeds struct{ *memstore.Store }

func (d deleteSucceeds) Delete(ctx context.Context, key string) error {
	if err := d.Store.Delete(ctx, key); storage.Code(err) != storage.FailedPrecondition {
		return err
	}
	return nil
}

// unnamedBucket drops the bucket's name from Put's error.
type unnamedBucket struct{ *memstore.Store }

func (u unnamedBucket) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	info, err := u.Store.Put(ctx, key, r, opts)
	if storage.Code(err) == storage.FailedPrecondition {
		return info, storage.Errorf(storage.FailedPrecondition, "put %s: bucket not found", key)
	}
	return info, err
}

// checksBucket refuses, in Configure, a bucket the store does not have,
// with code.
type checksBucket struct {
	*memstore.Store
	code storage.ErrorCode
}

func (c checksBucket) Configure(ctx context.Context, s storage.Settings) (storage.ConfigureResult, error) {
	if b, _ := s["bucket"].(string); b != "media" {
		return storage.ConfigureResult{}, storage.Errorf(c.code, "configure: bucket %s does not exist", b)
	}
	return c.Store.Configure(ctx, s)
}

// TestCheckMissingBucketInConfigure: a provider may refuse the missing
// bucket in Configure, with FailedPrecondition naming it; any other code
// fails.
func TestCheckMissingBucketInConfigure(t *testing.T) {
	settings := storage.Settings{"bucket": "media"}
	if err := conformance.CheckMissingBucket(t.Context(), checksBucket{memstore.NewWithBuckets("", "media"), storage.FailedPrecondition}, settings); err != nil {
		t.Errorf("refused with FailedPrecondition: %v", err)
	}
	err := conformance.CheckMissingBucket(t.Context(), checksBucket{memstore.NewWithBuckets("", "media"), storage.InvalidSettings}, settings)
	if err == nil || !strings.Contains(err.Error(), `configure with bucket "conformance-missing-`) || !strings.Contains(err.Error(), `error with code "invalid settings"`) {
		t.Errorf("refused with InvalidSettings: %v, want a failure naming the code", err)
	}
}

// TestCheckMissingBucket: memstore with a fixed set of buckets passes;
// each broken variant fails naming what it got wrong; settings without a
// "bucket" field skip unless MissingBucket gives settings.
func TestCheckMissingBucket(t *testing.T) {
	ctx := t.Context()
	settings := storage.Settings{"bucket": "media", "key_prefix": "tenant/a", "public_url": "https://cdn.example.test"}
	configured := func(p storage.Provider) storage.Provider {
		if _, err := p.Configure(ctx, settings); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := conformance.CheckMissingBucket(ctx, configured(memstore.NewWithBuckets("", "media")), settings); err != nil {
		t.Errorf("memstore with fixed buckets: %v", err)
	}
	for _, c := range []struct {
		name string
		p    storage.Provider
		want []string
	}{
		{"every bucket exists", memstore.New(""), []string{"put in bucket", "succeeded, want an error with code \"failed precondition\""}},
		{"stat says not found", statNotFound{memstore.NewWithBuckets("", "media")}, []string{"stat in bucket", `error with code "not found"`}},
		{"delete succeeds", deleteSucceeds{memstore.NewWithBuckets("", "media")}, []string{"delete in bucket", "succeeded"}},
		{"message without the bucket", unnamedBucket{memstore.NewWithBuckets("", "media")}, []string{"put in bucket", "does not name the bucket"}},
	} {
		err := conformance.CheckMissingBucket(ctx, configured(c.p), settings)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v, want a failure mentioning %q", c.name, err, w)
			}
		}
		if _, serr := c.p.Stat(ctx, "x"); !storage.IsNotFound(serr) {
			t.Errorf("%s: after the check, stat of a missing key: %v; want NotFound (configured back)", c.name, serr)
		}
	}
	noBucket := storage.Settings{"public_url": "https://cdn.example.test"}
	if err := conformance.CheckMissingBucket(ctx, configured(memstore.NewWithBuckets("", "media")), noBucket); !conformance.IsSkip(err) {
		t.Errorf("settings without a bucket field: %v, want a skip", err)
	}
	missing := storage.Settings{"bucket": "elsewhere"}
	if err := conformance.CheckMissingBucket(ctx, configured(memstore.NewWithBuckets("", "media")), settings, conformance.MissingBucket(missing, "elsewhere")); err != nil {
		t.Errorf("with MissingBucket: %v", err)
	}
}

// revision0 reports Contract 1, as a plugin built before the rules of
// storage.ContractRevision 2 does through the plugin client (0 there).
type revision0 struct{ storage.Provider }

func (r revision0) Describe(ctx context.Context) (storage.Info, error) {
	info, err := r.Provider.Describe(ctx)
	info.Contract = 1
	return info, err
}

// TestCheckMissingBucketHoldsOldPluginsToTheirRules: a provider of an
// older contract revision that answers a missing bucket's Stat with
// NotFound and names no bucket passes (every call still fails), one of
// the current revision does not, and an older one whose Put succeeds
// fails whatever its revision.
func TestCheckMissingBucketHoldsOldPluginsToTheirRules(t *testing.T) {
	ctx := t.Context()
	settings := storage.Settings{"bucket": "media"}
	configured := func(p storage.Provider) storage.Provider {
		if _, err := p.Configure(ctx, settings); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := conformance.CheckMissingBucket(ctx, configured(revision0{statNotFound{memstore.NewWithBuckets("", "media")}}), settings); err != nil {
		t.Errorf("revision 1 with NotFound from Stat: %v, want a pass", err)
	}
	if err := conformance.CheckMissingBucket(ctx, configured(revision0{unnamedBucket{memstore.NewWithBuckets("", "media")}}), settings); err != nil {
		t.Errorf("revision 1 naming no bucket: %v, want a pass", err)
	}
	if err := conformance.CheckMissingBucket(ctx, configured(statNotFound{memstore.NewWithBuckets("", "media")}), settings); err == nil {
		t.Error("the current revision with NotFound from Stat passed")
	}
	if err := conformance.CheckMissingBucket(ctx, configured(revision0{memstore.New("")}), settings); err == nil || !strings.Contains(err.Error(), "succeeded") {
		t.Errorf("revision 1 whose calls succeed in a missing bucket: %v, want a failure", err)
	}
}
