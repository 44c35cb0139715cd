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
	if f.by == nil {
		f.by = map[string]*flight{}
	}
	fl := f.by[id]
	if fl == nil {
		ctx, cancel := context.WithCancel(context.Background())
		fl = &flight{ctx: ctx, cancel: cancel}
		f.by[id] = fl
	}
	if fl.draining {
		return nil, nil, false
	}
	fl.n++
	var once sync.Once
	return fl.ctx, func() { once.Do(func() { f.leave(id, fl) }) }, true
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
	if f.by == nil {
		f.by = map[string]*flight{}
	}
	fl := f.by[id]
	if fl == nil {
		ctx, cancel := context.WithCancel(context.Background())
		fl = &flight{ctx: ctx, cancel: cancel}
		f.by[id] = fl
	}
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

// Drain prepares provider id for removal while its plugin still runs. No
// new offload or delete call to it starts (such jobs are retried later,
// and dropped once Default Storage no longer names it); the calls in flight
// get grace to finish and be recorded, then are cut. An upload that ended
// without being recorded — cut, or failed after the object may have been
// stored — has its object removed through the provider, as has the object
// of every queued offload that already tried it, so nothing is left in the
// bucket without a row. Drain returns when that is done or ctx ends; the
// provider stays closed to jobs until reopen is called (once the plugin is
// gone, or when the removal is abandoned).
func (s *Service) Drain(ctx context.Context, id string, grace time.Duration) (reopen func()) {
	fl := s.flights.drain(id)
	reopen = func() { s.flights.reopen(id, fl) }
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-fl.idle:
	case <-ctx.Done():
		fl.cancel()
		return reopen
	case <-t.C:
		s.log.Warn("results: cutting the uploads and deletes still running to a provider being removed", "provider", id, "grace", grace)
		fl.cancel()
		select {
		case <-fl.idle:
		case <-ctx.Done():
			return reopen
		}
	}
	s.removeTried(ctx, id)
	return reopen
}

// removeTried removes, through provider id, the objects that queued
// offload jobs to it may have stored in earlier attempts: their results
// are still local, and once the provider is gone nothing could remove them.
func (s *Service) removeTried(ctx context.Context, id string) {
	p, ok := s.router.Provider(ctx, id)
	if !ok {
		return
	}
	rows, err := s.db.QueryContext(ctx, `SELECT j.object_key FROM jobs j JOIN results r ON r.id = j.result_id
		WHERE j.kind = $1 AND j.provider = $2 AND j.attempts > 0 AND r.storage = $3 AND (j.locked_until IS NULL OR j.locked_until < $4)`,
		kindOffload, id, Local, dbTime(s.now()))
	if err != nil {
		s.log.Warn("results: listing the uploads a removed provider may hold", "provider", id, "err", err)
		return
	}
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			break
		}
		keys = append(keys, k)
	}
	rows.Close()
	left := 0
	for i, k := range keys {
		if ctx.Err() != nil {
			left = len(keys) - i
			break
		}
		if _, err := call(ctx, "delete", func(ctx context.Context) (struct{}, error) { return struct{}{}, p.Delete(ctx, k) }); err != nil {
			left++
			s.log.Warn("results: removing an object a failed upload may have stored", "provider", id, "key", k, "err", short(err))
		}
	}
	if left > 0 {
		s.log.Warn("results: some objects of failed uploads could not be checked before the provider was removed", "provider", id, "left", left)
	}
}

// guard runs a job's provider work under the provider's flight: it does not
// start while the provider drains, and a cut by the drain cancels it.
func (s *Service) guard(ctx context.Context, id string, fn func(ctx context.Context, cut context.Context) outcome) outcome {
	cut, release, ok := s.flights.enter(id)
	if !ok {
		return retry(fmt.Errorf("%s: %w", id, ErrDraining))
	}
	defer release()
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(cut, cancel)
	defer stop()
	return fn(jctx, cut)
}
