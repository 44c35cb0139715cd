package results

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
)

// TestInlineTimeoutHandsTheJobToTheQueue: when the inline upload runs out
// of its time, the job is released at once for the workers, not after a
// retry backoff or a lease expiry.
func TestInlineTimeoutHandsTheJobToTheQueue(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		opts := testOptions()
		// A failed attempt would wait at least 30 s.
		opts.BackoffMin, opts.BackoffMax = time.Minute, time.Minute
		e := newEnv(t, d, true, false, opts)
		e.remote.setMode(func(string) mode { return block })
		data := payload(11)
		start := time.Now()
		res := e.finalize(t, data)
		took := time.Since(start)
		if res.Storage != Local {
			t.Fatalf("Finalize with a blocked provider = %+v", res)
		}
		if took > 5*time.Second {
			t.Fatalf("Finalize took %v with a blocked provider", took)
		}
		e.remote.setMode(nil)
		worker(t, e.svc)
		handed := time.Now()
		waitFor(t, "the handed-off offload", func() bool { return e.pending(t) == 0 })
		if d := time.Since(handed); d > 10*time.Second { // the backoff would be a minute
			t.Fatalf("the queue took %v to pick up a job the inline attempt gave up on", d)
		}
		if got := e.checkServed(t, res.ID, data); got.Storage != remoteID {
			t.Fatalf("after the hand-off: %+v", got)
		}
	})
}

// TestStuckJobDoesNotBlockOthers: one upload hangs (ignoring its context)
// while nine others are due; the nine land while it hangs, and the hung one
// is cut at the job deadline and retried.
func TestStuckJobDoesNotBlockOthers(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		opts := testOptions()
		opts.JobTimeout = 6 * time.Second
		e := newEnv(t, d, true, false, opts)
		e.remote.setMode(func(string) mode { return failBefore })
		var ids []string
		for i := range 10 {
			ids = append(ids, e.finalize(t, payload(20+i)).ID)
		}
		stuck, err := loadRow(context.Background(), e.db, ids[0])
		if err != nil {
			t.Fatal(err)
		}
		// The stuck job is the first due.
		past := dbTime(time.Now().Add(-time.Hour))
		if _, err := e.db.Exec("UPDATE jobs SET next_attempt_at = $1 WHERE result_id = $2", past, stuck.id); err != nil {
			t.Fatal(err)
		}
		e.remote.setMode(func(key string) mode {
			if key == stuck.path {
				return hang
			}
			return healthy
		})
		worker(t, e.svc)
		start := time.Now()
		waitFor(t, "the other jobs", func() bool { return e.pending(t) <= 1 })
		if took := time.Since(start); took > 5*time.Second { // the stuck job's deadline is 6 s
			t.Fatalf("the other jobs took %v behind a stuck one", took)
		}
		for i, id := range ids[1:] {
			if got := e.checkServed(t, id, payload(21+i)); got.Storage != remoteID {
				t.Fatalf("result %s stayed %s", id, got.Storage)
			}
		}
		if got, _ := e.svc.Get(context.Background(), stuck.id); got.Storage != Local {
			t.Fatalf("the stuck result is %s", got.Storage)
		}
		e.remote.setMode(nil)
		waitFor(t, "the stuck job to be cut and retried", func() bool { return e.pending(t) == 0 })
		if took := time.Since(start); took > opts.JobTimeout+5*time.Second {
			t.Fatalf("the stuck job took %v to land", took)
		}
		if got := e.checkServed(t, stuck.id, payload(20)); got.Storage != remoteID {
			t.Fatalf("the stuck result stayed %s", got.Storage)
		}
	})
}

// TestLeasesOfAnEarlierProcessReleasedOnStart: a process of node-a dies
// while its inline upload holds a job's lease; the next process of node-a
// releases that lease when its workers start and lands the result at once.
// A lease of node-b is left to expire.
func TestLeasesOfAnEarlierProcessReleasedOnStart(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		opts := testOptions()
		opts.LeaseDuration = time.Minute
		opts.NodeID = "node-a"
		e := newEnv(t, d, true, false, opts)
		// node-b's job, leased for a minute.
		e.remote.setMode(func(string) mode { return failBefore })
		other := e.finalize(t, payload(40))
		if _, err := e.db.Exec("UPDATE jobs SET locked_until = $1, locked_by = $2 WHERE result_id = $3",
			dbTime(time.Now().Add(time.Minute)), "node-b/1", other.ID); err != nil {
			t.Fatal(err)
		}
		// node-a's earlier process, on a database connection of its own.
		db2, _, err := dbmigrate.Open(context.Background(), e.db.DSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db2.Close() })
		early := opts
		early.InlineOffloadTimeout = time.Second
		earlier := New(db2, e.local, e.router, early)
		e.remote.setMode(func(string) mode { return block })
		done := make(chan Result, 1)
		data := payload(41)
		go func() {
			res, _ := earlier.Finalize(context.Background(), Upload{Kind: KindImages, Generator: "gemini", ContentType: "image/png"}, bytes.NewReader(data))
			done <- res
		}()
		waitFor(t, "the inline upload to hold its lease", func() bool {
			var n int
			e.db.QueryRow("SELECT COUNT(*) FROM jobs WHERE locked_by LIKE 'node-a/%'").Scan(&n)
			return n == 1
		})
		// The process dies: nothing it does reaches the database any more.
		db2.Close()
		res := <-done
		if res.Storage != Local {
			t.Fatalf("the interrupted result: %+v", res)
		}
		e.remote.setMode(nil)
		start := time.Now()
		worker(t, e.svc) // node-a's next process
		waitFor(t, "the interrupted job", func() bool {
			got, err := e.svc.Get(context.Background(), res.ID)
			return err == nil && got.Storage == remoteID
		})
		if took := time.Since(start); took > 10*time.Second { // the lease would last longer
			t.Fatalf("the interrupted job took %v after the restart", took)
		}
		e.checkServed(t, res.ID, data)
		var lockedBy string
		if err := e.db.QueryRow("SELECT locked_by FROM jobs WHERE result_id = $1", other.ID).Scan(&lockedBy); err != nil || lockedBy != "node-b/1" {
			t.Fatalf("node-b's lease: %q, %v", lockedBy, err)
		}
	})
}

// TestQueuedWhileDefaultProviderUnusable: while Default Storage names a
// provider that cannot take results right now, results are recorded local
// with a job for it, and queued jobs are retried, not dropped, until it is
// back. While the Default Storage cannot be read, jobs go to whatever it
// names once it can. A switched-off provider (disabled, failed) takes no
// new jobs but keeps the queued ones.
func TestQueuedWhileDefaultProviderUnusable(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		for _, c := range []struct {
			name  string
			route Route
			jobs  bool
		}{
			{"waiting", Route{State: RouteWaiting, Default: remoteID, Target: Target{ID: remoteID}, Reason: "the plugin is restarting"}, true},
			{"unreadable", Route{State: RouteWaiting, Guess: true, Reason: "Default Storage cannot be read: injected"}, true},
			{"unreadable-last-known", Route{State: RouteWaiting, Default: remoteID, Guess: true, Reason: "Default Storage cannot be read: injected"}, true},
			{"off", Route{State: RouteOff, Default: remoteID, Target: Target{ID: remoteID}, Reason: "the provider is disabled"}, false},
		} {
			t.Run(c.name, func(t *testing.T) {
				e := newEnv(t, d, true, false, testOptions())
				// One job queued before the provider became unusable.
				e.remote.setMode(func(string) mode { return failBefore })
				before := e.finalize(t, payload(50))
				e.remote.setMode(nil)
				e.router.setUnusable(&c.route)
				worker(t, e.svc)
				var ids []string
				for i := range 10 {
					res := e.finalize(t, payload(51+i))
					if res.Storage != Local {
						t.Fatalf("result %d while unusable: %+v", i, res)
					}
					ids = append(ids, res.ID)
				}
				want := 1
				if c.jobs {
					want += len(ids)
				}
				if n := e.pending(t); n != want {
					t.Fatalf("%d jobs, want %d", n, want)
				}
				if c.jobs {
					var reason string
					if err := e.db.QueryRow("SELECT last_error FROM jobs WHERE result_id = $1", ids[0]).Scan(&reason); err != nil || !strings.Contains(reason, c.route.Reason) {
						t.Fatalf("the job's last_error %q (%v) does not say why: %q", reason, err, c.route.Reason)
					}
				}
				time.Sleep(300 * time.Millisecond) // the workers try meanwhile
				if n := e.pending(t); n != want {
					t.Fatalf("%d jobs after the workers tried, want %d: jobs were dropped", n, want)
				}
				e.router.setUnusable(nil)
				waitFor(t, "the queued offloads", func() bool { return e.pending(t) == 0 })
				if got := e.checkServed(t, before.ID, payload(50)); got.Storage != remoteID {
					t.Fatalf("the job queued before stayed %s", got.Storage)
				}
				for i, id := range ids {
					got := e.checkServed(t, id, payload(51+i))
					if c.jobs != (got.Storage == remoteID) {
						t.Fatalf("result %d is %s", i, got.Storage)
					}
				}
			})
		}
	})
}

// TestUnresolvedJobDroppedWhenDefaultIsLocal: a job queued while Default
// Storage could not be read is dropped when it turns out to be local.
func TestUnresolvedJobDroppedWhenDefaultIsLocal(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, false, false, testOptions())
		e.router.setUnusable(&Route{State: RouteWaiting, Guess: true, Reason: "Default Storage cannot be read: injected"})
		res := e.finalize(t, payload(70))
		if res.Storage != Local || e.pending(t) != 1 {
			t.Fatalf("Finalize = %+v, %d jobs", res, e.pending(t))
		}
		e.router.setUnusable(nil)
		worker(t, e.svc)
		waitFor(t, "the job to be dropped", func() bool { return e.pending(t) == 0 })
		if got := e.checkServed(t, res.ID, payload(70)); got.Storage != Local || len(e.remote.Keys()) != 0 {
			t.Fatalf("after the drop: %+v, remote %v", got, e.remote.Keys())
		}
	})
}

// TestLeaseKeptWhenARenewalAppliedUnseen: a lease renewal that the database
// applied although its answer was lost (here: the row's expiry changed
// behind the worker's back) does not make the worker think it lost the
// lease; the job finishes once, uncut.
func TestLeaseKeptWhenARenewalAppliedUnseen(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		opts := testOptions()
		opts.LeaseDuration = 300 * time.Millisecond
		opts.InlineOffloadTimeout = 5 * time.Second
		e := newEnv(t, d, true, false, opts)
		e.remote.setMode(func(string) mode { return slow })
		moved := make(chan error, 1)
		go func() {
			// Once the inline upload holds its lease, its expiry moves on
			// as an applied-but-unanswered renewal would move it.
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				res, err := e.db.Exec("UPDATE jobs SET locked_until = $1 WHERE locked_until IS NOT NULL", dbTime(time.Now().Add(2*time.Second)))
				if err != nil {
					moved <- err
					return
				}
				if n, _ := res.RowsAffected(); n == 1 {
					moved <- nil
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			moved <- errors.New("the job was never leased")
		}()
		r := e.finalize(t, payload(7))
		if err := <-moved; err != nil {
			t.Fatal(err)
		}
		_, calls := e.remote.counts()
		if r.Storage != remoteID || calls[r.Path] != 1 {
			t.Fatalf("result %+v after %d puts: the worker gave up a lease it still held", r, calls[r.Path])
		}
	})
}
