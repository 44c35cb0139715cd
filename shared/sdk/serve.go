package sdk

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// ServeOptions tune Serve; the zero value is right for most providers.
type ServeOptions struct {
	// Logger is the provider's logger; its output reaches the host's log.
	// nil uses Logger("plugin").
	Logger hclog.Logger
	// MemoryLimit is a soft limit on the plugin's Go heap in bytes
	// (runtime/debug.SetMemoryLimit); 0 keeps the runtime's default. A
	// provider that streams large objects through fixed buffers sets it so
	// garbage from passing chunks is collected before it grows the process.
	MemoryLimit int64
}

// Logger returns an hclog logger writing JSON to stderr, which go-plugin
// forwards into the host's log with levels intact. Never log a secret.
func Logger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.Info,
		Output:     os.Stderr,
		JSONFormat: true,
	})
}

// Serve runs p as a storage-provider plugin until the host stops it. It is
// the whole body of a provider's main. Run by hand, outside the host, it
// says what it is and exits with status 1.
func Serve(p Provider, opts ...ServeOptions) {
	if !launchedByHost() {
		explainAndExit(os.Stderr, p)
	}
	var o ServeOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.MemoryLimit > 0 {
		debug.SetMemoryLimit(o.MemoryLimit)
	}
	if o.Logger == nil {
		o.Logger = Logger("plugin")
	}
	// A host that died leaves stderr a broken pipe: the first log line
	// would kill the plugin with SIGPIPE before its calls cleaned up.
	signal.Ignore(syscall.SIGPIPE)
	var srv atomic.Pointer[grpc.Server]
	// More calls than workers at once still run, on new goroutines.
	streamWorkers := uint32(max(16, 4*runtime.GOMAXPROCS(0)))
	calls := &handlers{}
	go watchHost(o.Logger, &srv, calls, os.Getppid(), time.Second, hostGoneGrace)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake(),
		VersionedPlugins: VersionedPlugins(p),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			// Not grpc.WaitForHandlers: go-plugin's Shutdown call stops the
			// server from inside a handler, which would then wait for itself.
			// Stream workers: calls run on goroutines kept between calls,
			// whose stacks have already grown to what a provider call
			// needs, instead of a new goroutine growing its stack again
			// for every call (a tenth of a small upload's CPU).
			s := grpc.NewServer(append(opts, grpc.InitialWindowSize(windowSize), grpc.InitialConnWindowSize(windowSize),
				grpc.NumStreamWorkers(streamWorkers),
				grpc.ChainUnaryInterceptor(calls.unary), grpc.ChainStreamInterceptor(calls.stream))...)
			srv.Store(s)
			return s
		},
		Logger: o.Logger,
	})
	// The host stopped the plugin: cancelled calls get the grace to clean
	// up (abort a multipart upload) before the process exits.
	if !calls.wait(hostGoneGrace) {
		o.Logger.Warn("calls still running after the grace period; exiting anyway", "grace", hostGoneGrace)
	}
}

// handlers counts the gRPC calls being handled, so the plugin can wait for
// cancelled ones to finish before it exits.
type handlers struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n falls to 0; nil while n is 0
}

func (h *handlers) enter() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		h.idle = make(chan struct{})
	}
	h.n++
}

func (h *handlers) leave() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n--
	if h.n == 0 {
		close(h.idle)
		h.idle = nil
	}
}

// wait waits until no call is being handled, at most d; false on time-out.
func (h *handlers) wait(d time.Duration) bool {
	h.mu.Lock()
	idle := h.idle
	h.mu.Unlock()
	if idle == nil {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

func (h *handlers) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	h.enter()
	defer h.leave()
	return next(ctx, req)
}

func (h *handlers) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
	h.enter()
	defer h.leave()
	return next(srv, ss)
}

// hostGoneGrace is how long a plugin whose host died gives its cancelled
// calls to clean up (abort multipart uploads, remove temp files) before it
// exits.
const hostGoneGrace = 10 * time.Second

// watchHost ends the plugin soon after its host process is gone (killed
// without a chance to stop it): the plugin is then re-parented, so its
// parent pid changes. It stops the gRPC server, which cancels every call in
// flight so the provider can clean up, waits for them at most grace, and
// exits. A host that runs as PID 1 (a container) is watched all the same:
// only a change of parent counts.
func watchHost(log hclog.Logger, srv *atomic.Pointer[grpc.Server], calls *handlers, hostPid int, every, grace time.Duration) {
	for range time.Tick(every) {
		if os.Getppid() == hostPid {
			continue
		}
		log.Warn("the host process is gone; cancelling calls in flight and exiting", "host_pid", hostPid)
		if s := srv.Load(); s != nil {
			s.Stop()
		}
		if !calls.wait(grace) {
			log.Warn("calls still running after the grace period; exiting anyway", "grace", grace)
		}
		os.Exit(0)
	}
}

func launchedByHost() bool {
	return os.Getenv(magicCookieKey) == magicCookieValue
}

func explainAndExit(w io.Writer, p Provider) {
	name := "a storage provider"
	if info, err := p.Describe(context.Background()); err == nil && info.ID != "" {
		name = fmt.Sprintf("%s (%s %s)", info.Name, info.ID, info.Version)
	}
	fmt.Fprintf(w, "This program is %s, a plugin for the MagicAds host.\n"+
		"It is not meant to be run by hand: the MagicAds host starts it.\n"+
		"Install it from the admin (Admin → General Settings → Plugins), or test it with\n"+
		"  go run ./shared/cmd/conformance --plugin PATH_TO_THIS_BINARY --settings SETTINGS.json\n", name)
	os.Exit(1)
}

// ServeIfPlugin serves the provider newProvider returns and exits when this
// process was started as a plugin (by the host, by the conformance command
// or by conformance.RunPlugin); otherwise it returns at once and does
// nothing. Call it first in TestMain so a provider's own test binary can
// act as its plugin:
//
//	func TestMain(m *testing.M) {
//		sdk.ServeIfPlugin(func() sdk.Provider { return myprovider.New() })
//		os.Exit(m.Run())
//	}
func ServeIfPlugin(newProvider func() Provider, opts ...ServeOptions) {
	if !launchedByHost() {
		return
	}
	Serve(newProvider(), opts...)
	os.Exit(0)
}
