package results

import (
	"context"
	"fmt"
	"syscall"
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
	cpu0 := processCPU(b)
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
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(n), "cpu-µs/result")
	cancel()
	<-done
	st.mu.Lock()
	got := len(st.buckets[bucketA])
	st.mu.Unlock()
	if got != n {
		b.Fatal(fmt.Sprintf("%d objects, want %d", got, n))
	}
}

// processCPU is the CPU time this process has used so far, user and
// system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
