package results

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
)

// gateRouter blocks Route while gated or until its ctx ends (signalling
// entered once).
type gateRouter struct {
	*router
	mu      sync.Mutex
	gate    chan struct{}
	entered chan struct{}
}

func (g *gateRouter) Route(ctx context.Context) Route {
	g.mu.Lock()
	gate, entered := g.gate, g.entered
	g.gate, g.entered = nil, nil
	g.mu.Unlock()
	if gate != nil {
		close(entered)
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	return g.router.Route(ctx)
}

// TestDrainCoversLeasedJobs: a worker holds the lease of a job whose
// earlier attempt stored its object while the drain runs (it is asking
// where the job goes); the object is still removed before the provider
// goes.
func TestDrainCoversLeasedJobs(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		// The gated Service below is another one of the same node, on
		// the same results folder.
		opts := testOptions()
		opts.NodeID = "node-a"
		e := newEnv(t, d, true, false, opts)
		e.remote.setMode(func(string) mode { return failAfterCommit })
		r := e.finalize(t, payload(1))
		if r.Storage != Local || !e.remote.has(r.Path) {
			t.Fatalf("setup: %+v", r)
		}
		e.remote.setMode(nil)
		g := &gateRouter{router: e.router, gate: make(chan struct{}), entered: make(chan struct{})}
		gate, entered := g.gate, g.entered
		svc := New(e.db.DB, e.local, g, opts)
		worker(t, svc)
		<-entered // the worker leased the job and asks where it goes
		// Remove: Default Storage -> local, drain, stop plugin, reopen.
		e.router.setActive(nil)
		reopen := svc.Drain(context.Background(), remoteID, 300*time.Millisecond)
		e.router.uninstall(remoteID)
		reopen()
		close(gate)
		waitFor(t, "the job to go", func() bool { return e.pending(t) == 0 })
		if e.remote.has(r.Path) {
			t.Fatalf("object %s left in the bucket with no row referring to it", r.Path)
		}
	})
}

// TestDrainOutlivesItsCaller: Remove runs the drain on a context of its
// own, so an admin whose request gives up does not cut it short; here the
// drain's own context ends while an upload that landed is in flight: it
// still cuts the upload and removes its object before returning.
func TestDrainOutlivesItsCaller(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, true, false, testOptions())
		e.remote.setMode(func(string) mode { return landThenBlock })
		inflight := make(chan Result, 1)
		go func() { inflight <- e.finalize(t, payload(2)) }()
		waitFor(t, "the upload to land", func() bool { _, c := e.remote.counts(); return len(c) == 1 })
		e.router.setActive(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		reopen := e.svc.Drain(ctx, remoteID, 10*time.Second)
		// Remove goes on: rt.Stop kills the plugin.
		e.remote.setDeleteDown(true)
		e.router.uninstall(remoteID)
		reopen()
		res := <-inflight
		if e.remote.has(res.Path) {
			t.Fatalf("Drain returned on ctx end with the upload still in flight; object %s left without a row (result %s storage %s)", res.Path, res.ID, res.Storage)
		}
	})
}

// TestRecoverKeepsStagedFiles: a file staged but not yet committed whose
// time is before the cut-off (the clock stepped back after start) is not
// removed by Recover; Commit records it with its file.
func TestRecoverKeepsStagedFiles(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, false, false, testOptions())
		st, err := e.svc.Stage(context.Background(), Upload{Kind: KindImages, Generator: "gemini", ContentType: "image/png"}, bytesReader(payload(3)))
		if err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		p := filepath.Join(e.local.Root(), filepath.FromSlash(st.key))
		old := before.Add(-2 * time.Second)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Recover(context.Background(), before); err != nil {
			t.Fatal(err)
		}
		res, err := st.Commit(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Content(context.Background(), res.ID); err != nil {
			t.Fatalf("acknowledged result %s lost its file: %v", res.ID, err)
		}
	})
}

func bytesReader(b []byte) *bytesR { return &bytesR{b: b} }

type bytesR struct{ b []byte }

func (r *bytesR) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// hangDelete is a provider whose Delete never answers (S3 blackholed).
type hangDelete struct{ *remote }

func (h hangDelete) Delete(ctx context.Context, key string) error {
	<-h.unhang
	return nil
}

// TestDrainDeletesBounded: deletes of what failed uploads may have stored
// are bounded each, so a provider whose Delete never answers cannot hold
// the drain (and the uninstall) for long.
func TestDrainDeletesBounded(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, true, false, testOptions())
		e.remote.setMode(func(string) mode { return failAfterCommit })
		for i := range 3 {
			e.finalize(t, payload(10+i))
		}
		e.router.install(remoteID, hangDelete{e.remote})
		e.router.setActive(nil)
		done := make(chan struct{})
		go func() { e.svc.Drain(context.Background(), remoteID, 100*time.Millisecond); close(done) }()
		select {
		case <-done:
		case <-time.After(2*cleanupTimeout + 5*time.Second):
			t.Fatalf("Drain still running after %v: the deletes of 3 tried jobs are not bounded", 2*cleanupTimeout+5*time.Second)
		}
	})
}

func TestReleaseLeasesScope(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		opts := testOptions()
		opts.NodeID = "a_b"
		e := newEnv(t, d, true, false, opts)
		e.remote.setMode(func(string) mode { return block })
		done := make(chan struct{})
		go func() { e.finalize(t, payload(1)); close(done) }()
		waitFor(t, "inline upload", func() bool { _, c := e.remote.counts(); return len(c) == 1 })
		until := dbTime(time.Now().Add(time.Hour))
		for i, lb := range []string{"axb/P/c", "a_b/OLD/c", "A_B/OLD/c", "a_b/x"} {
			e.exec(t, `INSERT INTO jobs (kind, result_id, provider, object_key, attempts, next_attempt_at, locked_until, locked_by, last_error, created_at)
				VALUES ('offload', $3, 'memory', 'k', 0, $1, $1, $2, '', $1)`, until, lb, fmt.Sprint("r", i))
		}
		n, err := e.svc.ReleaseLeases(context.Background())
		rows, _ := e.db.Query("SELECT locked_by FROM jobs ORDER BY id")
		var left []string
		for rows.Next() {
			var s string
			rows.Scan(&s)
			left = append(left, s)
		}
		rows.Close()
		if err != nil || n != 2 {
			t.Fatalf("released %d, %v; want the 2 leases of node a_b's earlier processes", n, err)
		}
		want := map[string]bool{"axb/P/c": true, "A_B/OLD/c": true}
		for _, lb := range left {
			switch {
			case want[lb]:
				delete(want, lb)
			case lb == "":
			case strings.HasPrefix(lb, "a_b/") && lb != "a_b/x" && !strings.HasPrefix(lb, "a_b/OLD/"):
				// this process's own inline lease stays
			default:
				t.Errorf("lease %q after ReleaseLeases", lb)
			}
		}
		if len(want) != 0 {
			t.Errorf("leases of other nodes were released: %v (left %q)", want, left)
		}
		<-done
	})
}
