package providers

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/host/settingsstore"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/settingsschema"
	"github.com/magicads/r2storage/shared/storage"
)

// cfgID is the provider the configure tests use.
const cfgID = "cloudflare-r2"

// cfgEnv is a Manager knowing one provider, cfgID, with the repo's
// settings schema and no plugin process: the tests hand configure (and
// OnStart) in-process providers.
type cfgEnv struct {
	t      *testing.T
	m      *Manager
	store  *settingsstore.Store
	schema *settingsschema.Schema
	p      *plugin

	mu sync.Mutex
	// hooked are the placements Options.Configured was called with, in order.
	hooked []results.Placement
}

func newCfgEnv(t *testing.T, d dbmigrate.Dialect) *cfgEnv {
	t.Helper()
	db := testdb.Open(t, d)
	key, err := settingsstore.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := settingsstore.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(plugintest.ModuleRoot(t), "schema", "settings.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	schema, err := settingsschema.Compile(doc)
	if err != nil {
		t.Fatal(err)
	}
	e := &cfgEnv{t: t, store: settingsstore.New(db.DB, keys), schema: schema}
	e.m = New(db.DB, db.Dialect, e.store, pluginrt.New(pluginrt.Options{}), nil, Options{PluginsDir: t.TempDir(), Keys: keys,
		Configured: func(_ context.Context, id string, pl results.Placement) {
			if id != cfgID {
				t.Errorf("Configured called for %q", id)
			}
			e.mu.Lock()
			e.hooked = append(e.hooked, pl)
			e.mu.Unlock()
		}})
	e.p = e.newPlugin()
	e.m.plugins[cfgID] = e.p
	return e
}

// newPlugin returns a manager's plugin record of cfgID with e's schema.
func (e *cfgEnv) newPlugin() *plugin {
	return &plugin{inst: Installed{ID: cfgID, Version: "1.0.0"}, name: "Cloudflare R2", schema: e.schema}
}

// save stores fully configured settings putting objects in bucket, behind
// the manager's back (as another node, or before a restart, would).
func (e *cfgEnv) save(bucket, secret string) {
	e.t.Helper()
	values := map[string]any{
		"enabled": true, "access_key_id": "AKIAFAKE", "secret_access_key": secret,
		"account_id": "0123456789abcdef0123456789abcdef", "bucket": bucket, "public_url": "https://" + bucket + ".example",
	}
	if err := e.store.Save(context.Background(), EntryName(cfgID), cfgID, values); err != nil {
		e.t.Fatal(err)
	}
}

// lastHooked returns the last placement Options.Configured was given.
func (e *cfgEnv) lastHooked() (results.Placement, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.hooked) == 0 {
		return results.Placement{}, false
	}
	return e.hooked[len(e.hooked)-1], true
}

// state reads p's outcome of its last configure.
func (e *cfgEnv) state(p *plugin) (configured bool, problem string) {
	e.m.mu.Lock()
	defer e.m.mu.Unlock()
	return p.configured, p.problem
}

// plugState is what an in-process plugin was configured with, in order.
type plugState struct {
	mu      sync.Mutex
	applied []string
}

func (s *plugState) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.applied) == 0 {
		return ""
	}
	return s.applied[len(s.applied)-1]
}

func (s *plugState) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.applied)
}

// inproc is an in-process provider: Configure records the bucket it is
// given in state and reports it (and the public URL) as its placement.
// With gate set, Configure first waits until gate is closed; entered,
// when set, is closed as the first call arrives. during, when set, runs
// inside Configure.
type inproc struct {
	*memstore.Store
	state   *plugState
	gate    chan struct{}
	entered chan struct{}
	once    sync.Once
	during  func()
}

func newInproc(state *plugState) *inproc {
	return &inproc{Store: memstore.New(""), state: state}
}

// gated returns an inproc whose Configure waits for the gate.
func gated(state *plugState) *inproc {
	p := newInproc(state)
	p.gate, p.entered = make(chan struct{}), make(chan struct{})
	return p
}

func (p *inproc) Describe(context.Context) (storage.Info, error) { return storage.Info{}, nil }

func (p *inproc) Configure(ctx context.Context, s storage.Settings) (storage.ConfigureResult, error) {
	if p.entered != nil {
		p.once.Do(func() { close(p.entered) })
	}
	if p.gate != nil {
		select {
		case <-p.gate:
		case <-ctx.Done():
			return storage.ConfigureResult{}, ctx.Err()
		}
	}
	if p.during != nil {
		p.during()
	}
	bucket, _ := s["bucket"].(string)
	pub, _ := s["public_url"].(string)
	p.state.mu.Lock()
	p.state.applied = append(p.state.applied, bucket)
	p.state.mu.Unlock()
	return storage.ConfigureResult{Bucket: bucket, PublicBaseURL: pub}, nil
}

// waitClosed fails the test unless ch is closed within d.
func waitClosed(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: not within %s", what, d)
	}
}

// onStart runs OnStart in a goroutine; the channel is closed when it returned.
func (e *cfgEnv) onStart(ctx context.Context, prov storage.Provider) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.m.OnStart(ctx, cfgID, prov); err != nil {
			e.t.Errorf("OnStart: %v", err)
		}
	}()
	return done
}

// checkApplied checks that the plugin, the manager's state, its placement
// and the last Configured call all say bucket.
func (e *cfgEnv) checkApplied(state *plugState, bucket string) {
	e.t.Helper()
	if got := state.last(); got != bucket {
		e.t.Errorf("the plugin was last configured for bucket %q, want the stored %q (applied in order: %v)", got, bucket, state.applied)
	}
	if configured, problem := e.state(e.p); !configured || problem != "" {
		e.t.Errorf("state: configured %v, problem %q; want configured", configured, problem)
	}
	pl, ok := e.m.Placement(context.Background(), cfgID)
	want := results.Placement{Bucket: bucket, PublicBaseURL: "https://" + bucket + ".example"}
	if !ok || pl != want {
		e.t.Errorf("placement %+v (ok %v), want %+v", pl, ok, want)
	}
	if h, ok := e.lastHooked(); !ok || h != want {
		e.t.Errorf("Configured was last called with %+v (called: %v), want %+v", h, ok, want)
	}
}

// TestConfigureWaitsForTheOneInFlight: two configures of one provider do
// not overlap. One that starts while another is inside the plugin's
// Configure (with the values stored before) waits for it, then applies
// the values stored now: the plugin, the manager's state, the placement
// and the last Options.Configured call all end on the stored settings.
func TestConfigureWaitsForTheOneInFlight(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newCfgEnv(t, d)
			ctx := context.Background()
			state := &plugState{}
			e.save("old-bucket", "secret-old")
			holder := gated(state)
			done1 := e.onStart(ctx, holder)
			waitClosed(t, holder.entered, 10*time.Second, "the first configure reaching the plugin")

			e.save("new-bucket", "secret-new")
			done2 := e.onStart(ctx, newInproc(state))
			select {
			case <-done2:
			case <-time.After(500 * time.Millisecond):
			}
			close(holder.gate)
			waitClosed(t, done1, 10*time.Second, "the first configure")
			waitClosed(t, done2, 10*time.Second, "the second configure")
			e.checkApplied(state, "new-bucket")
		})
	}
}

// TestConfigureGivingUpHandsOver: a configure waiting for the one in
// flight gives up when its ctx ends (it never blocks its caller longer,
// and a start is not failed for it), and the one in flight then applies
// the values stored meanwhile to the plugin the one that gave up was for
// (a start's fresh process).
func TestConfigureGivingUpHandsOver(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newCfgEnv(t, d)
			ctx := context.Background()
			e.save("old-bucket", "secret-old")
			holder := gated(&plugState{})
			done1 := e.onStart(ctx, holder)
			waitClosed(t, holder.entered, 10*time.Second, "the first configure reaching the plugin")

			e.save("new-bucket", "secret-new")
			wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			fresh := &plugState{}
			start := time.Now()
			if err := e.m.OnStart(wctx, cfgID, newInproc(fresh)); err != nil {
				t.Errorf("OnStart whose configure gave up waiting: %v", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("a configure whose ctx ended returned after %s", took)
			}
			close(holder.gate)
			waitClosed(t, done1, 10*time.Second, "the first configure")
			e.checkApplied(fresh, "new-bucket")
		})
	}
}

// TestConfigureRecordsOnTheInstalledPlugin: a configure started for a
// plugin record that was replaced since (the plugin was installed again)
// records its outcome on the record installed now; one for a plugin that
// was removed does not configure it.
func TestConfigureRecordsOnTheInstalledPlugin(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newCfgEnv(t, d)
			ctx := context.Background()
			state := &plugState{}
			e.save("the-bucket", "secret-1")
			old := e.p
			e.p = e.newPlugin()
			e.m.mu.Lock()
			e.m.plugins[cfgID] = e.p
			e.m.mu.Unlock()
			e.m.configure(ctx, old, newInproc(state))
			e.checkApplied(state, "the-bucket")

			e.m.mu.Lock()
			delete(e.m.plugins, cfgID)
			e.m.mu.Unlock()
			n := state.count()
			e.m.configure(ctx, e.p, newInproc(state))
			if state.count() != n {
				t.Errorf("a removed plugin was configured: %v", state.applied)
			}
		})
	}
}

// TestSecretsAreKnownWhileThePluginConfigures: the secret values being
// applied are among Secrets (which the runtime scrubs from the plugin's
// log lines and errors) while the plugin's Configure runs, also the first
// time the manager sees them (after a restart).
func TestSecretsAreKnownWhileThePluginConfigures(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newCfgEnv(t, d)
			e.save("the-bucket", "secret-first-seen")
			prov := newInproc(&plugState{})
			seen := false
			prov.during = func() { seen = slices.Contains(e.m.Secrets(), "secret-first-seen") }
			if err := e.m.OnStart(context.Background(), cfgID, prov); err != nil {
				t.Fatal(err)
			}
			if !seen {
				t.Error("the secret being applied was not among Secrets while the plugin's Configure ran")
			}
			if !slices.Contains(e.m.Secrets(), "secret-first-seen") {
				t.Error("the applied secret is not among Secrets after the configure")
			}
		})
	}
}

// TestNoPlacementWhileNotConfigured: a plugin that was placed once, then
// restarted and not configured again (its settings could not be read, or
// it refused them), has no placement: deletes then wait for it instead of
// reaching an unconfigured plugin, whose "not configured" would park them.
func TestNoPlacementWhileNotConfigured(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newCfgEnv(t, d)
			pl := results.Placement{Bucket: "r2:acc/media", PublicBaseURL: "https://media.example", Locations: true}
			e.m.mu.Lock()
			e.p.configured, e.p.placement, e.p.placed = true, pl, true
			e.m.mu.Unlock()
			if got, ok := e.m.Placement(context.Background(), cfgID); !ok || got != pl {
				t.Fatalf("configured: Placement = %+v, %v", got, ok)
			}
			e.m.mu.Lock()
			e.p.configured, e.p.problem = false, "its settings cannot be read"
			e.m.mu.Unlock()
			if got, ok := e.m.Placement(context.Background(), cfgID); ok {
				t.Fatalf("not configured: Placement = %+v, true; want none", got)
			}
		})
	}
}
