package results

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
)

// BenchmarkBulkOffloadQueue measures the host's own cost of a bulk
// offload: the feeder, the leased jobs and their bookkeeping, against an
// in-memory provider, so that the database work is what is measured. One
// op is one result offloaded; n results per run, SQLite.
//
//	go test ./host/results -run '^$' -bench BulkOffloadQueue -benchtime 2000x -cpuprofile cpu.out
func BenchmarkBulkOffloadQueue(b *testing.B) {
	n := b.N
	e, st, _ := bulkEnv(b, dbmigrate.SQLite, Options{}, n, false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	go func() { done <- e.svc.RunWorker(ctx) }()
	run, err := e.svc.StartBulk(ctx, BulkRequest{Direction: BulkOffload})
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		r, err := e.svc.BulkRun(ctx, run.ID)
		if err != nil {
			b.Fatal(err)
		}
		if r.State == BulkDone {
			if r.Done.Results != int64(n) {
				b.Fatalf("done %+v of %d", r.Done, n)
			}
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("not done: %+v", r)
		}
		time.Sleep(250 * time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
	st.mu.Lock()
	got := len(st.buckets[bucketA])
	st.mu.Unlock()
	if got != n {
		b.Fatal(fmt.Sprintf("%d objects, want %d", got, n))
	}
}
