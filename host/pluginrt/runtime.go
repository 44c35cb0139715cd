// Package pluginrt is the host's plugin runtime: it launches storage-provider
// plugins (via sdk.Launch, checksum pinned), supervises them (crash and hang
// detection, restart with backoff, a crash-loop breaker) and hands out stable
// storage.Provider handles that always reach the currently running process.
//
// It follows Mattermost's plugin supervisor (health checks, restart, give up
// after repeated crashes) and Vault's plugin catalog (the sha256 recorded at
// install is checked by go-plugin at every launch and never recomputed here).
package pluginrt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/magicads/r2storage/shared/storage"
)

// Spec says which plugin binary to run under which id.
type Spec struct {
	// ID names the plugin, for example "cloudflare-r2".
	ID string
	// Path is the plugin binary.
	Path string
	// SHA256 is the binary's checksum as recorded at install; go-plugin
	// refuses to start a binary that does not match. Required (32 bytes).
	SHA256 []byte
	// Env is extra environment (KEY=VALUE) for the plugin process, which
	// otherwise inherits nothing from the host.
	Env []string
}

// State is where a supervised plugin is in its life cycle.
type State string

// The states of a plugin.
const (
	// StateStarting: the first launch after Start is in progress.
	StateStarting State = "starting"
	// StateRunning: the plugin is up and calls reach it.
	StateRunning State = "running"
	// StateRestarting: the plugin crashed or failed to start; a relaunch is pending or in progress.
	StateRestarting State = "restarting"
	// StateFailed: the crash-loop breaker tripped (or the binary is refused); no more restarts until Start.
	StateFailed State = "failed"
	// StateStopped: Stop or Close ended the plugin.
	StateStopped State = "stopped"
)

// Status is a snapshot of a supervised plugin.
type Status struct {
	// State is the current state.
	State State
	// Restarts counts the relaunches after a crash or failed start since Start.
	Restarts int
	// LastError is the last crash or start failure, secrets redacted; "" if none.
	LastError string
	// Pid is the plugin process id while running, else 0.
	Pid int
	// Since is when the plugin entered State.
	Since time.Time
}

// Options tune a Runtime; zero values take the defaults.
type Options struct {
	// StartTimeout bounds each launch handshake and each OnStart call; default 15s.
	StartTimeout time.Duration
	// HealthInterval is how often a running plugin is pinged (go-plugin Ping,
	// then the Health RPC), each with a timeout of min(HealthInterval, 5s);
	// two failed checks in a row count as a crash. Default 10s.
	HealthInterval time.Duration
	// BackoffMin is the first restart delay; it doubles (with jitter) per
	// consecutive failure up to BackoffMax. Defaults 500ms and 30s.
	BackoffMin time.Duration
	// BackoffMax caps the restart delay; default 30s.
	BackoffMax time.Duration
	// CrashLimit crashes within CrashWindow put a plugin in StateFailed; default 3.
	CrashLimit int
	// CrashWindow is the breaker's window; default 10 minutes.
	CrashWindow time.Duration
	// Logger is the host logger; each plugin logs under Named(id). nil discards.
	Logger hclog.Logger
	// Redact returns the current secret values to scrub from every log line
	// and error the runtime produces (plugin log lines included); may be nil.
	Redact func() []string
	// OnStart is called after every (re)start, before calls are routed to the
	// plugin, e.g. to Configure it; an error counts as a failed start. Its ctx
	// ends after StartTimeout; it must not call Start, Stop or Close.
	OnStart func(ctx context.Context, id string, p storage.Provider) error
	// PidDir keeps a pid file per running plugin, so a host restarted after
	// being killed stops the plugin processes it left (Linux /proc); ""
	// keeps none.
	PidDir string
	// OnState is told of every state change, in order, from the plugin's
	// supervisor; it must not call Start, Stop or Close. May be nil.
	OnState func(id string, s Status)
	// OnCall is told of every call a Provider handle made to a running
	// plugin: the method ("put", "configure", …) and how long it took.
	// It must return quickly. May be nil.
	OnCall func(id, method string, d time.Duration)
}

// Defaults of Options.
const (
	// DefaultStartTimeout is the default Options.StartTimeout.
	DefaultStartTimeout = 15 * time.Second
	// DefaultHealthInterval is the default Options.HealthInterval.
	DefaultHealthInterval = 10 * time.Second
	// DefaultBackoffMin is the default Options.BackoffMin.
	DefaultBackoffMin = 500 * time.Millisecond
	// DefaultBackoffMax is the default Options.BackoffMax.
	DefaultBackoffMax = 30 * time.Second
	// DefaultCrashLimit is the default Options.CrashLimit.
	DefaultCrashLimit = 3
	// DefaultCrashWindow is the default Options.CrashWindow.
	DefaultCrashWindow = 10 * time.Minute
)

// maxHealthTimeout caps the timeout of one health check.
const maxHealthTimeout = 5 * time.Second

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("plugin runtime is closed")

// ErrUnknownPlugin is returned by Stop for an id that was never started.
var ErrUnknownPlugin = errors.New("unknown plugin")

// ErrInvalidSpec is wrapped by Start's error for a spec it cannot run.
var ErrInvalidSpec = errors.New("invalid plugin spec")

// Runtime supervises plugin processes. Its methods are safe for concurrent use.
type Runtime struct {
	opts Options
	log  hclog.Logger

	mu      sync.Mutex
	plugins map[string]*supervisor
	closed  bool
}

// New returns a Runtime with opts, defaults filled in.
func New(opts Options) *Runtime {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = DefaultHealthInterval
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = DefaultBackoffMin
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = DefaultBackoffMax
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = opts.BackoffMin
	}
	if opts.CrashLimit <= 0 {
		opts.CrashLimit = DefaultCrashLimit
	}
	if opts.CrashWindow <= 0 {
		opts.CrashWindow = DefaultCrashWindow
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	return &Runtime{
		opts:    opts,
		log:     newRedactingLogger(opts.Logger, opts.Redact),
		plugins: map[string]*supervisor{},
	}
}

func validateSpec(spec Spec) error {
	switch {
	case spec.ID == "":
		return fmt.Errorf("%w: no id", ErrInvalidSpec)
	case spec.Path == "":
		return fmt.Errorf("%w: plugin %s: no binary path", ErrInvalidSpec, spec.ID)
	case len(spec.SHA256) != 32:
		return fmt.Errorf("%w: plugin %s: the sha256 recorded at install must be 32 bytes, got %d", ErrInvalidSpec, spec.ID, len(spec.SHA256))
	}
	return nil
}

// Start launches the plugin and supervises it. It returns the first launch's
// error (launch, checksum or OnStart); after a failure the supervisor keeps
// retrying with backoff unless the breaker trips or the checksum was refused.
// Starting an id that is already supervised stops that plugin first and
// replaces it, with a fresh crash history.
func (r *Runtime) Start(ctx context.Context, spec Spec) error {
	if err := validateSpec(spec); err != nil {
		return err
	}
	spec.SHA256 = append([]byte(nil), spec.SHA256...)
	spec.Env = append([]string(nil), spec.Env...)

	r.mu.Lock()
	_, known := r.plugins[spec.ID]
	r.mu.Unlock()
	if !known {
		// A process an earlier host left (never one of ours: stopStray
		// checks), stopped outside the lock: it may take seconds.
		r.stopStray(spec.ID)
	}

	r.mu.Lock()
	for {
		if r.closed {
			r.mu.Unlock()
			return fmt.Errorf("start plugin %s: %w", spec.ID, ErrClosed)
		}
		old := r.plugins[spec.ID]
		if old == nil || old.loopDone() {
			break
		}
		r.mu.Unlock()
		if err := old.stop(ctx); err != nil {
			return fmt.Errorf("start plugin %s: stopping the running instance: %w", spec.ID, err)
		}
		r.mu.Lock()
	}
	s := newSupervisor(r, spec)
	r.plugins[spec.ID] = s
	firstCtx, cancelFirst := context.WithCancel(ctx)
	stopFirst := context.AfterFunc(s.ctx, cancelFirst)
	first := make(chan error, 1)
	go s.run(firstCtx, first)
	r.mu.Unlock()

	err := <-first
	stopFirst()
	cancelFirst()
	if err != nil {
		return fmt.Errorf("start plugin %s: %w", spec.ID, err)
	}
	return nil
}

// Provider returns a stable handle for the plugin id: every call goes to the
// process running at that moment. While the plugin is not running (starting,
// restarting, failed, stopped, or the id is unknown) calls fail at once with
// a *storage.Error of code storage.Unavailable. The handle also implements
// the optional storage.UploadAborter, answering Unimplemented when the
// running plugin does not declare it.
func (r *Runtime) Provider(id string) storage.Provider {
	return &handle{rt: r, id: id}
}

// Status returns the plugin's status, and false for an unknown id.
func (r *Runtime) Status(id string) (Status, bool) {
	s := r.lookup(id)
	if s == nil {
		return Status{}, false
	}
	return s.snapshot(), true
}

// Stop stops the plugin and its supervisor; it stays known in StateStopped.
// It waits for the process to end, or for ctx.
func (r *Runtime) Stop(ctx context.Context, id string) error {
	s := r.lookup(id)
	if s == nil {
		return fmt.Errorf("stop plugin %s: %w", id, ErrUnknownPlugin)
	}
	if err := s.stop(ctx); err != nil {
		return fmt.Errorf("stop plugin %s: %w", id, err)
	}
	return nil
}

// Close stops every plugin and waits until their processes have ended (or
// ctx ends). Start fails afterwards.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	sups := make([]*supervisor, 0, len(r.plugins))
	for _, s := range r.plugins {
		sups = append(sups, s)
	}
	r.mu.Unlock()

	errs := make([]error, len(sups))
	var wg sync.WaitGroup
	for i, s := range sups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.stop(ctx); err != nil {
				errs[i] = fmt.Errorf("stop plugin %s: %w", s.id, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *Runtime) lookup(id string) *supervisor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.plugins[id]
}
