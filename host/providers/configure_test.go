package providers_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/storage"
)

// echoing is the plugin's provider with a Configure that refuses the
// settings quoting the secret it was given, as a careless third-party
// plugin might.
type echoing struct{ storage.Provider }

func (p echoing) Configure(_ context.Context, s storage.Settings) (storage.ConfigureResult, error) {
	sk, _ := s["secret_access_key"].(string)
	return storage.ConfigureResult{}, storage.Errorf(storage.InvalidSettings, "cannot sign with secret %s", sk)
}

// TestConfigureRefusalNeverShowsASecret: a plugin's refusal of its
// settings is shown to the admin (storage overview, plugins card,
// settings page) with every stored secret value redacted.
func TestConfigureRefusalNeverShowsASecret(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.install()
			ctx := context.Background()
			e.save(complete())
			if err := e.m.OnStart(ctx, pluginID, echoing{e.rt.Provider(pluginID)}); err != nil {
				t.Fatal(err)
			}
			const secret = "fake-secret-1"
			const shown = "cannot sign with secret [redacted]"
			overview, err := json.Marshal(e.m.StorageStatus(ctx, nil, nil))
			if err != nil {
				t.Fatal(err)
			}
			sv, err := e.m.Settings(ctx, pluginID)
			if err != nil {
				t.Fatal(err)
			}
			var card string
			for _, p := range e.m.Plugins() {
				if p.ID == pluginID {
					card = p.Message
				}
			}
			for what, text := range map[string]string{"storage overview": string(overview), "settings page problem": sv.Problem, "plugins card": card} {
				if strings.Contains(text, secret) {
					t.Errorf("%s shows the secret: %s", what, text)
				}
				if !strings.Contains(text, shown) {
					t.Errorf("%s does not show the refusal %q: %s", what, shown, text)
				}
			}
		})
	}
}

// gatedConfigure is the plugin's provider with a Configure that waits
// until gate is closed before passing the settings on; entered is closed
// as the first call arrives.
type gatedConfigure struct {
	storage.Provider
	gate, entered chan struct{}
	once          sync.Once
}

func (p *gatedConfigure) Configure(ctx context.Context, s storage.Settings) (storage.ConfigureResult, error) {
	p.once.Do(func() { close(p.entered) })
	select {
	case <-p.gate:
	case <-ctx.Done():
		return storage.ConfigureResult{}, ctx.Err()
	}
	return p.Provider.Configure(ctx, s)
}

// TestSaveRacingAStartConfigureEndsOnTheSavedSettings: a save made while
// the plugin's start-up configure (with the settings stored before) is
// still inside the plugin leaves the plugin, its state and its placement
// on the saved settings, not on the older ones that configure applies.
func TestSaveRacingAStartConfigureEndsOnTheSavedSettings(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.install()
			ctx := context.Background()
			e.save(complete())
			starting := &gatedConfigure{Provider: e.rt.Provider(pluginID), gate: make(chan struct{}), entered: make(chan struct{})}
			started := make(chan struct{})
			go func() {
				defer close(started)
				if err := e.m.OnStart(ctx, pluginID, starting); err != nil {
					t.Errorf("OnStart: %v", err)
				}
			}()
			select {
			case <-starting.entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the start-up configure did not reach the plugin")
			}

			saved := make(chan struct{})
			go func() {
				defer close(saved)
				fields, err := e.m.SaveSettings(ctx, pluginID, with(complete(), "bucket", deniedBucket, "public_url", "https://new.example"))
				if err != nil || len(fields) > 0 {
					t.Errorf("save: fields %v, error %v", fields, err)
				}
			}()
			select {
			case <-saved:
			case <-time.After(500 * time.Millisecond):
			}
			close(starting.gate)
			for _, ch := range []chan struct{}{started, saved} {
				select {
				case <-ch:
				case <-time.After(20 * time.Second):
					t.Fatal("a configure did not end")
				}
			}

			if got := e.stored()["bucket"]; got != deniedBucket {
				t.Fatalf("stored bucket %v, want %s", got, deniedBucket)
			}
			// The fake fails its connection test at upload only when
			// configured for deniedBucket.
			res, err := e.rt.Provider(pluginID).TestConnection(ctx)
			if err != nil || res.Message != deniedMessage {
				t.Errorf("the plugin is not configured for the stored bucket %s: test result %+v, error %v", deniedBucket, res, err)
			}
			if pl, ok := e.m.Placement(ctx, pluginID); !ok || pl.PublicBaseURL != "https://new.example" {
				t.Errorf("placement %+v (ok %v), want the saved public URL", pl, ok)
			}
			if sv, err := e.m.Settings(ctx, pluginID); err != nil || sv.Problem != "" {
				t.Errorf("settings problem %q, error %v; want none", sv.Problem, err)
			}
		})
	}
}

// TestRemoveWhileAConfigureIsInFlight: a plugin can be removed while a
// configure of it is inside the plugin and a restart's configure waits
// for that one: the waiting configure gives up when the stop ends its
// start, and neither the removal nor the install that started it hangs.
func TestRemoveWhileAConfigureIsInFlight(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{StartTimeout: time.Minute})
			e.install()
			ctx := context.Background()
			e.save(complete())
			inFlight := &gatedConfigure{Provider: e.rt.Provider(pluginID), gate: make(chan struct{}), entered: make(chan struct{})}
			defer close(inFlight.gate)
			go func() { _ = e.m.OnStart(ctx, pluginID, inFlight) }()
			select {
			case <-inFlight.entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the configure did not reach the plugin")
			}

			inst, ok := e.m.Installed(pluginID)
			if !ok {
				t.Fatal("not installed")
			}
			reinstalled := make(chan error, 1)
			go func() { reinstalled <- e.m.Activate(ctx, inst) }()
			// Let the restart reach its configure, which waits.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if st, _ := e.rt.Status(pluginID); st.State == pluginrt.StateStarting && st.Pid == 0 {
					time.Sleep(500 * time.Millisecond)
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the restart did not begin")
				}
				time.Sleep(10 * time.Millisecond)
			}
			removed := make(chan error, 1)
			go func() { removed <- e.m.Remove(ctx, pluginID) }()
			select {
			case err := <-removed:
				if err != nil {
					t.Fatalf("Remove: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("Remove hangs while a configure is in flight")
			}
			select {
			case <-reinstalled:
			case <-time.After(15 * time.Second):
				t.Fatal("the install whose start was stopped hangs")
			}
			if _, ok := e.m.Installed(pluginID); ok {
				t.Error("the plugin is still installed after Remove")
			}
		})
	}
}
