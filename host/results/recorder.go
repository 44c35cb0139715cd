package results

import (
	"context"
	"sync"
	"time"
)

const (
	// maxRecordBatch is the most finished uploads recorded in one
	// transaction.
	maxRecordBatch = 64
	// deferredFlushAt is how many deferred records wait before they are
	// written at once.
	deferredFlushAt = 32
	// deferredFlushAfter is the longest a deferred record waits to be
	// written.
	deferredFlushAfter = 50 * time.Millisecond
)

// recorder records finished uploads in groups (group commit): the worker
// that finds no recording under way becomes the leader and writes every
// record waiting at that moment in one transaction, then the ones that
// arrived meanwhile, until none is left; the others wait for their
// record's answer. One transaction for several results saves a BEGIN and
// a COMMIT (and, on SQLite, the write of the pages they share) for each
// result but the first, with no added wait: a lone record is written at
// once.
//
// A bulk run's uploads are recorded later instead (recordLater): their
// worker goes on to the next job, and the records are written when
// deferredFlushAt of them wait or the oldest has waited
// deferredFlushAfter, so that one transaction records many.
type recorder struct {
	// write records a batch of at most maxRecordBatch records in one
	// transaction.
	write func(ctx context.Context, batch []*offloadRecord) error
	// timeout bounds the writes of deferred records.
	timeout time.Duration

	mu      sync.Mutex
	pending []*pendingRecord
	leading bool
	// timer flushes the deferred records; nil when none is armed.
	timer *time.Timer
	// idle is closed and replaced whenever a leader finds nothing left.
	idle chan struct{}
}

// pendingRecord is a record and where its answer goes.
type pendingRecord struct {
	rec *offloadRecord
	err error
	// done is closed once the record is written (or failed).
	done chan struct{}
	// then, for a deferred record, is called with the answer once it is
	// written, on the writing goroutine.
	then func(ctx context.Context, err error)
}

// record writes rec, together with any records that wait, and returns
// rec.n. When a batch of several fails, each of them is written again on
// its own, so one record's failure is not the others'.
func (r *recorder) record(ctx context.Context, rec *offloadRecord) (int64, error) {
	p := &pendingRecord{rec: rec, done: make(chan struct{})}
	r.mu.Lock()
	r.pending = append(r.pending, p)
	if r.leading {
		r.mu.Unlock()
	} else {
		r.lead(ctx)
	}
	<-p.done // the leader always answers every record it took
	return rec.n, p.err
}

// recordLater queues rec to be written with others and returns at once;
// then gets the answer. When many records already wait (the database is
// slow), it writes them on the caller's goroutine first, so that the
// records waiting stay bounded.
func (r *recorder) recordLater(rec *offloadRecord, then func(ctx context.Context, err error)) {
	p := &pendingRecord{rec: rec, done: make(chan struct{}), then: then}
	r.mu.Lock()
	r.pending = append(r.pending, p)
	switch {
	case r.leading:
		wait := len(r.pending) >= 2*maxRecordBatch
		r.mu.Unlock()
		if wait {
			<-p.done
		}
	case len(r.pending) >= deferredFlushAt:
		r.leadDeferred()
	default:
		if r.timer == nil {
			r.timer = time.AfterFunc(deferredFlushAfter, r.flush)
		}
		r.mu.Unlock()
	}
}

// flush writes the records that wait, unless a leader is writing.
func (r *recorder) flush() {
	r.mu.Lock()
	r.timer = nil
	if r.leading || len(r.pending) == 0 {
		r.mu.Unlock()
		return
	}
	r.leadDeferred()
}

// drain writes every record that waits and returns once none is left or
// ctx ends.
func (r *recorder) drain(ctx context.Context) {
	for {
		r.mu.Lock()
		switch {
		case len(r.pending) == 0 && !r.leading:
			r.mu.Unlock()
			return
		case !r.leading:
			r.leadDeferred()
			continue
		}
		if r.idle == nil {
			r.idle = make(chan struct{})
		}
		idle := r.idle
		r.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return
		}
	}
}

// leadDeferred is lead under a context of its own. r.mu is held.
func (r *recorder) leadDeferred() {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	r.lead(ctx)
}

// lead writes the records that wait until none is left; r.mu is held on
// entry and released on return.
func (r *recorder) lead(ctx context.Context) {
	r.leading = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	for {
		batch := r.pending
		if len(batch) > maxRecordBatch {
			batch = batch[:maxRecordBatch]
		}
		r.pending = append([]*pendingRecord(nil), r.pending[len(batch):]...)
		r.mu.Unlock()
		r.writeBatch(ctx, batch)
		r.mu.Lock()
		if len(r.pending) == 0 {
			r.leading = false
			if r.idle != nil {
				close(r.idle)
				r.idle = nil
			}
			r.mu.Unlock()
			return
		}
	}
}

// writeBatch writes batch and answers each of its records.
func (r *recorder) writeBatch(ctx context.Context, batch []*pendingRecord) {
	recs := make([]*offloadRecord, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	err := r.write(ctx, recs)
	if err != nil && len(batch) > 1 {
		for _, p := range batch {
			p.rec.n = 0
			p.err = r.write(ctx, []*offloadRecord{p.rec})
		}
	} else {
		for _, p := range batch {
			if err != nil {
				p.rec.n = 0
			}
			p.err = err
		}
	}
	for _, p := range batch {
		close(p.done)
		if p.then != nil {
			p.then(ctx, p.err)
		}
	}
}
