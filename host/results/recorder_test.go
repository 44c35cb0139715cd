package results

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestRecorderGroupsConcurrentRecords: records that arrive while one is
// being written are written together, every record gets its own answer,
// and a failing batch is retried record by record so that only the bad
// record fails.
func TestRecorderGroupsConcurrentRecords(t *testing.T) {
	var mu sync.Mutex
	var batches [][]string
	first := make(chan struct{})
	release := make(chan struct{})
	write := func(ctx context.Context, batch []*offloadRecord) error {
		mu.Lock()
		ids := make([]string, len(batch))
		for i, rec := range batch {
			ids[i] = rec.id
		}
		batches = append(batches, ids)
		n := len(batches)
		mu.Unlock()
		if n == 1 {
			close(first)
			<-release // hold the first write while the others queue
		}
		for _, rec := range batch {
			if rec.id == "bad" && len(batch) > 1 {
				return errors.New("constraint failed")
			}
			if rec.id == "bad" {
				return errors.New("constraint failed: bad")
			}
			rec.n = 1
		}
		return nil
	}
	r := &recorder{write: write, timeout: time.Minute}
	ctx := context.Background()
	type answer struct {
		n   int64
		err error
	}
	answers := make(map[string]answer)
	var amu sync.Mutex
	var wg sync.WaitGroup
	do := func(id string) {
		defer wg.Done()
		n, err := r.record(ctx, &offloadRecord{id: id})
		amu.Lock()
		answers[id] = answer{n, err}
		amu.Unlock()
	}
	wg.Add(1)
	go do("lead")
	<-first
	ids := []string{"a", "b", "bad", "c"}
	for _, id := range ids {
		wg.Add(1)
		go do(id)
	}
	// Wait until all four queue behind the held write.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		n := len(r.pending)
		r.mu.Unlock()
		if n == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records queued, want %d", n, len(ids))
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if len(batches) < 2 || len(batches[1]) != len(ids) {
		t.Fatalf("batches %v: want the 4 records that waited written together after the first", batches)
	}
	for _, id := range append([]string{"lead"}, ids...) {
		a := answers[id]
		switch {
		case id == "bad" && (a.err == nil || a.n != 0):
			t.Errorf("%s: n=%d err=%v, want its own error", id, a.n, a.err)
		case id != "bad" && (a.err != nil || a.n != 1):
			t.Errorf("%s: n=%d err=%v, want recorded", id, a.n, a.err)
		}
	}
	if r.leading || len(r.pending) != 0 {
		t.Errorf("after all records: leading=%v pending=%d", r.leading, len(r.pending))
	}
}

// TestRecorderBatchesAtMostMax: a queue longer than maxRecordBatch is
// written in several transactions.
func TestRecorderBatchesAtMostMax(t *testing.T) {
	var mu sync.Mutex
	largest := 0
	write := func(ctx context.Context, batch []*offloadRecord) error {
		mu.Lock()
		largest = max(largest, len(batch))
		mu.Unlock()
		time.Sleep(time.Millisecond)
		for _, rec := range batch {
			rec.n = 1
		}
		return nil
	}
	r := &recorder{write: write, timeout: time.Minute}
	var wg sync.WaitGroup
	for i := range 3 * maxRecordBatch {
		wg.Go(func() {
			if n, err := r.record(context.Background(), &offloadRecord{id: fmt.Sprint(i)}); n != 1 || err != nil {
				t.Errorf("record %d: %d, %v", i, n, err)
			}
		})
	}
	wg.Wait()
	if largest > maxRecordBatch {
		t.Errorf("a batch of %d records, want at most %d", largest, maxRecordBatch)
	}
}

// TestRecorderWritesDeferredRecordsTogether: records queued with
// recordLater are written many to a transaction, each answered once
// through its callback, and drain writes the ones still waiting.
func TestRecorderWritesDeferredRecordsTogether(t *testing.T) {
	var mu sync.Mutex
	var writes []int
	write := func(ctx context.Context, batch []*offloadRecord) error {
		mu.Lock()
		writes = append(writes, len(batch))
		mu.Unlock()
		for _, rec := range batch {
			rec.n = 1
		}
		return nil
	}
	r := &recorder{write: write, timeout: time.Minute}
	const n = 100
	var answered sync.Map
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		rec := &offloadRecord{id: fmt.Sprint(i)}
		r.recordLater(rec, func(ctx context.Context, err error) {
			defer wg.Done()
			if _, dup := answered.LoadOrStore(rec.id, true); dup {
				t.Errorf("record %s answered twice", rec.id)
			}
			if err != nil || rec.n != 1 {
				t.Errorf("record %s: n=%d err=%v", rec.id, rec.n, err)
			}
		})
	}
	r.drain(context.Background())
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, w := range writes {
		total += w
	}
	if total != n || len(writes) > n/deferredFlushAt+1 {
		t.Fatalf("writes of %v records: want %d records in at most %d transactions", writes, n, n/deferredFlushAt+1)
	}
}

// TestRecorderFlushesALoneDeferredRecord: a deferred record waits at most
// deferredFlushAfter, with nothing else to write.
func TestRecorderFlushesALoneDeferredRecord(t *testing.T) {
	r := &recorder{write: func(ctx context.Context, batch []*offloadRecord) error { return nil }, timeout: time.Minute}
	done := make(chan struct{})
	start := time.Now()
	r.recordLater(&offloadRecord{id: "lone"}, func(context.Context, error) { close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a lone deferred record was never written")
	}
	if d := time.Since(start); d < deferredFlushAfter/2 {
		t.Errorf("written after %v: want it to wait for others for about %v", d, deferredFlushAfter)
	}
}
