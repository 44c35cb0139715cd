package results

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/magicads/r2storage/shared/storage"
)

// Job kinds, as in the jobs table.
const (
	kindOffload = "offload"
	kindDelete  = "delete"
	// kindRestore brings an offloaded result back to the local disk (bulk.go).
	kindRestore = "restore"
)

const (
	// bookkeepingTimeout bounds the database writes that record a job's
	// outcome; they run even when the caller's context has ended.
	bookkeepingTimeout = 30 * time.Second
	// cleanupTimeout bounds a best-effort delete of an orphaned object.
	cleanupTimeout = 15 * time.Second
	// minWait is the shortest sleep of an idle worker.
	minWait = 10 * time.Millisecond
)

// job is a leased row of the jobs table.
type job struct {
	id        int64
	kind      string
	resultID  string
	provider  string
	objectKey string
	// bucket is where a delete job's object is ("" for a legacy row, a
	// local file, and offload jobs, whose key is the one given to Put).
	bucket   string
	attempts int
	// bulkRun is the bulk operation that queued the job (0 for none).
	bulkRun int64
	// node is the node that must run the job ("" for any node).
	node string
	// claim is the locked_by value this attempt wrote: the lease is ours as
	// long as the row still holds it (each claim writes a fresh one).
	claim string
	// until is the lease expiry last written for certain.
	until time.Time
}

// outcome is how a job attempt ended.
type outcome struct {
	// state is done (remove the job), retry (reschedule), fail (park the
	// job until RetryFailed) or drop (remove the job without doing it,
	// with reason).
	state  int
	err    error
	reason string
	// code is err's contract code, recorded with a retry or a failure.
	code storage.ErrorCode
	// about is the provider the attempt reached (or waited for), whose
	// node statistics (JobStats) the outcome updates; "" for none.
	about string
	// handoff marks a retry cut by an inline attempt's bound: the job is
	// due again at once, for the workers.
	handoff bool
	// gone marks a done job whose row the attempt already removed, in the
	// transaction that recorded its work.
	gone bool
}

const (
	stateDone = iota
	stateRetry
	stateDrop
	stateFail
)

// done, retry, fail and drop build outcomes.
func done() outcome              { return outcome{state: stateDone} }
func retry(err error) outcome    { return outcome{state: stateRetry, err: err, code: storage.Code(err)} }
func drop(reason string) outcome { return outcome{state: stateDrop, reason: reason} }
func dropErr(reason string, err error) outcome {
	return outcome{state: stateDrop, reason: reason, err: err}
}

// fail parks the job: err is permanent for provider (see judge).
func fail(provider string, err error) outcome {
	return outcome{state: stateFail, err: err, code: storage.Code(err), about: provider}
}

// doneWith is done after a call to provider succeeded.
func doneWith(provider string) outcome { return outcome{state: stateDone, about: provider} }

// insertLeasedJob queues a job already leased by the caller; bucket is
// where a delete job's object is ("" otherwise); node is the node that
// must run the job when it is retried ("" for any).
func (s *Service) insertLeasedJob(ctx context.Context, tx *sql.Tx, kind, resultID, provider, key, bucket, node string, now time.Time) (*job, error) {
	j := &job{kind: kind, resultID: resultID, provider: provider, objectKey: key, bucket: bucket, node: node, claim: s.newClaim(), until: now.Add(s.opts.LeaseDuration)}
	err := tx.QueryRowContext(ctx, `INSERT INTO jobs (kind, result_id, provider, object_key, bucket, attempts, next_attempt_at, locked_until, locked_by, last_error, created_at, node)
		VALUES ($1, $2, $3, $4, $8, 0, $5, $6, $7, '', $5, $9) RETURNING id`,
		kind, resultID, provider, key, dbTime(now), dbTime(j.until), j.claim, bucket, node).Scan(&j.id)
	if err != nil {
		return nil, err
	}
	return j, nil
}

// insertQueuedJob queues a job for the workers of node ("" for any node),
// due at due; why says why it was not tried at once. provider "" means
// whatever Default Storage names when the job runs; bucket is where a
// delete job's object is ("" otherwise).
func (s *Service) insertQueuedJob(ctx context.Context, tx *sql.Tx, kind, resultID, provider, key, bucket, node string, now, due time.Time, why string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO jobs (kind, result_id, provider, object_key, bucket, attempts, next_attempt_at, locked_until, locked_by, last_error, created_at, node)
		VALUES ($1, $2, $3, $4, $5, 0, $6, NULL, '', $7, $8, $9)`,
		kind, resultID, provider, key, bucket, dbTime(due), short(errors.New(why)), dbTime(now), node)
	return err
}

// ReleaseLeases releases at once the job leases that earlier processes of
// this node (Options.NodeID) left behind, so their jobs run again without
// waiting for the leases to expire; it returns how many it released.
// RunWorker calls it first. Leases of this Service and of other nodes are
// left alone.
func (s *Service) ReleaseLeases(ctx context.Context) (int64, error) {
	node, own := s.opts.NodeID+"/", s.owner+"/"
	res, err := s.db.ExecContext(ctx, `UPDATE jobs SET locked_until = NULL, locked_by = ''
		WHERE substr(locked_by, 1, $1) = $2 AND substr(locked_by, 1, $3) <> $4`, len(node), node, len(own), own)
	if err != nil {
		return 0, fmt.Errorf("results: releasing the job leases of this node's earlier process: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("results: releasing the job leases of this node's earlier process: %w", err)
	}
	if n > 0 {
		s.nudge()
	}
	return n, nil
}

// runLeased runs fn while keeping j's lease alive, then records the
// outcome. fn's context is cancelled if the lease is lost.
func (s *Service) runLeased(ctx context.Context, j *job, fn func(ctx context.Context) outcome) outcome {
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	k := s.keepLease(jctx, j, cancel)
	out := fn(jctx)
	k.stop()
	s.finish(ctx, j, out)
	return out
}

// leaseKeeper renews a job's lease every third of the lease duration while
// the job runs. It is a timer, not a goroutine: most jobs end long before
// their first renewal, and then keeping their lease cost nothing.
type leaseKeeper struct {
	s      *Service
	j      *job
	ctx    context.Context
	cancel context.CancelFunc
	every  time.Duration

	mu      sync.Mutex
	stopped bool
	t       *time.Timer
	busy    sync.WaitGroup // a renewal in flight
}

// keepLease starts renewing j's lease; cancel is called if it is lost.
// The caller must call stop.
func (s *Service) keepLease(ctx context.Context, j *job, cancel context.CancelFunc) *leaseKeeper {
	k := &leaseKeeper{s: s, j: j, ctx: ctx, cancel: cancel, every: max(s.opts.LeaseDuration/3, time.Millisecond)}
	k.mu.Lock()
	k.t = time.AfterFunc(k.every, k.fire)
	k.mu.Unlock()
	return k
}

// stop ends the renewals and waits for one in flight.
func (k *leaseKeeper) stop() {
	k.mu.Lock()
	k.stopped = true
	k.t.Stop()
	k.mu.Unlock()
	k.busy.Wait()
}

// fire renews the lease once and schedules the next renewal; it cancels
// the job when the lease is lost.
func (k *leaseKeeper) fire() {
	k.mu.Lock()
	if k.stopped || k.ctx.Err() != nil {
		k.mu.Unlock()
		return
	}
	k.busy.Add(1)
	k.mu.Unlock()
	defer k.busy.Done()
	if !k.renew() {
		return
	}
	k.mu.Lock()
	if !k.stopped {
		k.t.Reset(k.every)
	}
	k.mu.Unlock()
}

// renew extends the lease once; it reports whether to go on renewing.
func (k *leaseKeeper) renew() bool {
	s, j := k.s, k.j
	until := s.now().Add(s.opts.LeaseDuration)
	rctx, rcancel := context.WithTimeout(k.ctx, k.every)
	res, err := s.db.ExecContext(rctx, "UPDATE jobs SET locked_until = $1 WHERE id = $2 AND locked_by = $3", dbTime(until), j.id, j.claim)
	rcancel()
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	k.mu.Lock()
	if err == nil && n == 1 {
		j.until = until
	}
	stopped := k.stopped
	k.mu.Unlock()
	if stopped || k.ctx.Err() != nil {
		// The job finished meanwhile (it may have removed its row).
		return false
	}
	switch {
	case err != nil:
		// A renewal that failed on our side may still have applied;
		// either way the row keeps our claim until another node takes
		// the job after the last expiry written for certain.
		s.log.Warn("results: renewing a job lease", "job", j.id, "err", err)
		if !s.now().Before(j.until) {
			s.log.Warn("results: job lease expired; stopping the job", "job", j.id, "kind", j.kind, "result", j.resultID)
			k.cancel()
			return false
		}
	case n == 0:
		s.log.Warn("results: job lease lost; stopping the job", "job", j.id, "kind", j.kind, "result", j.resultID)
		k.cancel()
		return false
	}
	return true
}

// finish records the outcome of a job attempt, if this node still holds
// the lease.
func (s *Service) finish(ctx context.Context, j *job, out outcome) {
	s.noteOutcome(j, out)
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	to := j.provider
	if to == "" {
		to = out.about
	}
	s.opts.Metrics.JobFinished(j.kind, to, [...]string{stateDone: "ok", stateRetry: "retry", stateDrop: "dropped", stateFail: "failed"}[out.state])
	var err error
	switch out.state {
	case stateDone, stateDrop:
		if out.state == stateDrop {
			s.log.Info("results: job dropped", "kind", j.kind, "result", j.resultID, "provider", j.provider, "reason", out.reason, "err", short(out.err))
		}
		if out.state == stateDrop && j.kind == kindOffload {
			// Before the job goes, so a result without a job always says why.
			s.noteLocal(bctx, j, "kept local: "+out.reason)
		}
		if !out.gone {
			_, err = s.db.ExecContext(bctx, "DELETE FROM jobs WHERE id = $1 AND locked_by = $2", j.id, j.claim)
		}
	case stateFail:
		attempts := j.attempts + 1
		if to == "" {
			to = "the Default Storage"
		}
		s.log.Warn("results: job failed for a reason retrying cannot fix; it waits until the provider's settings change or an admin retries it",
			"kind", j.kind, "result", j.resultID, "provider", to, "attempt", attempts, "code", out.code.String(), "err", short(out.err))
		if j.kind == kindOffload {
			s.noteLocal(bctx, j, fmt.Sprintf("upload to %s failed: %s; %s", to, short(out.err), retryHint))
		}
		_, err = s.db.ExecContext(bctx, `UPDATE jobs SET state = $1, attempts = $2, next_attempt_at = $3, locked_until = NULL, locked_by = '', last_error = $4, last_code = $5,
			provider = CASE WHEN provider = '' THEN $6 ELSE provider END
			WHERE id = $7 AND locked_by = $8`, jobFailed, attempts, dbTime(s.now()), short(out.err), codeName(out.err), out.about, j.id, j.claim)
	default:
		attempts := j.attempts + 1
		next := s.now()
		if !out.handoff {
			next = next.Add(s.backoff(attempts))
		}
		if j.kind == kindOffload {
			// While the lease is held, so no later attempt's note is overwritten.
			if to == "" {
				to = "the Default Storage"
			}
			why := fmt.Sprintf("queued for %s, retrying (attempt %d failed): %s", to, attempts, short(out.err))
			if out.handoff {
				why = fmt.Sprintf("queued for %s: the upload did not finish while the request waited; the queue continues it", to)
			}
			s.noteLocal(bctx, j, why)
		}
		_, err = s.db.ExecContext(bctx, `UPDATE jobs SET attempts = $1, next_attempt_at = $2, locked_until = NULL, locked_by = '', last_error = $3, last_code = $4
			WHERE id = $5 AND locked_by = $6`, attempts, dbTime(next), short(out.err), codeName(out.err), j.id, j.claim)
		s.nudge()
	}
	if err != nil {
		s.log.Error("results: recording a job outcome; it will be retried when its lease expires", "job", j.id, "kind", j.kind, "result", j.resultID, "err", err)
	}
	if j.bulkRun != 0 {
		s.bulkNudge()
	}
}

// codeName is the contract code of err as the jobs table keeps it, "" for
// no error.
func codeName(err error) string {
	if err == nil {
		return ""
	}
	return storage.Code(err).String()
}

// noteLocal records on an offload job's result, while it is still local,
// why it is.
func (s *Service) noteLocal(ctx context.Context, j *job, why string) {
	if _, err := s.db.ExecContext(ctx, `UPDATE results SET local_reason = $1 WHERE id = $2 AND storage = $3
		AND EXISTS (SELECT 1 FROM jobs WHERE id = $4 AND locked_by = $5)`,
		short(errors.New(why)), j.resultID, Local, j.id, j.claim); err != nil {
		s.log.Warn("results: recording why a result is local", "result", j.resultID, "err", err)
	}
}

// backoff returns the delay before attempt number attempts+1: exponential
// from BackoffMin, capped at BackoffMax, with jitter in [d/2, d].
func (s *Service) backoff(attempts int) time.Duration {
	d := s.opts.BackoffMax
	if attempts >= 1 && attempts <= 40 {
		if v := s.opts.BackoffMin << (attempts - 1); v > 0 && v < d {
			d = v
		}
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

// nudge wakes an idle worker.
func (s *Service) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// RunWorker runs this node's share of the queue until ctx ends; it then
// returns nil. It first asks the providers to abort the incomplete uploads
// of the jobs an earlier process of this node held (AbortInterrupted) and
// releases those leases (ReleaseLeases), then runs Options.Workers workers, each taking one
// due job at a time under Options.JobTimeout, so a stuck job holds one
// worker only. Workers wake early when this Service queues a job. Several
// RunWorker calls (on this node or others sharing the database) may run at
// once.
func (s *Service) RunWorker(ctx context.Context) error {
	s.AbortInterrupted(ctx)
	if n, err := s.ReleaseLeases(ctx); err != nil {
		s.log.Warn("results: the leases of this node's earlier process expire by themselves", "err", err)
	} else if n > 0 {
		s.log.Info("results: released the job leases this node held before it restarted", "jobs", n)
	}
	var wg sync.WaitGroup
	for range s.opts.Workers {
		wg.Go(func() { s.work(ctx) })
	}
	wg.Go(func() { s.runBulk(ctx) })
	wg.Wait()
	// Uploads done but not yet recorded are recorded before returning.
	dctx, cancel := context.WithTimeout(context.Background(), bookkeepingTimeout)
	defer cancel()
	s.recorder.drain(dctx)
	return nil
}

// work is one worker: it runs due jobs one at a time until ctx ends.
func (s *Service) work(ctx context.Context) {
	// slots bound the uploads this worker runs at once: one, or up to
	// smallUploadsPerWorker of a bulk run's small results (see
	// offloadRecordingLater), which run on goroutines of their own.
	slots := make(chan struct{}, smallUploadsPerWorker)
	var small sync.WaitGroup
	defer small.Wait()
	for {
		for ctx.Err() == nil {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			free := func() { <-slots }
			j, err := s.claim(ctx)
			if err != nil {
				free()
				if ctx.Err() == nil {
					s.log.Warn("results: looking for due jobs", "err", err)
				}
				break
			}
			if j == nil {
				free()
				break
			}
			// More may be due: wake an idle worker to look.
			s.nudge()
			if j.kind == kindOffload && j.bulkRun != 0 {
				s.offloadRecordingLater(ctx, j, &small, free)
				continue
			}
			// Any other job runs alone: wait for the small uploads.
			for range smallUploadsPerWorker - 1 {
				slots <- struct{}{}
			}
			jctx, cancel := context.WithTimeout(ctx, s.opts.JobTimeout)
			out := s.runFlight(jctx, j, j.provider, func(ctx context.Context) outcome { return s.runJob(ctx, j) })
			cancel()
			for range smallUploadsPerWorker {
				<-slots
			}
			if out.state == stateRetry {
				s.log.Warn("results: job failed; retrying later", "kind", j.kind, "result", j.resultID, "provider", j.provider, "attempt", j.attempts+1, "code", out.code.String(), "err", short(out.err))
			}
		}
		wait := s.opts.PollInterval
		if d, ok := s.nextDue(ctx); ok && d < wait {
			wait = max(d, minWait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// runJob runs a leased job.
func (s *Service) runJob(ctx context.Context, j *job) outcome {
	switch j.kind {
	case kindOffload:
		return s.offloadJob(ctx, j, nil)
	case kindDelete:
		return s.deleteJob(ctx, j)
	case kindRestore:
		return s.restoreJob(ctx, j)
	default:
		return drop(fmt.Sprintf("unknown job kind %q", j.kind))
	}
}

// nextDueQuery is the earliest due time of the unleased jobs this node
// runs: $1 the queued state, $2 this node. Jobs another node must run are
// not this node's to wait for (a worker woken by them would spin).
const nextDueQuery = `SELECT MIN(m) FROM (
		SELECT MIN(next_attempt_at) AS m FROM jobs WHERE node = '' AND locked_until IS NULL AND state = $1
		UNION ALL
		SELECT MIN(next_attempt_at) AS m FROM jobs WHERE node = $2 AND locked_until IS NULL AND state = $1) due`

// nextDueAnyQuery is nextDueQuery of a node on a shared results folder,
// which runs every job.
const nextDueAnyQuery = "SELECT MIN(next_attempt_at) FROM jobs WHERE locked_until IS NULL AND state = $1"

// nextDue returns how long until the earliest unleased job this node runs
// is due.
func (s *Service) nextDue(ctx context.Context) (time.Duration, bool) {
	var v any
	var err error
	if s.opts.SharedVolume {
		err = s.db.QueryRowContext(ctx, nextDueAnyQuery, jobQueued).Scan(&v)
	} else {
		err = s.db.QueryRowContext(ctx, nextDueQuery, jobQueued, s.opts.NodeID).Scan(&v)
	}
	if err != nil || v == nil {
		return 0, false
	}
	var t dbTimeValue
	if err := t.Scan(v); err != nil {
		return 0, false
	}
	return time.Time(t).Sub(s.now()), true
}

// claimBatch is how many due jobs one claim query lists (see candidates).
const claimBatch = 64

// claimQuery lists the due jobs claim picks from: the first claimBatch of
// those any node may run and those of this node ($3). Each half is one
// ordered range of jobs_node_due_idx, so the jobs that wait for another
// node (jobs.node: it holds the local copy they read) cost nothing to pass
// by, however many there are.
const claimQuery = `SELECT id FROM (
		SELECT id, next_attempt_at FROM (SELECT id, next_attempt_at FROM jobs WHERE node = '' AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until < $1) AND state = $2
			ORDER BY next_attempt_at, id LIMIT 64) shared
		UNION ALL
		SELECT id, next_attempt_at FROM (SELECT id, next_attempt_at FROM jobs WHERE node = $3 AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until < $1) AND state = $2
			ORDER BY next_attempt_at, id LIMIT 64) own
	) due ORDER BY next_attempt_at, id LIMIT 64`

// claimAnyQuery is claimQuery of a node on a shared results folder, which
// runs every job, whichever node queued it.
const claimAnyQuery = `SELECT id FROM jobs WHERE next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until < $1) AND state = $2
		ORDER BY next_attempt_at, id LIMIT 64`

// candidateAge is how long the due jobs one claim query listed are
// offered to this node's workers before the list is read again.
const candidateAge = time.Second

// candidates are the due jobs the last claim query listed, not yet tried
// by a worker of this Service: the workers take them in turn, so that one
// query serves up to claimBatch claims and no two workers of a node try
// the same job.
type candidates struct {
	mu  sync.Mutex
	ids []int64
	at  time.Time
}

// next takes the next job to try, if the list is fresh.
func (c *candidates) next(now time.Time) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ids) == 0 || now.Sub(c.at) > candidateAge {
		c.ids = nil
		return 0, false
	}
	id := c.ids[0]
	c.ids = c.ids[1:]
	return id, true
}

// set offers ids, listed at now, to the workers.
func (c *candidates) set(ids []int64, now time.Time) {
	c.mu.Lock()
	c.ids, c.at = ids, now
	c.mu.Unlock()
}

// claim leases one due job this node may run, or returns nil when none is
// due. The lease is a conditional update, so two nodes never hold one job
// at once. Failed jobs are never claimed, nor jobs another node must run.
func (s *Service) claim(ctx context.Context) (*job, error) {
	listed := false
	for {
		id, ok := s.cands.next(s.now())
		if !ok {
			if listed {
				return nil, nil // every job listed was taken meanwhile
			}
			ids, err := s.dueJobs(ctx)
			if err != nil || len(ids) == 0 {
				return nil, err
			}
			listed = true
			id = ids[0]
			s.cands.set(ids[1:], s.now())
		}
		j, err := s.lease(ctx, id)
		if err != nil || j != nil {
			return j, err
		}
		// Another node took it, or it is gone: try the next one.
	}
}

// dueJobs lists the due jobs this node may run, the first due first.
func (s *Service) dueJobs(ctx context.Context) ([]int64, error) {
	now := s.now()
	var rows *sql.Rows
	var err error
	if s.opts.SharedVolume {
		rows, err = s.db.QueryContext(ctx, claimAnyQuery, dbTime(now), jobQueued)
	} else {
		rows, err = s.db.QueryContext(ctx, claimQuery, dbTime(now), jobQueued, s.opts.NodeID)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// lease leases job id if it is still due and unleased; nil when it is not.
func (s *Service) lease(ctx context.Context, id int64) (*job, error) {
	now := s.now()
	until, claim := now.Add(s.opts.LeaseDuration), s.newClaim()
	j := &job{id: id, claim: claim, until: until}
	err := s.db.QueryRowContext(ctx, `UPDATE jobs SET locked_until = $1, locked_by = $4
		WHERE id = $2 AND next_attempt_at <= $3 AND (locked_until IS NULL OR locked_until < $3) AND state = $5
		RETURNING kind, result_id, provider, object_key, bucket, attempts, bulk_run, node`, dbTime(until), id, dbTime(now), claim, jobQueued).
		Scan(&j.kind, &j.resultID, &j.provider, &j.objectKey, &j.bucket, &j.attempts, &j.bulkRun, &j.node)
	if isNoRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return j, nil
}

// offloadJob uploads a local result to its provider and records it there.
// target is the provider to use, or nil to ask the router (see routeJob).
func (s *Service) offloadJob(ctx context.Context, j *job, target *Target) outcome {
	rw, err := loadRow(ctx, s.db, j.resultID)
	if err != nil {
		return unreadable(err)
	}
	p, out := s.upload(ctx, j, rw, target)
	if p == nil {
		return out
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	n, err := s.recorder.record(bctx, p.rec)
	return s.recorded(bctx, j, p, n, err)
}

// smallUploadsPerWorker is how many of a bulk run's small results one
// worker uploads at once; any other job runs alone on its worker.
const smallUploadsPerWorker = 4

// smallUpload is the largest result that counts as small: the plugin SDK
// reads a local file of up to this size into one buffer, so the uploads a
// node runs at once hold at most Workers × smallUploadsPerWorker of them.
const smallUpload = 1 << 20

// offloadRecordingLater runs offload job j of a bulk run as runFlight
// and offloadJob would, except that the upload is recorded later, with
// others (recorder.recordLater): the worker goes on to its next job while
// j keeps its lease and its flight until the record is written, and is
// finished then. A small result is uploaded on a goroutine of its own,
// counted in small, so that its worker claims the next job meanwhile;
// free is called once the upload has ended.
func (s *Service) offloadRecordingLater(ctx context.Context, j *job, small *sync.WaitGroup, free func()) {
	jctx, cancel := context.WithCancel(ctx)
	release := func() {}
	if j.provider != "" && j.provider != Local {
		cut, rel, ok := s.flights.enter(j.provider)
		if !ok {
			cancel()
			free()
			s.finish(ctx, j, retry(fmt.Errorf("%s: %w", j.provider, ErrDraining)))
			return
		}
		stop := context.AfterFunc(cut, cancel)
		release = func() { stop(); rel() }
	}
	k := s.keepLease(jctx, j, cancel)
	end := func(out outcome) {
		k.stop()
		s.finish(ctx, j, out)
		cancel()
		release()
		if out.state == stateRetry {
			s.log.Warn("results: job failed; retrying later", "kind", j.kind, "result", j.resultID, "provider", j.provider, "attempt", j.attempts+1, "code", out.code.String(), "err", short(out.err))
		}
	}
	tctx, tcancel := context.WithTimeout(jctx, s.opts.JobTimeout)
	rw, err := loadResultRow(tctx, s.db, j.resultID)
	if err != nil {
		tcancel()
		free()
		end(unreadable(err))
		return
	}
	run := func() {
		p, out := s.upload(tctx, j, rw, nil)
		tcancel()
		free()
		if p == nil {
			end(out)
			return
		}
		s.recorder.recordLater(p.rec, func(ctx context.Context, err error) {
			end(s.recorded(ctx, j, p, p.rec.n, err))
		})
	}
	if rw.size > smallUpload {
		run()
		return
	}
	small.Go(run)
}

// unreadable is the outcome of an offload job whose result row could not
// be read.
func unreadable(err error) outcome {
	if isNoRows(err) {
		return drop("the result no longer exists")
	}
	return retry(fmt.Errorf("reading the result: %w", err))
}

// pendingOffload is an upload that is stored and waits to be recorded.
type pendingOffload struct {
	rw     row
	target *Target
	info   storage.ObjectInfo
	// locs is whether the object is recorded by location (locates).
	locs        bool
	removeLocal bool
	rec         *offloadRecord
}

// upload runs offload job j's upload of rw, up to the point where it
// must be recorded: it returns the upload to record, or nil and the
// job's outcome. target is the provider to use, or nil to ask the router.
func (s *Service) upload(ctx context.Context, j *job, rw row, target *Target) (*pendingOffload, outcome) {
	if rw.deleted {
		return nil, drop("the result was deleted")
	}
	if rw.storage != Local {
		return nil, drop("the result already lives in " + rw.storage)
	}
	if !s.holds(rw.localNode) {
		return nil, s.rehome(ctx, j, rw.localNode)
	}
	if target == nil {
		t, out := s.routeJob(ctx, j)
		if t == nil {
			if out.state == stateDrop && j.attempts > 0 && j.provider != "" {
				// An earlier attempt may have stored the object before
				// failing; nothing refers to it, so remove it.
				s.removeOrphan(ctx, j.provider, nil, "", rw.path)
			}
			return nil, out
		}
		target = t
	}
	if pl, ok := s.router.Placement(ctx, target.ID); ok {
		if why := tooBig(target.ID, pl, rw.size); why != "" {
			return nil, drop(why)
		}
	}
	if !rw.localPresent {
		return nil, dropErr("the result has no local file to upload", errors.New("local_present is false for a local result"))
	}
	f, err := s.local.Open(rw.path)
	if err != nil {
		return nil, retry(fmt.Errorf("opening the local file: %w", err))
	}
	start := time.Now()
	info, err := s.putFile(ctx, target.Provider, rw, f)
	s.opts.Metrics.Uploaded(target.ID, rw.size, time.Since(start), err)
	if err != nil {
		if s.flights.draining(target.ID) {
			// The provider is being removed and this upload will not be
			// retried there: it may have stored the object before failing,
			// so remove it while the provider is still running.
			bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
			s.reconcileOffload(bctx, rw, target, storage.ObjectInfo{}, false)
			cancel()
		}
		return nil, judge(ctx, target.ID, err)
	}
	p := &pendingOffload{rw: rw, target: target, info: info, locs: s.locates(ctx, target.ID, target.Provider)}
	if target.DeleteLocal {
		switch {
		case info.URL == "":
			s.log.Warn("results: keeping the local copy: the provider gave the object no public URL", "result", rw.id, "provider", target.ID)
		case s.remoteSizeConfirmed(ctx, target.Provider, rw, info):
			p.removeLocal = true
		default:
			s.log.Warn("results: keeping the local copy: the remote size could not be confirmed", "result", rw.id, "provider", target.ID, "size", rw.size, "remote_size", info.Size)
		}
	}
	p.rec = newOffloadRecord(rw, target.ID, info, p.locs, !p.removeLocal, j.bulkRun)
	return p, outcome{}
}

// recorded finishes offload job j once its upload p was recorded (n
// results rows changed) or failed to be (err).
func (s *Service) recorded(ctx context.Context, j *job, p *pendingOffload, n int64, err error) outcome {
	if err != nil {
		// The object is stored but not recorded: the result stays local and
		// the retry overwrites the same key.
		return retry(fmt.Errorf("recording the offload: %w", err))
	}
	rw, target := p.rw, p.target
	// The record removed the job in its transaction.
	out := doneWith(target.ID)
	out.gone = true
	if n == 0 {
		s.reconcileOffload(ctx, rw, target, p.info, p.locs)
		return out
	}
	if p.removeLocal {
		if err := s.local.Delete(ctx, rw.path); err != nil {
			s.log.Warn("results: removing the local copy of an offloaded result", "result", rw.id, "path", rw.path, "err", err)
		}
	}
	bucket, key := location(rw, p.info, p.locs)
	level := slog.LevelInfo
	if j.bulkRun != 0 {
		// A bulk run's progress and outcome are its own (BulkRun); one
		// line per result would be 10,000 lines for 10,000 results.
		level = slog.LevelDebug
	}
	s.log.Log(ctx, level, "results: offloaded", "result", rw.id, "path", rw.path, "provider", target.ID, "bucket", bucket, "key", key, "local_copy", !p.removeLocal, "bulk_run", j.bulkRun)
	return out
}

// routeJob asks the router where a queued offload job goes now: its
// provider when that takes results now; a retry while Default Storage still
// names it (or cannot be read) but it cannot take results right now; a drop
// only when the admin changed Default Storage to something else. A job with
// provider "" goes to whatever Default Storage names.
func (s *Service) routeJob(ctx context.Context, j *job) (*Target, outcome) {
	r := s.router.Route(ctx)
	want := j.provider
	switch {
	case r.Guess:
		return nil, retry(fmt.Errorf("waiting for the Default Storage to be readable: %s", r.Reason))
	case want == "" && r.Default == Local:
		return nil, drop("Default Storage is local; the result stays local")
	case want == "":
		want = r.Default
	case r.Default != want:
		return nil, drop(fmt.Sprintf("Default Storage was changed from %s to %s; the result stays local", want, r.Default))
	}
	if r.State == RouteReady && r.Target.Provider != nil && r.Target.ID == want {
		t := r.Target
		return &t, outcome{}
	}
	reason := r.Reason
	if reason == "" {
		reason = "the router gave no usable provider"
	}
	out := retry(fmt.Errorf("%s cannot take results right now: %s", want, reason))
	out.about = want
	return nil, out
}

// sqlRecordOffload marks one result as offloaded (writeOffloads).
const sqlRecordOffload = `UPDATE results SET storage = $1, object_key = $2, bucket = $3, url = $4, local_present = $5, updated_at = $6, local_reason = '', local_node = $10
		WHERE id = $7 AND storage = $8 AND deleted = $9`

// newOffloadRecord is the record of a local, live result now stored in
// provider, where Put's answer info says (see location): written, it marks
// the result as living there, removes its offload job and, for a job of
// bulk run bulkRun (0 for none), marks its bulk item done. Offloads that
// finish while another one is being recorded are recorded together, in
// one transaction (see recorder).
func newOffloadRecord(rw row, provider string, info storage.ObjectInfo, locs, localPresent bool, bulkRun int64) *offloadRecord {
	bucket, key := location(rw, info, locs)
	rec := &offloadRecord{id: rw.id, provider: provider, bucket: bucket, key: key, url: info.URL, localPresent: localPresent, bulkRun: bulkRun}
	if localPresent {
		// The copy kept stays where it is.
		rec.localNode = rw.localNode
	}
	return rec
}

// offloadRecord is one finished upload waiting to be recorded.
type offloadRecord struct {
	id, provider, bucket, key, url string
	localPresent                   bool
	// localNode is the node holding the local copy kept ("" without one).
	localNode string
	bulkRun   int64
	// n is how many results rows the record changed (0 or 1).
	n int64
}

// writeOffloads records batch in one transaction (newOffloadRecord): a
// results update for each record, then one statement removing all their
// jobs and one marking their bulk items done for each bulk run.
func (s *Service) writeOffloads(ctx context.Context, batch []*offloadRecord) error {
	// Prepared before the transaction: preparing needs a connection of
	// its own, which may be waiting for this transaction's lock.
	s.db.warm(ctx, recordStatements...)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer rollback(tx)
	now := dbTime(s.now())
	ids := make([]string, 0, len(batch))
	settled := map[int64][]string{}
	for _, r := range batch {
		res, err := s.db.txExec(ctx, tx, sqlRecordOffload, r.provider, r.key, r.bucket, r.url, r.localPresent, now, r.id, Local, false, r.localNode)
		if err != nil {
			return err
		}
		if r.n, err = res.RowsAffected(); err != nil {
			return err
		}
		ids = append(ids, r.id)
		if r.n == 1 && r.bulkRun != 0 {
			settled[r.bulkRun] = append(settled[r.bulkRun], r.id)
		}
	}
	in, args := paddedInList(1, ids)
	if _, err := s.db.txExec(ctx, tx, sqlDeleteJobsOf(in), append([]any{kindOffload}, args...)...); err != nil {
		return err
	}
	for run, ids := range settled {
		in, args := paddedInList(4, ids)
		if _, err := s.db.txExec(ctx, tx, sqlSettleBulkItems(in), append([]any{itemDone, now, run, itemQueued}, args...)...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// sqlDeleteJobsOf removes the jobs of kind $1 of the results in the list
// in (writeOffloads).
func sqlDeleteJobsOf(in string) string {
	return "DELETE FROM jobs WHERE kind = $1 AND result_id IN (" + in + ")"
}

// sqlSettleBulkItems marks done ($1, at $2) the queued ($4) items of bulk
// run $3 of the results in the list in (writeOffloads).
func sqlSettleBulkItems(in string) string {
	return "UPDATE bulk_items SET state = $1, updated_at = $2 WHERE run_id = $3 AND state = $4 AND result_id IN (" + in + ")"
}

// recordStatements are the statements writeOffloads runs, for each length
// paddedInList gives a batch of up to maxRecordBatch records.
var recordStatements = func() []string {
	q := []string{sqlRecordOffload}
	for n := 1; n <= maxRecordBatch; n *= 2 {
		ids := make([]string, n)
		in, _ := inList(1, ids)
		q = append(q, sqlDeleteJobsOf(in))
		in, _ = inList(4, ids)
		q = append(q, sqlSettleBulkItems(in))
	}
	return q
}()

// paddedInList is inList with the list padded to a power of two by
// repeating its last id, so that a statement built on it has one of a few
// texts, each prepared once.
func paddedInList(after int, ids []string) (string, []any) {
	n := 1
	for n < len(ids) {
		n *= 2
	}
	padded := append(make([]string, 0, n), ids...)
	for len(padded) < n {
		padded = append(padded, ids[len(ids)-1])
	}
	return inList(after, padded)
}

// reconcileOffload handles an upload whose result changed meanwhile
// (deleted, or recorded by another attempt): an object nothing refers to is
// removed. info is Put's answer (zero when Put failed: the object, if any,
// is at the key given to Put).
func (s *Service) reconcileOffload(ctx context.Context, rw row, target *Target, info storage.ObjectInfo, locs bool) {
	bucket, key := location(rw, info, locs)
	cur, err := loadRow(ctx, s.db, rw.id)
	if err == nil && cur.storage == target.ID && cur.objectKey == key && cur.bucket == bucket {
		return // recorded there already (the delete path owns it if deleted)
	}
	if err != nil && !isNoRows(err) {
		s.log.Warn("results: checking a result changed during its upload", "result", rw.id, "err", err)
		return
	}
	s.removeOrphan(ctx, target.ID, target.Provider, bucket, key)
}

// removeOrphan deletes, best effort, an object no result refers to: at
// (bucket, full key) as Put reported it when bucket is set, else at the
// key given to Put under the provider's current settings.
func (s *Service) removeOrphan(ctx context.Context, providerID string, p storage.Provider, bucket, key string) {
	if p == nil {
		var ok bool
		if p, ok = s.router.Provider(ctx, providerID); !ok {
			return
		}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := deleteAt(cctx, providerID, p, bucket, key); err != nil && !storage.IsNotFound(err) {
		s.log.Warn("results: removing an object no result refers to", "provider", providerID, "bucket", bucket, "key", key, "err", short(err))
	}
}

// remoteSizeConfirmed reports whether the stored object has the result's
// size, asking the provider when Put's answer does not say.
func (s *Service) remoteSizeConfirmed(ctx context.Context, p storage.Provider, rw row, info storage.ObjectInfo) bool {
	if info.Size == rw.size {
		return true
	}
	st, err := call(ctx, "stat", func(ctx context.Context) (storage.ObjectInfo, error) {
		if loc, ok := p.(storage.Locator); ok && info.Bucket != "" && info.StoredKey != "" {
			st, err := loc.StatAt(ctx, storage.Location{Bucket: info.Bucket, Key: info.StoredKey})
			if storage.Code(err) != storage.Unimplemented {
				return st, err
			}
		}
		return p.Stat(ctx, rw.path)
	})
	return err == nil && st.Size == rw.size
}

// putFile uploads the result's local file f, which it closes. The reader
// handed to the provider is the open *os.File itself, so the plugin SDK
// can send the file's path instead of streaming its bytes.
func (s *Service) putFile(ctx context.Context, p storage.Provider, rw row, f *os.File) (storage.ObjectInfo, error) {
	sum, err := hex.DecodeString(rw.sha256)
	if err != nil || len(sum) != 32 {
		sum = nil
	}
	opts := storage.PutOptions{ContentType: rw.contentType, Size: rw.size, SHA256: sum}
	return callOn(ctx, p, "put", func(ctx context.Context) (storage.ObjectInfo, error) {
		defer f.Close()
		return p.Put(ctx, rw.path, f, opts)
	})
}

// deleteJob deletes a deleted result's object where it lives, then its
// local copy and its row. An object in a bucket its provider is no longer
// configured for is not touched: the job is parked failed, saying where
// the object is and what to do.
func (s *Service) deleteJob(ctx context.Context, j *job) outcome {
	if !s.holds(j.node) {
		// Leased inline by Delete, which leaves such jobs to that node.
		return retry(fmt.Errorf("the local copy is on node %s, which deletes it", j.node))
	}
	if j.provider == Local {
		if err := s.local.Delete(ctx, j.objectKey); err != nil {
			return retry(fmt.Errorf("deleting the local file: %w", err))
		}
	} else {
		p, ok := s.router.Provider(ctx, j.provider)
		if !ok {
			switch anywhere, err := s.installedAnywhere(ctx, j.provider); {
			case err != nil:
				return retry(fmt.Errorf("reading whether %s is installed: %w", j.provider, err))
			case anywhere:
				out := retry(errNotInstalledHere(j.provider))
				out.about = j.provider
				return out
			}
			return fail(j.provider, errNotInstalled(j.provider))
		}
		if j.bucket == "" {
			size := int64(-1)
			switch rw, err := loadRow(ctx, s.db, j.resultID); {
			case err == nil:
				size = rw.size
			case !isNoRows(err):
				return retry(fmt.Errorf("reading the result: %w", err))
			}
			var pl *Placement
			if got, ok := s.router.Placement(ctx, j.provider); ok {
				pl = &got
			}
			if err := checkLegacy(ctx, j.provider, p, pl, j.objectKey, size); err != nil {
				return judge(ctx, j.provider, err)
			}
		}
		if j.bucket != "" {
			pl, ok := s.router.Placement(ctx, j.provider)
			if !ok {
				out := retry(fmt.Errorf("waiting for %s to be configured, to know which bucket it serves", j.provider))
				out.about = j.provider
				return out
			}
			if pl.Bucket != j.bucket {
				now := pl.Bucket
				if now == "" {
					now = "a bucket its plugin does not name"
				}
				return fail(j.provider, &storage.Error{Code: storage.FailedPrecondition, Message: fmt.Sprintf(
					"the object %s is in bucket %s, which %s is no longer configured for (now %s); delete it there by hand, or configure that bucket again and retry",
					j.objectKey, j.bucket, j.provider, now)})
			}
		}
		if err := deleteAt(ctx, j.provider, p, j.bucket, j.objectKey); err != nil && !storage.IsNotFound(err) {
			return judge(ctx, j.provider, err)
		}
	}
	rw, err := loadRow(ctx, s.db, j.resultID)
	switch {
	case isNoRows(err):
		return s.deleted(j)
	case err != nil:
		return retry(fmt.Errorf("reading the result: %w", err))
	case !rw.deleted:
		return dropErr("the result is not deleted", errors.New("a delete job for a live result"))
	}
	if rw.localPresent && rw.storage != Local {
		if !s.holds(rw.localNode) {
			return s.rehome(ctx, j, rw.localNode)
		}
		if err := s.local.Delete(ctx, rw.path); err != nil {
			return retry(fmt.Errorf("deleting the local copy: %w", err))
		}
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	tx, err := s.db.BeginTx(bctx, nil)
	if err != nil {
		return retry(err)
	}
	defer rollback(tx)
	if _, err := tx.ExecContext(bctx, "DELETE FROM results WHERE id = $1 AND deleted = $2", rw.id, true); err != nil {
		return retry(err)
	}
	if _, err := tx.ExecContext(bctx, "DELETE FROM jobs WHERE result_id = $1", rw.id); err != nil {
		return retry(err)
	}
	if err := tx.Commit(); err != nil {
		return retry(err)
	}
	return s.deleted(j)
}

// rehome hands job j to node, which holds the local copy the job reads:
// the job's node is rewritten while this attempt still holds its lease,
// and the attempt ends as a retry, which that node's workers take.
func (s *Service) rehome(ctx context.Context, j *job, node string) outcome {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	why := fmt.Errorf("the local copy is on node %s; the job moves to that node", node)
	if _, err := s.db.ExecContext(bctx, "UPDATE jobs SET node = $1 WHERE id = $2 AND locked_by = $3", node, j.id, j.claim); err != nil {
		return retry(fmt.Errorf("%v, but recording that failed: %w", why, err))
	}
	return retry(why)
}

// deleted is the outcome of a delete job that did its work.
func (s *Service) deleted(j *job) outcome {
	if j.provider == Local {
		return done()
	}
	return doneWith(j.provider)
}

// contextBound is a provider whose calls return when their context ends,
// as a plugin's RPCs do.
type contextBound interface {
	ReturnsOnCancel() bool
}

// callOn is call for an operation of provider p: when p's calls return on
// their own once ctx ends, it runs f on this goroutine (still turning a
// panic into an error) instead of handing it to another one.
func callOn[T any](ctx context.Context, p storage.Provider, op string, f func(ctx context.Context) (T, error)) (v T, err error) {
	if cb, ok := p.(contextBound); !ok || !cb.ReturnsOnCancel() {
		return call(ctx, op, f)
	}
	defer func() {
		if r := recover(); r != nil {
			var zero T
			v, err = zero, fmt.Errorf("%s: the provider panicked: %v", op, r)
		}
	}()
	return f(ctx)
}

// call runs a provider operation, turning a panic into an error and
// returning when ctx ends even if the provider does not.
func call[T any](ctx context.Context, op string, f func(ctx context.Context) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			if p := recover(); p != nil {
				r.err = fmt.Errorf("%s: the provider panicked: %v", op, p)
			}
			ch <- r
		}()
		r.v, r.err = f(ctx)
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, &storage.Error{Code: storage.Canceled, Message: op + ": " + ctx.Err().Error(), Err: ctx.Err()}
	}
}
