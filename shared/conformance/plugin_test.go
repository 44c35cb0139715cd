package conformance_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/conformance"
	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/sdk"
	"github.com/magicads/r2storage/shared/storage"
)

// TestMain lets this test binary act as a plugin serving memstore, as a
// provider author's TestMain does with their own provider.
func TestMain(m *testing.M) {
	sdk.ServeIfPlugin(func() sdk.Provider { return memstore.New("") })
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
