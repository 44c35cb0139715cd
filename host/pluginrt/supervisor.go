package pluginrt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/magicads/r2storage/shared/sdk"
)

// errExited is the crash reason of a plugin process that ended by itself.
var errExited = errors.New("plugin process exited")

// Timings of crash detection besides the configurable ones.
const (
	// exitPollInterval is how often a running plugin's process is checked for exit.
	exitPollInterval = 100 * time.Millisecond
	// exitGrace is how long a failed health check waits to see the process exit.
	exitGrace = 250 * time.Millisecond
	// nudgeSpacing is the least time between two health checks triggered by failing calls.
	nudgeSpacing = time.Second
)

// errStopped is what a start interrupted by Stop, Close or a replacing Start returns.
var errStopped = errors.New("plugin was stopped")

// supervisor runs one plugin: one goroutine (run) launches it, watches it and
// restarts it, and is the only writer of its state while it runs.
type supervisor struct {
	rt   *Runtime
	id   string
	spec Spec
	log  hclog.Logger

	ctx    context.Context // ends on Stop, Close or replacement
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	nudge  chan struct{} // a handle saw a call fail; check the plugin now

	stopMu sync.Mutex // serializes stop's final state change

	mu     sync.Mutex
	client *sdk.Client // set only while State is running
	status Status
}

func newSupervisor(r *Runtime, spec Spec) *supervisor {
	ctx, cancel := context.WithCancel(context.Background())
	return &supervisor{
		rt:     r,
		id:     spec.ID,
		spec:   spec,
		log:    r.log.Named(spec.ID),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		nudge:  make(chan struct{}, 1),
		status: Status{State: StateStarting, Since: time.Now()},
	}
}

func (s *supervisor) loopDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *supervisor) snapshot() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// redact scrubs the current secrets from msg.
func (s *supervisor) redact(msg string) string {
	return newScrubber(s.rt.opts.Redact).str(msg)
}

// setState records a state change and tells OnState. client is the running
// client for StateRunning, else nil.
func (s *supervisor) setState(state State, client *sdk.Client, lastErr string) {
	s.mu.Lock()
	s.client = client
	s.status.State = state
	s.status.Since = time.Now()
	if prev := s.status.Pid; prev != 0 {
		s.rt.forgetPid(s.id, prev)
	}
	s.status.Pid = 0
	if client != nil {
		s.status.Pid = client.Pid()
		s.rt.recordPid(s.id, s.status.Pid)
	}
	if lastErr != "" || state == StateStopped {
		s.status.LastError = lastErr
	}
	st := s.status
	s.mu.Unlock()
	if s.rt.opts.OnState != nil {
		s.rt.opts.OnState(s.id, st)
	}
}

// current returns the running client, or the Unavailable error a handle
// returns while there is none.
func (s *supervisor) current() (*sdk.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return nil, unavailable(s.id, StateStopped, "", nil)
	}
	if s.status.State != StateRunning || s.client == nil {
		return nil, unavailable(s.id, s.status.State, s.status.LastError, nil)
	}
	return s.client, nil
}

// isCurrent reports whether c is still the client calls are routed to.
func (s *supervisor) isCurrent(c *sdk.Client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client == c && s.ctx.Err() == nil
}

// poke asks the supervisor to check the plugin now.
func (s *supervisor) poke() {
	select {
	case s.nudge <- struct{}{}:
	default:
	}
}

// stop ends the supervisor, waits for its process to be gone (or ctx), and
// leaves the plugin in StateStopped.
func (s *supervisor) stop(ctx context.Context) error {
	s.cancel()
	select {
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the plugin to stop: %w", ctx.Err())
	}
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if s.snapshot().State != StateStopped {
		s.setState(StateStopped, nil, "")
	}
	return nil
}

// run is the supervisor loop. The first launch uses firstCtx (the caller's
// context joined with s.ctx) and its result goes to first.
func (s *supervisor) run(firstCtx context.Context, first chan<- error) {
	defer close(s.done)
	report := func(err error) {
		if first != nil {
			first <- err
			first = nil
		}
	}
	defer func() { report(errStopped) }()
	if s.rt.opts.OnState != nil {
		s.rt.opts.OnState(s.id, s.snapshot())
	}

	opts := s.rt.opts
	var crashes []time.Time
	failures := 0 // consecutive, for the backoff
	launchCtx := firstCtx
	for {
		if s.ctx.Err() != nil {
			s.setState(StateStopped, nil, "")
			return
		}
		c, err := s.launch(launchCtx)
		launchCtx = s.ctx
		if s.ctx.Err() != nil {
			if c != nil {
				c.Close()
			}
			s.setState(StateStopped, nil, "")
			report(errStopped)
			return
		}
		if err == nil {
			startedAt := time.Now()
			s.setState(StateRunning, c, "")
			s.log.Info("plugin running", "pid", c.Pid(), "restarts", s.snapshot().Restarts)
			report(nil)
			reason := s.watch(c)
			if reason == nil || s.ctx.Err() != nil { // stopped
				s.mu.Lock()
				s.client = nil // handles fail fast while the process is killed
				s.mu.Unlock()
				c.Close()
				s.setState(StateStopped, nil, "")
				return
			}
			if time.Since(startedAt) >= opts.BackoffMax {
				failures = 0
			}
			err = reason
		}
		err = redactError(err, opts.Redact)

		// Decide between failed and restarting, record it (which detaches
		// the client), then kill what is left of the process.
		var failedMsg string
		switch {
		case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
			failedMsg = "refused: the binary does not match the sha256 recorded at install: " + err.Error()
		default:
			now := time.Now()
			crashes = append(crashes, now)
			kept := crashes[:0]
			for _, t := range crashes {
				if now.Sub(t) < opts.CrashWindow {
					kept = append(kept, t)
				}
			}
			crashes = kept
			if len(crashes) >= opts.CrashLimit {
				failedMsg = fmt.Sprintf("crashed %d times in %s; last: %s", len(crashes), opts.CrashWindow, err.Error())
			}
		}
		if failedMsg != "" {
			s.log.Error("plugin failed; not restarting until it is started again", "error", failedMsg)
			s.setState(StateFailed, nil, failedMsg)
			if c != nil {
				c.Close()
			}
			report(err)
			return
		}
		failures++
		delay := backoff(opts.BackoffMin, opts.BackoffMax, failures)
		s.log.Warn("plugin down; restarting", "error", err.Error(), "backoff", delay)
		s.setState(StateRestarting, nil, err.Error())
		if c != nil {
			c.Close()
		}
		report(err)
		t := time.NewTimer(delay)
		select {
		case <-s.ctx.Done():
			t.Stop()
			s.setState(StateStopped, nil, "")
			return
		case <-t.C:
		}
		s.mu.Lock()
		s.status.Restarts++
		s.mu.Unlock()
	}
}

// launch starts the plugin process and runs OnStart on it.
func (s *supervisor) launch(ctx context.Context) (*sdk.Client, error) {
	opts := s.rt.opts
	c, err := sdk.Launch(ctx, sdk.LaunchConfig{
		Path:         s.spec.Path,
		Env:          s.spec.Env,
		Logger:       s.log,
		SHA256:       s.spec.SHA256,
		StartTimeout: opts.StartTimeout,
	})
	if err != nil {
		return nil, err
	}
	if opts.OnStart != nil {
		octx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
		err := opts.OnStart(octx, s.id, c)
		cancel()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("on start: %w", err)
		}
	}
	return c, nil
}

// watch returns why the running plugin c must be restarted, or nil once the
// supervisor is stopped. The process is polled for exit every
// exitPollInterval and health-checked every HealthInterval, and also when a
// handle saw a call fail (at most once per nudgeSpacing); two failed checks
// in a row count as a crash.
func (s *supervisor) watch(c *sdk.Client) error {
	exitTick := time.NewTicker(exitPollInterval)
	defer exitTick.Stop()
	healthTick := time.NewTicker(s.rt.opts.HealthInterval)
	defer healthTick.Stop()
	spacing := min(s.rt.opts.HealthInterval, nudgeSpacing)
	var lastCheck time.Time
	failed := 0
	check := func() error {
		if c.Exited() {
			return errExited
		}
		err := s.check(c)
		lastCheck = time.Now()
		if s.ctx.Err() != nil {
			return nil
		}
		if err == nil {
			failed = 0
			return nil
		}
		// A dead process fails its check before go-plugin notices the exit
		// (it drains the pipes first): give it a moment to be seen as exited.
		if s.exitedWithin(c, exitGrace) {
			return errExited
		}
		failed++
		s.log.Warn("plugin health check failed", "error", err.Error(), "consecutive", failed)
		if failed >= 2 {
			return fmt.Errorf("health check failed %d times in a row: %w", failed, err)
		}
		return nil
	}
	for {
		var reason error
		select {
		case <-s.ctx.Done():
			return nil
		case <-exitTick.C:
			if c.Exited() {
				reason = errExited
			}
		case <-s.nudge:
			if c.Exited() {
				reason = errExited
			} else if time.Since(lastCheck) >= spacing {
				reason = check()
			}
		case <-healthTick.C:
			reason = check()
		}
		if s.ctx.Err() != nil {
			return nil
		}
		if reason != nil {
			return reason
		}
	}
}

// exitedWithin reports whether c's process is seen to exit within d.
func (s *supervisor) exitedWithin(c *sdk.Client, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !c.Exited() {
		if time.Now().After(deadline) || s.ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// check pings the plugin over go-plugin and calls its Health RPC, each
// bounded by the health timeout.
func (s *supervisor) check(c *sdk.Client) error {
	timeout := min(s.rt.opts.HealthInterval, maxHealthTimeout)
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	// Ping takes no context; run it aside so a hung plugin cannot block the
	// supervisor. It returns once the connection is closed by Close.
	pinged := make(chan error, 1)
	go func() { pinged <- c.Ping() }()
	select {
	case err := <-pinged:
		if err != nil {
			return fmt.Errorf("ping: %w", err)
		}
	case <-ctx.Done():
		return fmt.Errorf("ping: no answer within %s", timeout)
	}
	if _, err := c.Health(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("health: no answer within %s", timeout)
		}
		return fmt.Errorf("health: %w", err)
	}
	return nil
}

// backoff returns the delay before restart number n (1-based): min doubled
// n-1 times, capped at max, with ±20% jitter.
func backoff(minD, maxD time.Duration, n int) time.Duration {
	d := minD
	for i := 1; i < n && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	if j := int64(d) * 2 / 5; j > 0 {
		d = d - time.Duration(j/2) + time.Duration(rand.Int64N(j+1))
	}
	return min(max(d, 0), maxD)
}
