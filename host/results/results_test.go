package results

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/localstore"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/storage"
)

const remoteID = "memory"

// mode is how the fake remote answers a Put.
type mode int

const (
	healthy mode = iota
	failBefore
	failAfterCommit
	block
	slow
	// hang ignores the context: the call returns only when the test ends.
	hang
	// landThenBlock stores the object, then blocks until the context ends
	// and fails: an answer lost after the upload landed.
	landThenBlock
)

// remote wraps memstore: it counts puts, records reader types and fails on
// demand.
type remote struct {
	*memstore.Store
	mu          sync.Mutex
	mode        func(key string) mode
	deleteDown  bool
	okPuts      map[string]int
	calls       map[string]int
	nonFile     int
	fileReaders int
	// unhang is closed when the test ends, releasing hung calls.
	unhang chan struct{}
	// slowFor is how long a slow put takes; 0 is one second.
	slowFor time.Duration
}

func newRemote() *remote {
	return &remote{Store: memstore.New(remoteBase), okPuts: map[string]int{}, calls: map[string]int{}, unhang: make(chan struct{})}
}

func (r *remote) setMode(f func(string) mode) {
	r.mu.Lock()
	r.mode = f
	r.mu.Unlock()
}

func (r *remote) setDeleteDown(down bool) {
	r.mu.Lock()
	r.deleteDown = down
	r.mu.Unlock()
}

func (r *remote) resetCounts() {
	r.mu.Lock()
	r.okPuts, r.calls = map[string]int{}, map[string]int{}
	r.mu.Unlock()
}

func (r *remote) counts() (ok, calls map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok, calls = map[string]int{}, map[string]int{}
	for k, v := range r.okPuts {
		ok[k] = v
	}
	for k, v := range r.calls {
		calls[k] = v
	}
	return ok, calls
}

func (r *remote) Put(ctx context.Context, key string, rd io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	r.mu.Lock()
	r.calls[key]++
	if _, ok := rd.(*os.File); ok {
		r.fileReaders++
	} else {
		r.nonFile++
	}
	m := healthy
	slowFor := r.slowFor
	if slowFor == 0 {
		slowFor = time.Second
	}
	if r.mode != nil {
		m = r.mode(key)
	}
	r.mu.Unlock()
	switch m {
	case failBefore:
		return storage.ObjectInfo{}, storage.Errorf(storage.Unavailable, "put %s: injected outage", key)
	case block:
		<-ctx.Done()
		return storage.ObjectInfo{}, &storage.Error{Code: storage.Canceled, Message: ctx.Err().Error(), Err: ctx.Err()}
	case hang:
		<-r.unhang
		return storage.ObjectInfo{}, storage.Errorf(storage.Unavailable, "put %s: hung", key)
	case slow:
		select {
		case <-time.After(slowFor):
		case <-ctx.Done():
			return storage.ObjectInfo{}, &storage.Error{Code: storage.Canceled, Message: ctx.Err().Error(), Err: ctx.Err()}
		}
	}
	info, err := r.Store.Put(ctx, key, rd, opts)
	if err != nil {
		return info, err
	}
	if m == landThenBlock {
		<-ctx.Done()
		return storage.ObjectInfo{}, &storage.Error{Code: storage.Canceled, Message: ctx.Err().Error(), Err: ctx.Err()}
	}
	if m == failAfterCommit {
		return storage.ObjectInfo{}, storage.Errorf(storage.Unavailable, "put %s: injected timeout after commit", key)
	}
	r.mu.Lock()
	r.okPuts[key]++
	r.mu.Unlock()
	return info, nil
}

func (r *remote) Delete(ctx context.Context, key string) error {
	r.mu.Lock()
	down := r.deleteDown
	r.mu.Unlock()
	if down {
		return storage.Errorf(storage.Unavailable, "delete %s: injected outage", key)
	}
	return r.Store.Delete(ctx, key)
}

// DeleteAt fails as Delete does while deletes are down.
func (r *remote) DeleteAt(ctx context.Context, loc storage.Location) error {
	r.mu.Lock()
	down := r.deleteDown
	r.mu.Unlock()
	if down {
		return storage.Errorf(storage.Unavailable, "delete %s: injected outage", loc.Key)
	}
	return r.Store.DeleteAt(ctx, loc)
}

// remoteBase is the public base URL of every remote.
const remoteBase = "https://cdn.example/media"

// placement is what the host learns from a remote's Configure and
// Describe: memstore in its initial configuration.
func (r *remote) placement() (Placement, bool) {
	info, err := r.Store.Describe(context.Background())
	if err != nil {
		return Placement{}, false
	}
	pl := Placement{PublicBaseURL: remoteBase, MaxObjectSize: info.Capabilities.MaxObjectSize, Locations: info.Capabilities.Locations}
	if pl.Locations {
		pl.Bucket = memstore.BucketID(memstore.DefaultBucket)
	}
	return pl, true
}

func (r *remote) has(key string) bool {
	_, err := r.Store.Stat(context.Background(), key)
	return err == nil
}

// router is an in-process Router.
type router struct {
	mu        sync.Mutex
	active    *Target
	providers map[string]storage.Provider
	// unusable, when set, is the route while the active provider is
	// momentarily unusable (waiting or off).
	unusable *Route
}

func (r *router) Route(context.Context) Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.unusable != nil:
		return *r.unusable
	case r.active == nil:
		return Route{State: RouteLocal, Default: Local}
	}
	return Route{State: RouteReady, Default: r.active.ID, Target: *r.active}
}

func (r *router) setUnusable(u *Route) {
	r.mu.Lock()
	r.unusable = u
	r.mu.Unlock()
}

func (r *router) Provider(_ context.Context, id string) (storage.Provider, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.providers[id]
	return p, ok
}

// Placement answers with what the provider's last Configure said, for
// the fakes that have settings (bucketStore); no placement otherwise.
func (r *router) Placement(_ context.Context, id string) (Placement, bool) {
	r.mu.Lock()
	p := r.providers[id]
	r.mu.Unlock()
	if pl, ok := p.(interface{ placement() (Placement, bool) }); ok {
		return pl.placement()
	}
	return Placement{}, false
}

func (r *router) setActive(t *Target) {
	r.mu.Lock()
	r.active = t
	r.mu.Unlock()
}

func (r *router) uninstall(id string) {
	r.mu.Lock()
	delete(r.providers, id)
	if r.active != nil && r.active.ID == id {
		r.active = nil
	}
	r.mu.Unlock()
}

func (r *router) install(id string, p storage.Provider) {
	r.mu.Lock()
	r.providers[id] = p
	r.mu.Unlock()
}

type env struct {
	db     *testdb.DB
	local  *localstore.Store
	remote *remote
	router *router
	svc    *Service
	// allowStray accepts a remote object for a local result: a Put that
	// failed after committing (allowed by the contract) leaves one until a
	// retry overwrites it.
	allowStray bool
}

func testOptions() Options {
	return Options{
		InlineOffloadTimeout: 2 * time.Second,
		DeleteTimeout:        time.Second,
		PollInterval:         20 * time.Millisecond,
		LeaseDuration:        3 * time.Second,
		BackoffMin:           5 * time.Millisecond,
		BackoffMax:           40 * time.Millisecond,
		Logger:               slog.New(slog.DiscardHandler),
	}
}

func newEnv(t *testing.T, d dbmigrate.Dialect, offload, deleteLocal bool, opts Options) *env {
	t.Helper()
	e := &env{db: testdb.Open(t, d), remote: newRemote()}
	// A bounded pool, as the host configures it: PostgreSQL refuses
	// connections past max_connections.
	e.db.SetMaxOpenConns(10)
	var err error
	if e.local, err = localstore.New(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	e.router = &router{providers: map[string]storage.Provider{remoteID: e.remote}}
	if offload {
		e.router.setActive(&Target{ID: remoteID, Provider: e.remote, DeleteLocal: deleteLocal})
	}
	e.svc = New(e.db.DB, e.local, e.router, opts)
	t.Cleanup(func() { close(e.remote.unhang) })
	return e
}

// worker runs svc.RunWorker until the test ends.
func worker(t *testing.T, svc *Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.RunWorker(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunWorker: %v", err)
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) pending(t *testing.T) int {
	t.Helper()
	n, err := e.svc.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) localExists(p string) bool {
	_, err := os.Stat(filepath.Join(e.local.Root(), filepath.FromSlash(p)))
	return err == nil
}

func (e *env) rowCount(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM results").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func payload(i int) []byte {
	return []byte(fmt.Sprintf("\x89PNG\r\n\x1a\n result %d %s", i, strings.Repeat("x", i%97)))
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (e *env) finalize(t testing.TB, data []byte) Result {
	t.Helper()
	res, err := e.svc.Finalize(context.Background(), Upload{Kind: KindImages, Generator: "gemini", ContentType: "image/png"}, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Finalize: %v", err)
	}
	return res
}

// checkServed checks the result's content is reachable and right, and that
// it lives in exactly the place its storage column names.
func (e *env) checkServed(t *testing.T, id string, data []byte) Result {
	t.Helper()
	c, err := e.svc.Content(context.Background(), id)
	if err != nil {
		t.Fatalf("Content(%s): %v", id, err)
	}
	want := hexSum(data)
	if c.SHA256 != want || c.Size != int64(len(data)) {
		t.Fatalf("result %s: sha %s size %d, want %s %d", id, c.SHA256, c.Size, want, len(data))
	}
	switch c.Storage {
	case Local:
		if c.LocalPath == "" || c.RedirectURL != "" {
			t.Fatalf("local result %s served as %+v", id, c)
		}
		got, err := os.ReadFile(c.LocalPath)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("local result %s: read %d bytes, %v", id, len(got), err)
		}
		if e.remote.has(c.Path) && !e.allowStray {
			t.Fatalf("local result %s also has a remote object", id)
		}
	case remoteID:
		if c.RedirectURL == "" || c.LocalPath != "" || c.RedirectURL != c.URL {
			t.Fatalf("offloaded result %s served as %+v", id, c)
		}
		if !strings.HasPrefix(c.URL, "https://cdn.example/media/") || !strings.HasSuffix(c.URL, c.Path) {
			t.Fatalf("offloaded result %s: url %q", id, c.URL)
		}
		rc, _, err := e.remote.Store.Get(context.Background(), c.Path, storage.GetOptions{Length: -1})
		if err != nil {
			t.Fatalf("offloaded result %s: remote object: %v", id, err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("offloaded result %s: remote content differs", id)
		}
		if c.LocalPresent != e.localExists(c.Path) {
			t.Fatalf("offloaded result %s: local_present %v but file exists %v", id, c.LocalPresent, e.localExists(c.Path))
		}
	default:
		t.Fatalf("result %s: storage %q", id, c.Storage)
	}
	return c.Result
}

func forDialects(t *testing.T, f func(t *testing.T, d dbmigrate.Dialect)) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) { f(t, d) })
	}
}

func TestOffloadInline(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		for _, deleteLocal := range []bool{false, true} {
			t.Run(fmt.Sprintf("delete_local=%v", deleteLocal), func(t *testing.T) {
				e := newEnv(t, d, true, deleteLocal, testOptions())
				data := payload(1)
				res := e.finalize(t, data)
				if res.Storage != remoteID || res.URL == "" || res.LocalPresent == deleteLocal {
					t.Fatalf("Finalize = %+v", res)
				}
				if !strings.HasPrefix(res.Path, "images/gemini/") || !strings.HasSuffix(res.Path, ".png") || !strings.Contains(res.Path, res.ID) {
					t.Fatalf("path %q", res.Path)
				}
				got := e.checkServed(t, res.ID, data)
				if got.LocalPresent == deleteLocal || e.localExists(res.Path) == deleteLocal {
					t.Fatalf("delete_local=%v: local_present %v, file exists %v", deleteLocal, got.LocalPresent, e.localExists(res.Path))
				}
				if n := e.pending(t); n != 0 {
					t.Fatalf("%d jobs pending after a successful offload", n)
				}
				e.remote.mu.Lock()
				files, others := e.remote.fileReaders, e.remote.nonFile
				e.remote.mu.Unlock()
				if files != 1 || others != 0 {
					t.Fatalf("Put got %d *os.File readers and %d others, want the *os.File", files, others)
				}
				// Offloaded results keep serving after the provider is gone.
				e.router.uninstall(remoteID)
				c, err := e.svc.Content(context.Background(), res.ID)
				if err != nil || c.RedirectURL != res.URL {
					t.Fatalf("Content after uninstall: %+v, %v", c, err)
				}
				// New results stay local.
				data2 := payload(2)
				res2 := e.finalize(t, data2)
				if res2.Storage != Local {
					t.Fatalf("result after uninstall: %+v", res2)
				}
				e.checkServed(t, res2.ID, data2)
			})
		}
	})
}

func TestDefaultLocal(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, false, false, testOptions())
		data := payload(3)
		res := e.finalize(t, data)
		if res.Storage != Local || res.URL != "" || !res.LocalPresent {
			t.Fatalf("Finalize = %+v", res)
		}
		c, err := e.svc.Content(context.Background(), res.ID)
		if err != nil || c.LocalPath != filepath.Join(e.local.Root(), filepath.FromSlash(res.Path)) {
			t.Fatalf("Content = %+v, %v", c, err)
		}
		e.checkServed(t, res.ID, data)
		if len(e.remote.Keys()) != 0 || e.pending(t) != 0 {
			t.Fatalf("remote keys %v, pending %d", e.remote.Keys(), e.pending(t))
		}
		got, err := e.svc.Get(context.Background(), res.ID)
		if err != nil || got.ID != res.ID || got.Path != res.Path || got.SHA256 != hexSum(data) || got.ContentType != "image/png" {
			t.Fatalf("Get = %+v, %v", got, err)
		}
		// Delete of a local result removes the file and the row at once.
		if err := e.svc.Delete(context.Background(), res.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Get(context.Background(), res.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after delete: %v", err)
		}
		if e.localExists(res.Path) || e.rowCount(t) != 0 || e.pending(t) != 0 {
			t.Fatalf("after delete: file %v rows %d pending %d", e.localExists(res.Path), e.rowCount(t), e.pending(t))
		}
		if err := e.svc.Delete(context.Background(), res.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
	})
}

func TestFailureThenRetry(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		// Transient failures only: a panic is permanent (see
		// TestPermanentErrorParksTheUpload).
		for _, m := range []mode{failBefore, failAfterCommit, block} {
			t.Run(fmt.Sprintf("mode=%d", m), func(t *testing.T) {
				opts := testOptions()
				opts.InlineOffloadTimeout = 300 * time.Millisecond
				e := newEnv(t, d, true, true, opts)
				e.remote.setMode(func(string) mode { return m })
				data := payload(4)
				start := time.Now()
				res := e.finalize(t, data)
				if el := time.Since(start); el > 5*time.Second {
					t.Fatalf("Finalize took %v with a failing provider", el)
				}
				if res.Storage != Local || !res.LocalPresent {
					t.Fatalf("Finalize with a failing provider = %+v", res)
				}
				c, err := e.svc.Content(context.Background(), res.ID)
				if err != nil || c.LocalPath == "" {
					t.Fatalf("Content of the local fallback: %+v, %v", c, err)
				}
				if n := e.pending(t); n != 1 {
					t.Fatalf("%d jobs pending, want 1 offload job", n)
				}
				var attempts int
				var lastErr string
				if err := e.db.QueryRow("SELECT attempts, last_error FROM jobs").Scan(&attempts, &lastErr); err != nil || attempts != 1 || lastErr == "" {
					t.Fatalf("job attempts %d last_error %q, %v", attempts, lastErr, err)
				}
				e.remote.resetCounts()
				e.remote.setMode(nil)
				worker(t, e.svc)
				// The job row goes in the same transaction as the result's; the local
				// copy is removed just after it.
				waitFor(t, "the queued offload", func() bool { return e.pending(t) == 0 && !e.localExists(res.Path) })
				got := e.checkServed(t, res.ID, data)
				if got.Storage != remoteID || got.LocalPresent || e.localExists(got.Path) {
					t.Fatalf("after retry: %+v (local file %v)", got, e.localExists(got.Path))
				}
				ok, calls := e.remote.counts()
				if ok[res.Path] != 1 || calls[res.Path] != 1 || len(e.remote.Keys()) != 1 {
					t.Fatalf("puts %v calls %v keys %v, want exactly one", ok, calls, e.remote.Keys())
				}
			})
		}
	})
}

// TestLocalReason: a result that is local while Default Storage is a
// provider says why; one that got there says nothing.
func TestLocalReason(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, true, false, testOptions())
		e.remote.setMode(func(string) mode { return failBefore })
		failed := e.finalize(t, payload(1))
		if !strings.Contains(failed.LocalReason, "queued for "+remoteID+", retrying (attempt 1 failed)") || !strings.Contains(failed.LocalReason, "injected outage") {
			t.Fatalf("a failed inline upload: local_reason %q", failed.LocalReason)
		}
		e.router.setUnusable(&Route{State: RouteWaiting, Default: remoteID, Reason: "the plugin is restarting"})
		if r := e.finalize(t, payload(2)); r.LocalReason != "queued for "+remoteID+", which cannot take results right now: the plugin is restarting" {
			t.Fatalf("queued: local_reason %q", r.LocalReason)
		}
		e.router.setUnusable(&Route{State: RouteOff, Default: remoteID, Reason: "the provider is disabled"})
		if r := e.finalize(t, payload(3)); r.LocalReason != "kept local: the Default Storage "+remoteID+" takes no new results: the provider is disabled" {
			t.Fatalf("off: local_reason %q", r.LocalReason)
		}
		e.router.setUnusable(nil)
		e.remote.setMode(nil)
		worker(t, e.svc)
		waitFor(t, "the queued results to land", func() bool { return e.pending(t) == 0 })
		for _, id := range []string{failed.ID} {
			if r, err := e.svc.Get(context.Background(), id); err != nil || r.Storage != remoteID || r.LocalReason != "" {
				t.Fatalf("after landing: %+v, %v", r, err)
			}
		}
		if r := e.finalize(t, payload(4)); r.Storage != remoteID || r.LocalReason != "" {
			t.Fatalf("inline: %+v", r)
		}
	})
}

func TestSwitchToLocalDropsJob(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		for _, to := range []string{"local", "other-provider"} {
			t.Run(to, func(t *testing.T) {
				e := newEnv(t, d, true, true, testOptions())
				e.remote.setMode(func(string) mode { return failAfterCommit })
				data := payload(5)
				res := e.finalize(t, data)
				if res.Storage != Local || e.pending(t) != 1 {
					t.Fatalf("Finalize = %+v, pending %d", res, e.pending(t))
				}
				e.remote.setMode(nil)
				if to == "local" {
					e.router.setActive(nil)
				} else {
					other := newRemote()
					e.router.install("other-provider", other)
					e.router.setActive(&Target{ID: "other-provider", Provider: other})
				}
				worker(t, e.svc)
				waitFor(t, "the job to be dropped", func() bool { return e.pending(t) == 0 })
				got := e.checkServed(t, res.ID, data)
				if got.Storage != Local || !e.localExists(got.Path) {
					t.Fatalf("after switching storage: %+v", got)
				}
				// The object a failed attempt left behind was cleaned up.
				if len(e.remote.Keys()) != 0 {
					t.Fatalf("remote keys left: %v", e.remote.Keys())
				}
				// The result says why it stayed local.
				if want := "kept local: Default Storage was changed from " + remoteID + " to " + to; !strings.HasPrefix(got.LocalReason, want) {
					t.Fatalf("local_reason %q, want it to start with %q", got.LocalReason, want)
				}
			})
		}
	})
}

func TestDeleteOffloadedProviderDown(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		for _, how := range []string{"errors", "uninstalled"} {
			t.Run(how, func(t *testing.T) {
				e := newEnv(t, d, true, false, testOptions())
				data := payload(6)
				res := e.finalize(t, data)
				if res.Storage != remoteID || !e.remote.has(res.Path) || !e.localExists(res.Path) {
					t.Fatalf("Finalize = %+v", res)
				}
				keep := e.finalize(t, payload(7))
				if how == "errors" {
					e.remote.setDeleteDown(true)
				} else {
					e.router.uninstall(remoteID)
				}
				if err := e.svc.Delete(context.Background(), res.ID); err != nil {
					t.Fatalf("Delete with the provider down: %v", err)
				}
				if _, err := e.svc.Get(context.Background(), res.ID); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Get after delete: %v", err)
				}
				if _, err := e.svc.Content(context.Background(), res.ID); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Content after delete: %v", err)
				}
				list, _, err := e.svc.List(context.Background(), ListOptions{Limit: 10})
				if err != nil || len(list) != 1 || list[0].ID != keep.ID {
					t.Fatalf("List after delete: %+v, %v", list, err)
				}
				if e.pending(t) != 1 || !e.remote.has(res.Path) {
					t.Fatalf("pending %d, object present %v", e.pending(t), e.remote.has(res.Path))
				}
				worker(t, e.svc)
				time.Sleep(100 * time.Millisecond) // a few failed retries
				if e.pending(t) != 1 || !e.remote.has(res.Path) {
					t.Fatalf("while down: pending %d, object present %v", e.pending(t), e.remote.has(res.Path))
				}
				if how == "errors" {
					e.remote.setDeleteDown(false)
				} else {
					// Not installed is permanent: the delete waits for a
					// retry once the provider is installed again.
					e.router.install(remoteID, e.remote)
					if n, err := e.svc.RetryFailed(context.Background(), remoteID); err != nil || n != 1 {
						t.Fatalf("RetryFailed = %d, %v", n, err)
					}
				}
				waitFor(t, "the queued delete", func() bool { return e.pending(t) == 0 })
				if e.remote.has(res.Path) || e.localExists(res.Path) || e.rowCount(t) != 1 {
					t.Fatalf("after the delete job: object %v, local %v, rows %d", e.remote.has(res.Path), e.localExists(res.Path), e.rowCount(t))
				}
				e.checkServed(t, keep.ID, payload(7))
			})
		}
	})
}

func TestConcurrentFinalizeRandomFailures(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		opts := testOptions()
		opts.InlineOffloadTimeout = 500 * time.Millisecond
		e := newEnv(t, d, true, true, opts)
		e.remote.setMode(func(string) mode {
			switch n := rand.IntN(10); {
			case n < 5:
				return healthy
			case n < 7:
				return failBefore
			case n < 9:
				return failAfterCommit
			default:
				return block
			}
		})
		const n = 200
		ids := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				res, err := e.svc.Finalize(context.Background(), Upload{Kind: KindImages, Generator: "gemini", ContentType: "image/png"}, bytes.NewReader(payload(i)))
				ids[i], errs[i] = res.ID, err
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("Finalize failed with a flaky provider: %v", err)
		}
		var local int
		e.allowStray = true
		for i, id := range ids {
			if e.checkServed(t, id, payload(i)).Storage == Local {
				local++
			}
		}
		if p := e.pending(t); p != local {
			t.Fatalf("%d local results but %d jobs", local, p)
		}
		t.Logf("%d of %d results stayed local after the inline attempt", local, n)
		e.allowStray = false
		e.remote.resetCounts()
		e.remote.setMode(nil)
		worker(t, e.svc)
		waitFor(t, "every queued offload", func() bool { return e.pending(t) == 0 })
		ok, calls := e.remote.counts()
		for i, id := range ids {
			res := e.checkServed(t, id, payload(i))
			if res.Storage != remoteID {
				t.Fatalf("result %s still %s after the queue drained", id, res.Storage)
			}
			if calls[res.Path] > 1 || ok[res.Path] != calls[res.Path] {
				t.Fatalf("result %s: %d put calls after recovery", id, calls[res.Path])
			}
		}
		if len(e.remote.Keys()) != n {
			t.Fatalf("%d remote objects, want %d", len(e.remote.Keys()), n)
		}
	})
}

func TestTwoNodesNeverRunAJobTwice(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		// Both nodes mount one results folder, so either may run any job.
		opts := testOptions()
		opts.SharedVolume = true
		e := newEnv(t, d, true, true, opts)
		db2, _, err := dbmigrate.Open(context.Background(), e.db.DSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db2.Close() })
		db2.SetMaxOpenConns(10)
		node2 := New(db2, e.local, e.router, opts)
		e.remote.setMode(func(string) mode { return failBefore })
		const n = 60
		paths := map[string]bool{}
		for i := range n {
			res := e.finalize(t, payload(i))
			paths[res.Path] = true
		}
		if p := e.pending(t); p != n {
			t.Fatalf("%d jobs, want %d", p, n)
		}
		e.remote.resetCounts()
		e.remote.setMode(nil)
		for range 3 {
			worker(t, e.svc)
			worker(t, node2)
		}
		waitFor(t, "both nodes to drain the queue", func() bool { return e.pending(t) == 0 })
		ok, calls := e.remote.counts()
		for p := range paths {
			if calls[p] != 1 || ok[p] != 1 {
				t.Errorf("%s: %d put calls, want exactly 1", p, calls[p])
			}
		}
		if len(calls) != n {
			t.Fatalf("puts for %d keys, want %d", len(calls), n)
		}
	})
}

func TestLeaseRenewedDuringLongJobs(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		// A lease long enough that a renewal delayed by a loaded machine
		// still lands in time (renewals come every third of it), and
		// uploads that take three of them.
		opts := testOptions()
		opts.LeaseDuration = time.Second
		opts.PollInterval = 10 * time.Millisecond
		// Both nodes mount one results folder, so either may run any job.
		opts.SharedVolume = true
		e := newEnv(t, d, true, false, opts)
		db2, _, err := dbmigrate.Open(context.Background(), e.db.DSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db2.Close() })
		db2.SetMaxOpenConns(10)
		node2 := New(db2, e.local, e.router, opts)
		e.remote.setMode(func(string) mode { return failBefore })
		var paths []string
		for i := range 3 {
			paths = append(paths, e.finalize(t, payload(i)).Path)
		}
		e.remote.resetCounts()
		// Each upload now takes three lease durations.
		e.remote.mu.Lock()
		e.remote.slowFor = 3 * opts.LeaseDuration
		e.remote.mu.Unlock()
		e.remote.setMode(func(string) mode { return slow })
		worker(t, e.svc)
		worker(t, node2)
		waitFor(t, "the slow uploads", func() bool { return e.pending(t) == 0 })
		_, calls := e.remote.counts()
		for _, p := range paths {
			if calls[p] != 1 {
				t.Errorf("%s: %d put calls, want 1 (the lease must be renewed while the upload runs)", p, calls[p])
			}
		}
	})
}

func TestBadInput(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, true, false, testOptions())
		cases := []struct{ kind, gen, ct string }{
			{"audio", "gemini", "image/png"},
			{"", "gemini", "image/png"},
			{"Images", "gemini", "image/png"},
			{"images", "", "image/png"},
			{"images", "Gemini", "image/png"},
			{"images", "gem_ini", "image/png"},
			{"images", "../etc", "image/png"},
			{"images", "-gemini", "image/png"},
			{"images", "gemini/x", "image/png"},
			{"images", strings.Repeat("a", 65), "image/png"},
			{"images", "gemini", "video/mp4"},
			{"videos", "veo", "image/png"},
			{"images", "gemini", "not a type"},
			{"images", "gemini", "image/x-unknown-thing"},
		}
		for _, c := range cases {
			_, err := e.svc.Finalize(context.Background(), Upload{Kind: c.kind, Generator: c.gen, ContentType: c.ct}, bytes.NewReader(payload(1)))
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupportedMedia) {
				t.Errorf("Finalize(%q, %q, %q) = %v, want ErrInvalid or ErrUnsupportedMedia", c.kind, c.gen, c.ct, err)
			}
		}
		if e.rowCount(t) != 0 || len(e.remote.Keys()) != 0 {
			t.Fatalf("bad input left rows %d, objects %v", e.rowCount(t), e.remote.Keys())
		}
		entries, _ := os.ReadDir(e.local.Root())
		if len(entries) != 0 {
			t.Fatalf("bad input left files: %v", entries)
		}
		mp4 := "\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2 and the rest of the video"
		res, err := e.svc.Finalize(context.Background(), Upload{Kind: KindVideos, Generator: "veo-3"}, strings.NewReader(mp4))
		if err != nil || !strings.HasPrefix(res.Path, "videos/veo-3/") || !strings.HasSuffix(res.Path, ".mp4") {
			t.Fatalf("video: %+v, %v", res, err)
		}
		if _, err := e.svc.Get(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of a missing id: %v", err)
		}
		if err := e.svc.Delete(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Delete of a missing id: %v", err)
		}
		if _, _, err := e.svc.List(context.Background(), ListOptions{Cursor: "garbage!", Limit: 10}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("List with a bad cursor: %v", err)
		}
	})
}

func TestListPages(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		opts := testOptions()
		var mu sync.Mutex
		clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		opts.Now = func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			clock = clock.Add(1500 * time.Microsecond)
			return clock
		}
		e := newEnv(t, d, false, false, opts)
		var want []string
		for i := range 7 {
			want = append([]string{e.finalize(t, payload(i)).ID}, want...)
		}
		if err := e.svc.Delete(context.Background(), want[2]); err != nil {
			t.Fatal(err)
		}
		want = append(want[:2], want[3:]...)
		var got []string
		cursor := ""
		for page := 0; ; page++ {
			list, next, err := e.svc.List(context.Background(), ListOptions{Cursor: cursor, Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range list {
				got = append(got, r.ID)
				if r.CreatedAt.IsZero() {
					t.Fatalf("result %s has no created_at", r.ID)
				}
			}
			if next == "" {
				break
			}
			if page > 10 {
				t.Fatal("List does not end")
			}
			cursor = next
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("List order\n got %v\nwant %v", got, want)
		}
	})
}
