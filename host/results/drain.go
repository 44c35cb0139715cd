package results

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrDraining is wrapped by the retry error of a job whose provider is
// being drained (uninstalled): the job does not start and is retried later.
var ErrDraining = errors.New("the provider is being uninstalled")

// flights counts the provider calls of jobs in flight, per provider, so a
// provider about to be removed can be drained: no new job call starts, and
// the ones running end (and are recorded) before its plugin is stopped.
type flights struct {
	mu sync.Mutex
	by map[string]*flight
}

// flight is one provider's jobs in flight.
type flight struct {
	n int
	// draining refuses new calls.
	draining bool
	// ctx is cancelled to cut the calls in flight.
	ctx    context.Context
	cancel context.CancelFunc
	// idle is closed when n falls to 0 while draining.
	idle chan struct{}
}

// enter registers a job call to provider id. It returns a context that is
// cancelled if the drain cuts the call, and the release to call when the
// call and its bookkeeping are over; ok is false while id is draining.
func (f *flights) enter(id string) (cut context.Context, release func(), ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.get(id)
	if fl.draining {
		return nil, nil, false
	}
	fl.n++
	var once sync.Once
	return fl.ctx, func() { once.Do(func() { f.leave(id, fl) }) }, true
}

// get returns id's flight, made if needed; f.mu is held.
func (f *flights) get(id string) *flight {
	if f.by == nil {
		f.by = map[string]*flight{}
	}
	fl := f.by[id]
	if fl == nil {
		ctx, cancel := context.WithCancel(context.Background())
		fl = &flight{ctx: ctx, cancel: cancel}
		f.by[id] = fl
	}
	return fl
}

// leave ends one call of fl.
func (f *flights) leave(id string, fl *flight) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl.n--
	switch {
	case fl.n > 0:
	case fl.draining:
		close(fl.idle)
	default:
		fl.cancel()
		delete(f.by, id)
	}
}

// drain marks id draining and returns its flight; the caller waits on idle.
func (f *flights) drain(id string) *flight {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.get(id)
	if !fl.draining {
		fl.draining = true
		fl.idle = make(chan struct{})
		if fl.n == 0 {
			close(fl.idle)
		}
	}
	return fl
}

// draining reports whether id is draining.
func (f *flights) draining(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.by[id]
	return fl != nil && fl.draining
}

// reopen lets calls to id start again.
func (f *flights) reopen(id string, fl *flight) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.by[id] == fl {
		fl.cancel()
		delete(f.by, id)
	}
}

// DrainGrace is how long Drain lets uploads and deletes in flight finish
// before it cuts them.
const DrainGrace = 10 * time.Second

// drainDeletes is how many objects removeTried deletes at once.
const drainDeletes = 8

// Drain prepares provider id for removal while its plugin still runs. No
// new offload or delete attempt to it starts (such jobs are retried later,
// and dropped once Default Storage no longer names it); the attempts in
// flight get grace to finish and be recorded, then their provider calls
// are cut and their outcomes recorded. An upload that ended without being
// recorded — cut, or failed after the object may have been stored — has
// its object removed through the provider, as has the object of every
// queued offload to it that already tried, so nothing is left in the
// bucket without a row. ctx bounds only the grace: the cut, the
// recording and the removals run to their own bounds (about a minute in
// all at worst), and what could not be removed is logged. The provider
// stays closed to jobs until reopen is called (once the plugin is gone,
// or when the removal is abandoned).
func (s *Service) Drain(ctx context.Context, id string, grace time.Duration) (reopen func()) {
	fl := s.flights.drain(id)
	reopen = func() { s.flights.reopen(id, fl) }
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-fl.idle:
	case <-ctx.Done():
		fl.cancel()
	case <-t.C:
		s.log.Warn("results: cutting the uploads and deletes still running to a provider being removed", "provider", id, "grace", grace)
		fl.cancel()
	}
	// Cut attempts end at once and record their outcomes within the
	// bookkeeping bound, whatever the caller's context says: returning
	// earlier would let the plugin go before they cleaned up.
	wait := time.NewTimer(bookkeepingTimeout + 5*time.Second)
	defer wait.Stop()
	select {
	case <-fl.idle:
	case <-wait.C:
		s.log.Error("results: attempts to a provider being removed did not end; their objects may stay in its bucket without a row", "provider", id)
		return reopen
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*cleanupTimeout)
	defer cancel()
	s.removeTried(cctx, id)
	// Uploads parked for it would never run: they stay local, saying why.
	if _, err := s.DropParkedOffloads(cctx, id, id+" was uninstalled"); err != nil {
		s.log.Error("results: the failed uploads to a removed provider stay parked; retry or discard them", "provider", id, "err", err)
	}
	return reopen
}

// removeTried removes, through provider id, the objects that offload jobs
// to it may have stored in earlier attempts: their results are still
// local, and once the provider is gone nothing could remove them. Jobs
// leased by another node are left to it.
func (s *Service) removeTried(ctx context.Context, id string) {
	p, ok := s.router.Provider(ctx, id)
	if !ok {
		return
	}
	keys, err := s.triedKeys(ctx, id)
	if err != nil {
		s.log.Error("results: listing the uploads a removed provider may hold; their objects may stay in its bucket", "provider", id, "err", err)
		return
	}
	var mu sync.Mutex
	left := 0
	sem := make(chan struct{}, drainDeletes)
	var wg sync.WaitGroup
	for _, k := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
			defer cancel()
			if _, err := call(dctx, "delete", func(ctx context.Context) (struct{}, error) { return struct{}{}, p.Delete(ctx, k) }); err != nil {
				mu.Lock()
				left++
				mu.Unlock()
				s.log.Warn("results: removing an object a failed upload may have stored", "provider", id, "key", k, "err", short(err))
			}
		})
	}
	wg.Wait()
	if left > 0 {
		s.log.Error("results: objects that failed uploads may have stored could not be removed before the provider was removed; they may stay in its bucket", "provider", id, "left", left)
	}
}

// triedKeys lists the keys of the offload jobs to provider id that tried
// before, whose results are still local, and that no other node holds.
func (s *Service) triedKeys(ctx context.Context, id string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT j.object_key FROM jobs j JOIN results r ON r.id = j.result_id
		WHERE j.kind = $1 AND j.provider = $2 AND j.attempts > 0 AND r.storage = $3
		AND (j.locked_until IS NULL OR j.locked_until < $4 OR substr(j.locked_by, 1, $5) = $6)`,
		kindOffload, id, Local, dbTime(s.now()), len(s.owner)+1, s.owner+"/")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// runFlight runs a leased attempt of a job whose provider is provider —
// the provider call and the outcome's bookkeeping — as one of that
// provider's flights, so Drain waits for all of it. While the provider
// drains, the attempt does not start: it is recorded as a retry. A drain
// that runs out of grace cancels the attempt's provider call; its
// bookkeeping still runs. Local jobs (and offloads queued for whatever
// Default Storage names, provider "") run as they are.
func (s *Service) runFlight(ctx context.Context, j *job, provider string, fn func(ctx context.Context) outcome) outcome {
	if provider == "" || provider == Local {
		return s.runLeased(ctx, j, fn)
	}
	cut, release, ok := s.flights.enter(provider)
	if !ok {
		out := retry(fmt.Errorf("%s: %w", provider, ErrDraining))
		s.finish(ctx, j, out)
		return out
	}
	defer release()
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(cut, cancel)
	defer stop()
	return s.runLeased(jctx, j, fn)
}
