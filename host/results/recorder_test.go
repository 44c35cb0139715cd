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
	var r recorder
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
		n, err := r.record(ctx, &offloadRecord{id: id}, write)
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
	var r recorder
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
	var wg sync.WaitGroup
	for i := range 3 * maxRecordBatch {
		wg.Go(func() {
			if n, err := r.record(context.Background(), &offloadRecord{id: fmt.Sprint(i)}, write); n != 1 || err != nil {
				t.Errorf("record %d: %d, %v", i, n, err)
			}
		})
	}
	wg.Wait()
	if largest > maxRecordBatch {
		t.Errorf("a batch of %d records, want at most %d", largest, maxRecordBatch)
	}
}
