package conformance

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/magicads/r2storage/shared/sdk"
	"github.com/magicads/r2storage/shared/storage"
)

// FreshCaseName is the name under which RunPlugin and the conformance
// command report ConfigureFresh's checks.
const FreshCaseName = "before-configure"

// ConfigureFresh configures p, a provider not configured yet, with
// settings, and checks the rules about that first Configure: Describe and
// Health answer before it without error (Health may say Configured =
// false, or true for a provider that works with its defaults), Health says
// Configured = true after it, and Describe's capabilities other than PublicURLs
// (which may follow the settings) are the same before and after. It
// returns what Configure reported. An error from Configure itself is
// returned wrapped, with configured = false; a broken rule gives
// configured = true and an error naming it.
func ConfigureFresh(ctx context.Context, p storage.Provider, settings storage.Settings) (res storage.ConfigureResult, configured bool, err error) {
	var errs []error
	before, derr := p.Describe(ctx)
	if derr != nil {
		errs = append(errs, fmt.Errorf("describe before configure: %w; Describe must answer before Configure", derr))
	}
	if _, herr := p.Health(ctx); herr != nil {
		errs = append(errs, fmt.Errorf("health before configure: %w; Health must answer before Configure (Configured = false, unless the provider works with its defaults)", herr))
	}
	res, cerr := p.Configure(ctx, settings)
	if cerr != nil {
		return res, false, fmt.Errorf("configure: %w", cerr)
	}
	if h, herr := p.Health(ctx); herr != nil || !h.Configured {
		errs = append(errs, fmt.Errorf("health after configure: Configured = %v, error %v; want Configured = true and no error", h.Configured, herr))
	}
	after, aerr := p.Describe(ctx)
	if aerr != nil {
		errs = append(errs, fmt.Errorf("describe after configure: %w", aerr))
	} else if derr == nil {
		b, a := before.Capabilities, after.Capabilities
		b.PublicURLs, a.PublicURLs = false, false
		if a != b {
			errs = append(errs, fmt.Errorf("describe: capabilities %+v before configure, %+v after; only PublicURLs may change with the settings", before.Capabilities, after.Capabilities))
		}
	}
	return res, true, errors.Join(errs...)
}

// RunPlugin runs the suite against a plugin binary from a provider
// author's go test, over the plugin protocol as the host uses it: it
// launches the binary at path, configures it with settings through
// ConfigureFresh (reported as subtest FreshCaseName), runs every case as a
// subtest of t (told what Configure reported), then CheckMissingBucket
// (subtest MissingBucketCaseName, skipped when settings have no "bucket"
// field and opts no MissingBucket), and stops the plugin when t ends. path may be the test binary itself (os.Executable()) when its
// TestMain calls sdk.ServeIfPlugin. Settings may hold secrets; they are
// never logged.
func RunPlugin(t *testing.T, path string, settings storage.Settings, opts ...Option) {
	t.Helper()
	client, err := sdk.Launch(t.Context(), sdk.LaunchConfig{Path: path})
	if err != nil {
		t.Fatalf("conformance: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	var res storage.ConfigureResult
	ok := t.Run(FreshCaseName, func(t *testing.T) {
		var configured bool
		res, configured, err = ConfigureFresh(t.Context(), client, settings)
		if !configured {
			t.Fatalf("%v (check the settings given to RunPlugin)", err)
		}
		if err != nil {
			t.Error(err)
		}
	})
	if !ok && res == (storage.ConfigureResult{}) {
		if h, herr := client.Health(t.Context()); herr != nil || !h.Configured {
			t.Fatal("conformance: the plugin could not be configured; no case was run")
		}
	}
	Run(t, client, append([]Option{Configured(res)}, opts...)...)
	t.Run(MissingBucketCaseName, func(t *testing.T) {
		err := CheckMissingBucket(t.Context(), client, settings, opts...)
		var skip *SkipError
		switch {
		case err == nil:
		case errors.As(err, &skip):
			t.Skip(skip.Reason)
		default:
			t.Error(err)
		}
	})
}
