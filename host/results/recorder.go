package results

import (
	"context"
	"sync"
)

// maxRecordBatch is the most finished uploads recorded in one transaction.
const maxRecordBatch = 64

// recorder records finished uploads in groups (group commit): the worker
// that finds no recording under way becomes the leader and writes every
// record waiting at that moment in one transaction, then the ones that
// arrived meanwhile, until none is left; the others wait for their
// record's answer. One transaction for several results saves a BEGIN and
// a COMMIT (and, on SQLite, the write of the pages they share) for each
// result but the first, with no added wait: a lone record is written at
// once.
type recorder struct {
	mu      sync.Mutex
	pending []*pendingRecord
	leading bool
}

// pendingRecord is a record and where its answer goes.
type pendingRecord struct {
	rec  *offloadRecord
	err  error
	done chan struct{}
}

// record writes rec with write, together with any records that wait, and
// returns rec.n. write gets a batch of at most maxRecordBatch records; when
// a batch of several fails, each of them is written again on its own, so
// one record's failure is not the others'.
func (r *recorder) record(ctx context.Context, rec *offloadRecord, write func(ctx context.Context, batch []*offloadRecord) error) (int64, error) {
	p := &pendingRecord{rec: rec, done: make(chan struct{})}
	r.mu.Lock()
	r.pending = append(r.pending, p)
	if r.leading {
		r.mu.Unlock()
		<-p.done // the leader always answers every record it took
		return rec.n, p.err
	}
	r.leading = true
	for {
		batch := r.pending
		if len(batch) > maxRecordBatch {
			batch = batch[:maxRecordBatch]
		}
		r.pending = append([]*pendingRecord(nil), r.pending[len(batch):]...)
		r.mu.Unlock()
		r.write(ctx, batch, write)
		r.mu.Lock()
		if len(r.pending) == 0 {
			r.leading = false
			r.mu.Unlock()
			break
		}
	}
	<-p.done
	return rec.n, p.err
}

// write writes batch and answers each of its records.
func (r *recorder) write(ctx context.Context, batch []*pendingRecord, write func(ctx context.Context, batch []*offloadRecord) error) {
	recs := make([]*offloadRecord, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	err := write(ctx, recs)
	if err != nil && len(batch) > 1 {
		for _, p := range batch {
			p.rec.n = 0
			p.err = write(ctx, []*offloadRecord{p.rec})
			close(p.done)
		}
		return
	}
	for _, p := range batch {
		if err != nil {
			p.rec.n = 0
		}
		p.err = err
		close(p.done)
	}
}
