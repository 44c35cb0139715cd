package pluginrt

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/sdk"
	"github.com/magicads/r2storage/shared/storage"
)

// The test binary doubles as a plugin: with modeEnv set (through Spec.Env,
// since sdk.Launch passes no host environment) TestMain serves a misbehaving
// memstore instead of running the tests.
const (
	modeEnv   = "PLUGINRT_TEST_PLUGIN_MODE"
	secretEnv = "PLUGINRT_TEST_SECRET"
	markerEnv = "PLUGINRT_TEST_MARKER"
)

// Plugin modes.
const (
	modeOK         = "ok"           // a well-behaved memstore
	modeCrashOnPut = "crash-on-put" // Put exits the process
	modeHang       = "hang"         // never completes the handshake
	modeHealthHang = "health-hang"  // Health never answers
	modeLogSecret  = "log-secret"   // logs the secret every way it can
	modeAbortCount = "abort-count"  // AbortUploads answers with the number of keys
	modeNoAbort    = "no-abort"     // a provider without AbortUploads
	// modeCleanup: Put reads until its call ends, then logs, takes a moment
	// to clean up and writes the file markerEnv names.
	modeCleanup = "cleanup"
)

var builder plugintest.Builder

func TestMain(m *testing.M) {
	if mode := os.Getenv(modeEnv); mode != "" {
		servePlugin(mode)
		os.Exit(0)
	}
	if os.Getenv(hostModeEnv) != "" {
		actAsHost()
	}
	if os.Getenv(sleepEnv) != "" {
		select {} // a plugin process an older SDK left running
	}
	code := m.Run()
	builder.Cleanup()
	os.Exit(code)
}

// testProvider is memstore made to misbehave as its mode says.
type testProvider struct {
	*memstore.Store
	mode   string
	secret string
	log    hclog.Logger
}

func (p *testProvider) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	if p.mode == modeCrashOnPut {
		os.Exit(3)
	}
	if p.mode == modeCleanup {
		_, err := io.Copy(io.Discard, r)
		// As a provider aborting a multipart upload does: it logs (to a
		// host that may be gone), takes a moment, then is done.
		p.log.Warn("put cut; cleaning up", "key", key, "err", err)
		time.Sleep(300 * time.Millisecond)
		if m := os.Getenv(markerEnv); m != "" {
			os.WriteFile(m, []byte("cleaned up "+key), 0o600)
		}
		return storage.ObjectInfo{}, &storage.Error{Code: storage.Canceled, Message: "put cut"}
	}
	return p.Store.Put(ctx, key, r, opts)
}

func (p *testProvider) Health(ctx context.Context) (storage.Health, error) {
	if p.mode == modeHealthHang {
		<-ctx.Done()
		return storage.Health{}, ctx.Err()
	}
	return p.Store.Health(ctx)
}

func (p *testProvider) Configure(ctx context.Context, s storage.Settings) (storage.ConfigureResult, error) {
	if p.mode == modeLogSecret {
		v, _ := s["secret_access_key"].(string)
		p.log.Warn("configure-marker: configuring with "+v, "secret_access_key", v, "settings", s)
		// After Serve, plain prints travel over go-plugin's stdio stream.
		fmt.Fprintln(os.Stdout, "stdout-marker: "+v)
		fmt.Fprintln(os.Stderr, "stderr-marker: "+v)
		return storage.ConfigureResult{}, nil
	}
	return p.Store.Configure(ctx, s)
}

func (p *testProvider) AbortUploads(ctx context.Context, keys []string) (int, error) {
	n, err := p.Store.AbortUploads(ctx, keys)
	if err == nil && p.mode == modeAbortCount {
		n = len(keys)
	}
	return n, err
}

func servePlugin(mode string) {
	logger := sdk.Logger("testplugin")
	p := &testProvider{Store: memstore.New(""), mode: mode, secret: os.Getenv(secretEnv), log: logger}
	switch mode {
	case modeHang:
		time.Sleep(time.Hour)
	case modeLogSecret:
		// A raw (non-JSON) stderr line, then hclog JSON lines with the secret
		// in the message, a value, a nested value, a key and a list.
		fmt.Fprintln(os.Stderr, "raw-marker: secret is "+p.secret)
		logger.Info("startup-marker: secret is "+p.secret,
			"token", p.secret,
			"nested", map[string]any{"inner": "x" + p.secret + "y", "list": []string{p.secret}},
			p.secret, "as-a-key",
			"err", fmt.Errorf("wrapped %s", p.secret))
	}
	if mode == modeNoAbort {
		// Only storage.Provider's methods: no AbortUploads to declare.
		sdk.Serve(struct{ storage.Provider }{p}, sdk.ServeOptions{Logger: logger})
		return
	}
	sdk.Serve(p, sdk.ServeOptions{Logger: logger})
}

// hostModeEnv makes the test binary a host that launches this binary as a
// plugin, prints "plugin-pid N" and waits to be killed. With the value
// modeCleanup, the plugin runs in that mode with a put in flight.
const hostModeEnv = "PLUGINRT_TEST_HOST_MODE"

// sleepEnv makes the test binary sleep until killed.
const sleepEnv = "PLUGINRT_TEST_SLEEP"

func actAsHost() {
	exe, err := os.Executable()
	if err != nil {
		fmt.Println("host:", err)
		os.Exit(1)
	}
	mode := "normal"
	if m := os.Getenv(hostModeEnv); m == modeCleanup {
		mode = m
	}
	c, err := sdk.Launch(context.Background(), sdk.LaunchConfig{Path: exe, Env: []string{modeEnv + "=" + mode, markerEnv + "=" + os.Getenv(markerEnv), "GORACE=atexit_sleep_ms=0"}})
	if err != nil {
		fmt.Println("host:", err)
		os.Exit(1)
	}
	if mode == modeCleanup {
		// A put in flight whose bytes never end: the plugin is inside Put
		// when this host dies.
		pr, _ := io.Pipe()
		go c.Put(context.Background(), "images/a.png", pr, storage.PutOptions{Size: -1})
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Println("plugin-pid", c.Pid())
	select {}
}

// processLive reports whether pid runs (a zombie, exited but not yet
// reaped, does not).
func processLive(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// selfSpec runs this test binary as plugin id in mode.
func selfSpec(t *testing.T, id, mode string, env ...string) Spec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// GORACE: a race-enabled process otherwise sleeps 1s when it exits.
	env = append([]string{modeEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"}, env...)
	return Spec{ID: id, Path: exe, SHA256: fileSHA256(t, exe), Env: env}
}

// fileSHA256 is the checksum an install would record.
func fileSHA256(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return sum[:]
}

// newRuntime returns a runtime logging to a buffer, closed at cleanup.
func newRuntime(t *testing.T, opts Options) (*Runtime, *plugintest.Logs) {
	t.Helper()
	logs := &plugintest.Logs{}
	if opts.Logger == nil {
		opts.Logger = hclog.New(&hclog.LoggerOptions{Name: "host", Output: logs, Level: hclog.Trace})
	}
	r := New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	})
	return r, logs
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitState waits until the plugin is in state and returns its status.
func waitState(t *testing.T, r *Runtime, id string, state State, timeout time.Duration) Status {
	t.Helper()
	var st Status
	waitFor(t, timeout, fmt.Sprintf("plugin %s to be %s", id, state), func() bool {
		st, _ = r.Status(id)
		return st.State == state
	})
	return st
}

// processExists reports whether pid is still a process (a zombie counts).
func processExists(pid int) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	return err == nil
}

// children lists the processes (zombies included) whose parent is this one.
func children(t *testing.T) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	var out []string
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:]) // state, ppid, ...
		if len(fields) >= 2 && fields[1] == self {
			out = append(out, s[:i+1]+" "+fields[0])
		}
	}
	return out
}

// noChildren fails the test if a child process is left.
func noChildren(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := children(t)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left: %v", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stateLog records OnState notifications.
type stateLog struct {
	mu     sync.Mutex
	states []Status
}

func (l *stateLog) record(_ string, s Status) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.states = append(l.states, s)
}

func (l *stateLog) names() []State {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]State, 0, len(l.states))
	for _, s := range l.states {
		out = append(out, s.State)
	}
	return out
}

func (l *stateLog) all() []Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Status(nil), l.states...)
}
