package results

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/storage"
)

// bulkEnv is a bucket env whose results were finalized while Default
// Storage was local; Default Storage is then set to the bucket provider
// (with Delete local copy after upload as deleteLocal says).
func bulkEnv(t testing.TB, d dbmigrate.Dialect, opts Options, n int, deleteLocal bool) (*env, *bucketStore, map[string][]byte) {
	t.Helper()
	st := newBucketStore(bucketA, "p/", baseA)
	e := newBucketEnv(t, d, opts, st)
	e.router.setActive(nil)
	data := map[string][]byte{}
	for i := range n {
		b := payload(i)
		res := e.finalize(t, b)
		if res.Storage != Local {
			t.Fatalf("result finalized while Default Storage is local: storage %q", res.Storage)
		}
		data[res.ID] = b
	}
	e.router.setActive(&Target{ID: remoteID, Provider: st, DeleteLocal: deleteLocal})
	return e, st, data
}

// bulkRun reads run id.
func (e *env) bulkRun(t *testing.T, id int64) BulkRun {
	t.Helper()
	r, err := e.svc.BulkRun(context.Background(), id)
	if err != nil {
		t.Fatalf("BulkRun(%d): %v", id, err)
	}
	return r
}

// storageCounts counts the live results per storage column value.
func (e *env) storageCounts(t *testing.T) map[string]int64 {
	t.Helper()
	rows, err := e.db.Query("SELECT storage, COUNT(*) FROM results WHERE deleted = $1 GROUP BY storage", false)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		out[s] = n
	}
	return out
}

// checkOnePlace checks every result is in exactly the one place its row
// names, with the right bytes: the bucket (and its local copy only if
// local_present), or the local disk and no object.
func checkOnePlace(t *testing.T, e *env, st *bucketStore, data map[string][]byte) {
	t.Helper()
	for id, want := range data {
		r := e.get(t, id)
		if r.SHA256 != hexSum(want) || r.Size != int64(len(want)) {
			t.Fatalf("result %s: sha %s size %d, want %s %d", id, r.SHA256, r.Size, hexSum(want), len(want))
		}
		full := "p/" + r.Path
		switch r.Storage {
		case remoteID:
			st.mu.Lock()
			got, ok := st.buckets[bucketA][full]
			st.mu.Unlock()
			if !ok || !bytes.Equal(got, want) {
				t.Fatalf("offloaded result %s: object %s present %v, right bytes %v", id, full, ok, bytes.Equal(got, want))
			}
			if r.Bucket != bucketA || r.ObjectKey != full {
				t.Fatalf("offloaded result %s recorded at %s %s", id, r.Bucket, r.ObjectKey)
			}
			if r.LocalPresent != e.localExists(r.Path) {
				t.Fatalf("offloaded result %s: local_present %v, local file %v", id, r.LocalPresent, e.localExists(r.Path))
			}
		case Local:
			c, err := e.svc.Content(context.Background(), id)
			if err != nil || c.LocalPath == "" {
				t.Fatalf("local result %s: Content %+v, %v", id, c, err)
			}
			got, err := os.ReadFile(c.LocalPath)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("local result %s: read %d bytes, %v", id, len(got), err)
			}
		default:
			t.Fatalf("result %s: storage %q", id, r.Storage)
		}
	}
}

// checkProgress checks a run's numbers against the database.
func checkProgress(t *testing.T, e *env, r BulkRun, data map[string][]byte) {
	t.Helper()
	var total int64
	for _, b := range data {
		total += int64(len(b))
	}
	sum := r.Done.Results + r.Failed.Results + r.Skipped.Results + r.Cancelled.Results + r.Remaining.Results
	sumBytes := r.Done.Bytes + r.Failed.Bytes + r.Skipped.Bytes + r.Cancelled.Bytes + r.Remaining.Bytes
	if r.Total.Results != int64(len(data)) || r.Total.Bytes != total || sum != r.Total.Results || sumBytes != r.Total.Bytes {
		t.Fatalf("run %d: total %+v (want %d results, %d bytes); parts add up to %d results, %d bytes", r.ID, r.Total, len(data), total, sum, sumBytes)
	}
	var n, b int64
	if err := e.db.QueryRow("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM bulk_items WHERE run_id = $1 AND state = $2", r.ID, itemDone).Scan(&n, &b); err != nil {
		t.Fatal(err)
	}
	if n != r.Done.Results || b != r.Done.Bytes {
		t.Fatalf("run %d: done %+v, the database says %d results %d bytes", r.ID, r.Done, n, b)
	}
}

// TestBulkOffloadSurvivesAbruptStop: a bulk offload of local results, cut
// halfway by stopping the node without draining while uploads are in
// flight, then continued by a restarted node: every result ends in the
// provider once, with the right bytes, and no result recorded before the
// stop is uploaded again. Choosing Default Storage moved nothing by itself.
func TestBulkOffloadSurvivesAbruptStop(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		const n = 240
		opts := testOptions()
		opts.NodeID = "node-a"
		opts.Workers = 4
		e, st, data := bulkEnv(t, d, opts, n, true)
		ctx := context.Background()

		// Default Storage changed: nothing is queued or moved by itself.
		if err := e.svc.bulkStep(ctx); err != nil {
			t.Fatal(err)
		}
		if c := e.storageCounts(t); c[Local] != n || e.pending(t) != 0 {
			t.Fatalf("after choosing Default Storage: %v, %d jobs; want all %d local, none queued", c, e.pending(t), n)
		}

		plan, err := e.svc.PlanBulk(ctx, BulkRequest{Direction: BulkOffload})
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, b := range data {
			total += int64(len(b))
		}
		if plan.Provider != remoteID || plan.Total.Results != n || plan.Total.Bytes != total || !plan.DeleteLocal || plan.Rate != nil || plan.EstimatedSeconds != nil {
			t.Fatalf("dry run = %+v; want %d results, %d bytes to %s, delete local, no rate yet", plan, n, total, remoteID)
		}
		if e.pending(t) != 0 {
			t.Fatal("the dry run queued jobs")
		}

		// Uploads past the half hang until the node stops.
		gate := make(chan struct{})
		var once sync.Once
		release := func() { once.Do(func() { close(gate) }) }
		t.Cleanup(release)
		var calls atomic.Int64
		st.setPutErr(func(string) error {
			if calls.Add(1) > n/2 {
				<-gate
				return storage.Errorf(storage.Unavailable, "the node was stopped")
			}
			return nil
		})
		wctx, stop := context.WithCancel(ctx)
		stopped := make(chan error, 1)
		go func() { stopped <- e.svc.RunWorker(wctx) }()

		run, err := e.svc.StartBulk(ctx, BulkRequest{Direction: BulkOffload, Provider: remoteID})
		if err != nil {
			t.Fatal(err)
		}
		if run.State != BulkRunning || run.Total.Results != n {
			t.Fatalf("StartBulk = %+v", run)
		}
		if _, err := e.svc.StartBulk(ctx, BulkRequest{Direction: BulkOffload}); !errors.Is(err, ErrBulkConflict) {
			t.Fatalf("a second StartBulk while one is active: %v, want ErrBulkConflict", err)
		}
		waitFor(t, "half the results offloaded and uploads in flight", func() bool {
			return e.storageCounts(t)[remoteID] == n/2 && calls.Load() >= n/2+int64(opts.Workers)
		})
		stop() // the node stops without draining
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		before := map[string]string{}
		for id := range data {
			if r := e.get(t, id); r.Storage == remoteID {
				before[id] = r.Path
			}
		}
		if len(before) != n/2 {
			t.Fatalf("%d results offloaded before the stop, want %d", len(before), n/2)
		}
		mid := e.bulkRun(t, run.ID)
		if mid.State != BulkRunning || mid.Done.Results > int64(n/2) {
			t.Fatalf("progress at the stop: %+v", mid)
		}
		checkProgress(t, e, mid, data)

		// A restarted node (same node id) carries the run to its end.
		st.setPutErr(nil)
		release()
		e.svc = New(e.db.DB, e.local, e.router, opts)
		worker(t, e.svc)
		waitFor(t, "the bulk offload done", func() bool { return e.bulkRun(t, run.ID).State == BulkDone })

		final := e.bulkRun(t, run.ID)
		checkProgress(t, e, final, data)
		if final.Done.Results != n || final.Done.Bytes != total || final.Remaining.Results != 0 || final.Failed.Results != 0 || final.FinishedAt == nil || final.Rate == nil {
			t.Fatalf("final progress %+v", final)
		}
		if c := e.storageCounts(t); c[remoteID] != n {
			t.Fatalf("storage after the run: %v", c)
		}
		checkOnePlace(t, e, st, data)
		for id, p := range before {
			if got := st.putCount(p); got != 1 {
				t.Fatalf("result %s, offloaded before the stop, was uploaded %d times", id, got)
			}
			if e.localExists(p) {
				t.Fatalf("result %s: local copy kept although Delete local copy after upload is on", id)
			}
		}
		if e.pending(t) != 0 {
			t.Fatalf("%d jobs left after the run", e.pending(t))
		}

		// The next dry run has a measured rate.
		e.router.setActive(&Target{ID: remoteID, Provider: st, DeleteLocal: true})
		plan, err = e.svc.PlanBulk(ctx, BulkRequest{Direction: BulkLocal, Provider: remoteID})
		if err != nil {
			t.Fatal(err)
		}
		if plan.Total.Results != n || plan.Download.Results != n || plan.Download.Bytes != total || plan.Rate != nil {
			t.Fatalf("bring-back dry run = %+v", plan)
		}
		oplan, err := e.svc.PlanBulk(ctx, BulkRequest{Direction: BulkOffload})
		if err != nil {
			t.Fatal(err)
		}
		if oplan.Total.Results != 0 || oplan.Rate == nil || oplan.Rate.BytesPerSecond <= 0 || oplan.EstimatedSeconds == nil {
			t.Fatalf("offload dry run after a run = %+v; want nothing left and a measured rate", oplan)
		}

		// Bring back to local: every result serves locally with its bytes;
		// the remote objects stay.
		back, err := e.svc.StartBulk(ctx, BulkRequest{Direction: BulkLocal, Provider: remoteID})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the bring back done", func() bool { return e.bulkRun(t, back.ID).State == BulkDone })
		final = e.bulkRun(t, back.ID)
		checkProgress(t, e, final, data)
		if final.Done.Results != n || final.Failed.Results != 0 {
			t.Fatalf("bring back progress %+v", final)
		}
		if c := e.storageCounts(t); c[Local] != n {
			t.Fatalf("storage after the bring back: %v", c)
		}
		checkOnePlace(t, e, st, data)
		if got := len(st.keys(bucketA)); got != n {
			t.Fatalf("%d objects left in the bucket, want all %d kept", got, n)
		}
	})
}

// TestBulkBringBackVerifiesAndDeletesRemote: a bring back that deletes
// remote copies after verification; an object whose bytes differ from the
// recorded sha256 is not brought back and its remote copy stays.
func TestBulkBringBackVerifiesAndDeletesRemote(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		const n = 30
		e, st, data := bulkEnv(t, d, testOptions(), n, true)
		worker(t, e.svc)
		ctx := context.Background()
		run, err := e.svc.StartBulk(ctx, BulkRequest{Direction: BulkOffload})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the offload done", func() bool { return e.bulkRun(t, run.ID).State == BulkDone })
		if _, err := e.svc.StartBulk(ctx, BulkRequest{Direction: BulkOffload, DeleteRemote: true}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("delete_remote on an offload: %v, want ErrInvalid", err)
		}
		if _, err := e.svc.StartBulk(ctx, BulkRequest{Direction: BulkLocal}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a bring back without provider: %v, want ErrInvalid", err)
		}
		var bad string
		for id := range data {
			bad = id
			break
		}
		badKey := "p/" + e.get(t, bad).Path
		st.mu.Lock()
		st.buckets[bucketA][badKey] = append([]byte(nil), st.buckets[bucketA][badKey]...)
		st.buckets[bucketA][badKey][len(st.buckets[bucketA][badKey])-1] ^= 1
		st.mu.Unlock()

		back, err := e.svc.StartBulk(ctx, BulkRequest{Direction: BulkLocal, Provider: remoteID, DeleteRemote: true})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the bring back done", func() bool { return e.bulkRun(t, back.ID).State == BulkDone })
		final := e.bulkRun(t, back.ID)
		checkProgress(t, e, final, data)
		if final.Done.Results != n-1 || final.Failed.Results != 1 || len(final.Failures) != 1 || final.Failures[0].ResultID != bad {
			t.Fatalf("bring back progress %+v", final)
		}
		t.Logf("failure: %s", final.Failures[0].Error)
		if r := e.get(t, bad); r.Storage != remoteID || r.LocalPresent || e.localExists(r.Path) {
			t.Fatalf("the corrupted result: %+v, local file %v; want it left in the provider", r, e.localExists(r.Path))
		}
		if keys := st.keys(bucketA); len(keys) != 1 || keys[0] != badKey {
			t.Fatalf("bucket holds %v, want only the corrupted object", keys)
		}
		delete(data, bad)
		checkOnePlace(t, e, st, data)
	})
}

// TestBulkPauseResumeCancel: pause takes back queued work and lets running
// uploads finish, and nothing new starts until resume; cancel leaves every
// result in one recorded place.
func TestBulkPauseResumeCancel(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		opts := testOptions()
		opts.Workers = 2
		// More results than the feeder's window, so some are still pending.
		n := bulkWindowPerWorker*opts.Workers + 20
		e, st, data := bulkEnv(t, d, opts, n, false)
		ctx := context.Background()
		var mu sync.Mutex
		gate := make(chan struct{})
		var puts atomic.Int64
		st.setPutErr(func(string) error {
			puts.Add(1)
			mu.Lock()
			g := gate
			mu.Unlock()
			<-g
			return nil
		})
		open := func() {
			mu.Lock()
			close(gate)
			mu.Unlock()
		}
		t.Cleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			select {
			case <-gate:
			default:
				close(gate)
			}
		})
		worker(t, e.svc)
		run, err := e.svc.StartBulk(ctx, BulkRequest{Direction: BulkOffload})
		if err != nil {
			t.Fatal(err)
		}
		// The results are small: each worker uploads several at once.
		running := int64(opts.Workers * smallUploadsPerWorker)
		waitFor(t, "both workers uploading and the window queued", func() bool {
			r := e.bulkRun(t, run.ID)
			return puts.Load() == running && r.InFlight == int64(e.svc.bulkWindow())
		})
		paused, err := e.svc.PauseBulk(ctx, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if paused.State != BulkPaused || paused.InFlight != running {
			t.Fatalf("after pause: %+v; want paused with the %d running uploads in flight", paused, running)
		}
		if _, err := e.svc.PauseBulk(ctx, run.ID); !errors.Is(err, ErrBulkConflict) {
			t.Fatalf("pausing a paused run: %v, want ErrBulkConflict", err)
		}
		open()
		waitFor(t, "the running uploads finished", func() bool { return e.bulkRun(t, run.ID).InFlight == 0 })
		// Nothing new starts while paused.
		if err := e.svc.bulkStep(ctx); err != nil {
			t.Fatal(err)
		}
		r := e.bulkRun(t, run.ID)
		if r.State != BulkPaused || r.Done.Results != running || e.pending(t) != 0 || puts.Load() != running {
			t.Fatalf("while paused: %+v, %d jobs, %d puts", r, e.pending(t), puts.Load())
		}
		checkProgress(t, e, r, data)

		mu.Lock()
		gate = make(chan struct{})
		mu.Unlock()
		if _, err := e.svc.ResumeBulk(ctx, run.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "uploads running again", func() bool { return puts.Load() == 2*running })
		cancelled, err := e.svc.CancelBulk(ctx, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if cancelled.State != BulkCancelled {
			t.Fatalf("after cancel: %+v", cancelled)
		}
		if _, err := e.svc.ResumeBulk(ctx, run.ID); !errors.Is(err, ErrBulkConflict) {
			t.Fatalf("resuming a cancelled run: %v, want ErrBulkConflict", err)
		}
		open()
		waitFor(t, "the cancelled run finished", func() bool { return e.bulkRun(t, run.ID).FinishedAt != nil })
		r = e.bulkRun(t, run.ID)
		checkProgress(t, e, r, data)
		if r.Done.Results != 2*running || r.Cancelled.Results != int64(n)-2*running || r.Remaining.Results != 0 {
			t.Fatalf("cancelled run %+v", r)
		}
		if c := e.storageCounts(t); c[remoteID] != r.Done.Results || c[Local] != r.Cancelled.Results {
			t.Fatalf("storage %v does not match the run %+v", c, r)
		}
		if e.pending(t) != 0 {
			t.Fatalf("%d jobs left after the cancel", e.pending(t))
		}
		checkOnePlace(t, e, st, data)
		// Nothing else was uploaded.
		for id := range data {
			if rr := e.get(t, id); rr.Storage == Local && st.putCount(rr.Path) != 0 {
				t.Fatalf("cancelled result %s was uploaded", id)
			}
		}
	})
}

// TestBulkTwoNodesShareARun: two nodes on one database carry one bulk
// offload together; no result is uploaded twice.
func TestBulkTwoNodesShareARun(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		const n = 150
		optsA, optsB := testOptions(), testOptions()
		optsA.NodeID, optsB.NodeID = "node-a", "node-b"
		// Both nodes mount one results folder, so either may run any job
		// (TestNodesBulkOffloadRunsOnTheOwner: each its own).
		optsA.SharedVolume, optsB.SharedVolume = true, true
		e, st, data := bulkEnv(t, d, optsA, n, false)
		other := New(e.db.DB, e.local, e.router, optsB)
		worker(t, e.svc)
		worker(t, other)
		run, err := other.StartBulk(context.Background(), BulkRequest{Direction: BulkOffload, Provider: remoteID})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the shared run done", func() bool { return e.bulkRun(t, run.ID).State == BulkDone })
		final := e.bulkRun(t, run.ID)
		checkProgress(t, e, final, data)
		if final.Done.Results != n {
			t.Fatalf("final progress %+v", final)
		}
		checkOnePlace(t, e, st, data)
		for id := range data {
			if p := e.get(t, id).Path; st.putCount(p) != 1 {
				t.Fatalf("result %s uploaded %d times", id, st.putCount(p))
			}
		}
	})
}

// TestBulkOffloadWaitsWhenDefaultChanges: an offload run queues nothing
// while Default Storage names another provider, says why, and continues
// once it names the run's provider again; the jobs queued before the change
// are dropped and their results listed as failed, still local.
func TestBulkOffloadWaitsWhenDefaultChanges(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		const n = 40
		opts := testOptions()
		opts.Workers = 1
		e, st, data := bulkEnv(t, d, opts, n, false)
		ctx := context.Background()
		gate := make(chan struct{})
		var once sync.Once
		open := func() { once.Do(func() { close(gate) }) }
		t.Cleanup(open)
		var puts atomic.Int64
		st.setPutErr(func(string) error {
			puts.Add(1)
			<-gate
			return nil
		})
		worker(t, e.svc)
		run, err := e.svc.StartBulk(ctx, BulkRequest{Direction: BulkOffload})
		if err != nil {
			t.Fatal(err)
		}
		// The results are small: the worker uploads several at once.
		const running = smallUploadsPerWorker
		waitFor(t, "the worker's uploads running", func() bool { return puts.Load() == running })
		e.router.setActive(nil)
		open()
		waitFor(t, "the queued jobs ended", func() bool { return e.bulkRun(t, run.ID).InFlight == 0 })
		if err := e.svc.bulkStep(ctx); err != nil {
			t.Fatal(err)
		}
		r := e.bulkRun(t, run.ID)
		window := int64(e.svc.bulkWindow())
		if r.State != BulkRunning || r.Done.Results != running || r.Failed.Results != window-running || e.pending(t) != 0 || r.Waiting == "" {
			t.Fatalf("after Default Storage changed: %+v, %d jobs", r, e.pending(t))
		}
		t.Logf("waiting: %s; failure: %s", r.Waiting, r.Failures[0].Error)
		checkProgress(t, e, r, data)
		e.router.setActive(&Target{ID: remoteID, Provider: st})
		e.svc.bulkNudge()
		waitFor(t, "the run done", func() bool { return e.bulkRun(t, run.ID).State == BulkDone })
		r = e.bulkRun(t, run.ID)
		checkProgress(t, e, r, data)
		if r.Done.Results != n-(window-running) || r.Failed.Results != window-running || r.Waiting != "" {
			t.Fatalf("final progress %+v", r)
		}
		if c := e.storageCounts(t); c[remoteID] != r.Done.Results || c[Local] != r.Failed.Results {
			t.Fatalf("storage %v does not match the run %+v", c, r)
		}
		checkOnePlace(t, e, st, data)
	})
}

// TestBulkRunningTimeExcludesDowntime: while no node runs the feeder (the
// host was down), a running run's clock does not run: its running time,
// and so its rate and ETA, count only the time some node carried it.
func TestBulkRunningTimeExcludesDowntime(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		clk := plugintest.NewClock(time.Now())
		opts := testOptions()
		opts.Now = clk.Now
		e, _, _ := bulkEnv(t, d, opts, 3, false)
		ctx := context.Background()
		run, err := e.svc.StartBulk(ctx, BulkRequest{Direction: BulkOffload})
		if err != nil {
			t.Fatal(err)
		}
		step := func() {
			t.Helper()
			if err := e.svc.bulkStep(ctx); err != nil {
				t.Fatal(err)
			}
		}
		step()
		for range 6 { // 3 s of running, the feeder stepping
			clk.Advance(500 * time.Millisecond)
			step()
		}
		clk.Advance(time.Hour) // every node down
		step()
		got := e.bulkRun(t, run.ID).RunningSeconds
		limit := 3 + bulkClockGap(e.svc.opts).Seconds() + 1
		if got < 3 || got > limit {
			t.Fatalf("running time %.1f s after 3 s of running and an hour down; want between 3 and %.1f s", got, limit)
		}
	})
}

// queryPlan is SQLite's EXPLAIN QUERY PLAN of q with args: the detail of
// each step.
func queryPlan(t *testing.T, db *sql.DB, q string, args ...any) []string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return plan
}

// TestFeedLooksResultsUpByID: SQLite queues a feeder batch by looking its
// results up by id, not by walking an index over every result (which made
// each step of a 10,000-result run read all 10,000).
func TestFeedLooksResultsUpByID(t *testing.T) {
	db := testdb.Open(t, dbmigrate.SQLite)
	for _, direction := range []string{BulkOffload, BulkLocal} {
		q, args := feedJobsQuery(direction, []string{"a", "b", "c"})
		plan := queryPlan(t, db.DB, q, append([]any{kindOffload, "p", "2026-01-01", 1, Local}, args...)...)
		found := false
		for _, step := range plan {
			if strings.Contains(step, "results") {
				found = true
				if !strings.Contains(step, "(id=?)") {
					t.Fatalf("%s: the feed reads results with %q; want a lookup by id (plan %q)", direction, step, plan)
				}
			}
		}
		if !found {
			t.Fatalf("%s: no step on results in the plan %q", direction, plan)
		}
	}
}

// TestBulkOffloadRecordsManyPerTransaction: a bulk run's uploads are
// recorded many to a transaction (deferred group commit), and each due
// job is still claimed once: every result ends in one place, uploaded
// once, with the progress matching the database.
func TestBulkOffloadRecordsManyPerTransaction(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		const n = 400
		e, st, data := bulkEnv(t, d, testOptions(), n, false)
		var txs, recs atomic.Int64
		write := e.svc.recorder.write
		e.svc.recorder.write = func(ctx context.Context, batch []*offloadRecord) error {
			txs.Add(1)
			recs.Add(int64(len(batch)))
			return write(ctx, batch)
		}
		worker(t, e.svc)
		run, err := e.svc.StartBulk(context.Background(), BulkRequest{Direction: BulkOffload})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the run done", func() bool { return e.bulkRun(t, run.ID).State == BulkDone })
		r := e.bulkRun(t, run.ID)
		checkProgress(t, e, r, data)
		checkOnePlace(t, e, st, data)
		for id := range data {
			if p := e.get(t, id).Path; st.putCount(p) != 1 {
				t.Fatalf("result %s uploaded %d times", id, st.putCount(p))
			}
		}
		if r.Done.Results != n || recs.Load() != n {
			t.Fatalf("done %d, records written %d, want %d", r.Done.Results, recs.Load(), n)
		}
		if per := float64(recs.Load()) / float64(txs.Load()); per < 8 {
			t.Fatalf("%d records in %d transactions (%.1f each): want at least 8 to a transaction", recs.Load(), txs.Load(), per)
		}
		t.Logf("%d records in %d transactions", recs.Load(), txs.Load())
	})
}

// TestClaimsTakeTurnsOnOneListing: one listing of the due jobs serves the
// claims that follow it, each of a different job, until it is used up.
func TestClaimsTakeTurnsOnOneListing(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e, _, _ := bulkEnv(t, d, testOptions(), 40, false)
		ctx := context.Background()
		if _, err := e.svc.StartBulk(ctx, BulkRequest{Direction: BulkOffload}); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.bulkStep(ctx); err != nil {
			t.Fatal(err)
		}
		queued := e.pending(t)
		if queued < 10 {
			t.Fatalf("%d jobs queued, want at least 10", queued)
		}
		seen := map[int64]bool{}
		for i := range 10 {
			j, err := e.svc.claim(ctx)
			if err != nil || j == nil {
				t.Fatalf("claim %d: %v %v", i, j, err)
			}
			if seen[j.id] {
				t.Fatalf("claim %d leased job %d again", i, j.id)
			}
			seen[j.id] = true
			e.svc.cands.mu.Lock()
			left := len(e.svc.cands.ids)
			e.svc.cands.mu.Unlock()
			if want := min(queued, claimBatch) - 1 - i; left != want {
				t.Fatalf("after claim %d: %d listed jobs left to try, want %d (one listing for all claims)", i, left, want)
			}
		}
	})
}
