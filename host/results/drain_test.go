package results

import (
	"context"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
)

// TestDrainLeavesNoObjectWithoutRow: a provider being removed is drained.
// An upload whose object landed but whose answer never comes is cut after
// the grace and its object removed while the provider is still there; an
// earlier attempt that failed after storing its object has it removed
// too; and no upload starts once the drain began.
func TestDrainLeavesNoObjectWithoutRow(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, true, false, testOptions())
		// An earlier attempt stored its object, then failed: its job waits.
		e.remote.setMode(func(string) mode { return failAfterCommit })
		tried := e.finalize(t, payload(1))
		if tried.Storage != Local || !e.remote.has(tried.Path) {
			t.Fatalf("setup: %+v, object stored %v", tried, e.remote.has(tried.Path))
		}
		// An upload in flight whose answer is lost.
		e.remote.setMode(func(string) mode { return landThenBlock })
		inflight := make(chan Result, 1)
		go func() { inflight <- e.finalize(t, payload(2)) }()
		waitFor(t, "the in-flight upload to land", func() bool {
			_, calls := e.remote.counts()
			return len(calls) == 2
		})
		// The removal: Default Storage leaves the provider, then the drain.
		e.router.setActive(nil)
		start := time.Now()
		reopen := e.svc.Drain(context.Background(), remoteID, 300*time.Millisecond)
		defer reopen()
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("Drain took %v", took)
		}
		r := <-inflight
		if r.Storage != Local {
			t.Fatalf("the cut upload's result: %+v", r)
		}
		for _, p := range []string{tried.Path, r.Path} {
			if e.remote.has(p) {
				t.Fatalf("object %s left in the provider after the drain", p)
			}
		}
		// Nothing starts while drained, even with the provider routed again.
		e.remote.resetCounts()
		e.remote.setMode(nil)
		e.router.setActive(&Target{ID: remoteID, Provider: e.remote})
		late := e.finalize(t, payload(3))
		if _, calls := e.remote.counts(); late.Storage != Local || len(calls) != 0 {
			t.Fatalf("an upload started during the drain: %+v, calls %v", late, calls)
		}
		reopen()
		if r := e.finalize(t, payload(4)); r.Storage != remoteID {
			t.Fatalf("after reopen: %+v", r)
		}
	})
}
