package pluginrt

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/magicads/r2storage/plugin/r2"
	"github.com/magicads/r2storage/shared/sdk"
	"github.com/magicads/r2storage/shared/storage"
)

// wantUnavailable fails unless err is an Unavailable *storage.Error whose
// message contains want.
func wantUnavailable(t *testing.T, err error, want string) {
	t.Helper()
	var se *storage.Error
	if !errors.As(err, &se) || se.Code != storage.Unavailable {
		t.Fatalf("got %v (code %v), want an Unavailable *storage.Error", err, storage.Code(err))
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func TestRealR2PluginBehindHandle(t *testing.T) {
	bin := builder.Build(t, "./plugin/cmd/cloudflare-r2")
	var starts atomic.Int32
	r, _ := newRuntime(t, Options{OnStart: func(ctx context.Context, id string, p storage.Provider) error {
		starts.Add(1)
		_, err := p.Describe(ctx)
		return err
	}})
	ctx := context.Background()
	if err := r.Start(ctx, Spec{ID: r2.ID, Path: bin, SHA256: fileSHA256(t, bin)}); err != nil {
		t.Fatal(err)
	}
	st, ok := r.Status(r2.ID)
	if !ok || st.State != StateRunning || st.Pid == 0 || !processExists(st.Pid) || st.Restarts != 0 {
		t.Fatalf("status after start: %+v (known %v)", st, ok)
	}
	if n := starts.Load(); n != 1 {
		t.Fatalf("OnStart called %d times", n)
	}
	h := r.Provider(r2.ID)
	info, err := h.Describe(ctx)
	if err != nil || info.ID != r2.ID {
		t.Fatalf("describe via handle: %+v, %v", info, err)
	}
	if hl, err := h.Health(ctx); err != nil || !hl.OK || hl.Configured {
		t.Fatalf("health via handle: %+v, %v", hl, err)
	}

	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
	if processExists(st.Pid) {
		t.Fatalf("plugin process %d still exists after Close", st.Pid)
	}
	noChildren(t)
	if st, _ := r.Status(r2.ID); st.State != StateStopped || st.Pid != 0 {
		t.Fatalf("status after close: %+v", st)
	}
	_, err = h.Describe(ctx)
	wantUnavailable(t, err, "plugin cloudflare-r2 is stopped")
	if err := r.Start(ctx, Spec{ID: r2.ID, Path: bin, SHA256: fileSHA256(t, bin)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("start after close: %v", err)
	}
}

func TestKilledPluginRestarts(t *testing.T) {
	var starts atomic.Int32
	states := &stateLog{}
	r, _ := newRuntime(t, Options{
		BackoffMin: 400 * time.Millisecond, BackoffMax: time.Second,
		OnStart: func(context.Context, string, storage.Provider) error { starts.Add(1); return nil },
		OnState: states.record,
	})
	ctx := context.Background()
	if err := r.Start(ctx, selfSpec(t, "mem", modeOK)); err != nil {
		t.Fatal(err)
	}
	h := r.Provider("mem")
	st1, _ := r.Status("mem")

	// Callers keep using the handle through the crash and restart: every
	// error they see must be Unavailable (or NotFound for a Stat).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var unexpected atomic.Value
	var calls, failures atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("g%d/%d", g, i)
				var err error
				switch i % 3 {
				case 0:
					_, err = h.Describe(ctx)
				case 1:
					_, err = h.Put(ctx, key, strings.NewReader("hello"), storage.PutOptions{Size: 5})
				default:
					if _, err = h.Stat(ctx, key); storage.IsNotFound(err) {
						err = nil
					}
				}
				calls.Add(1)
				if err != nil {
					failures.Add(1)
					if !storage.IsRetryable(err) {
						unexpected.CompareAndSwap(nil, err)
					}
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}

	if st1.Pid <= 0 {
		t.Fatalf("no plugin process to kill (pid %d)", st1.Pid)
	}
	if err := syscall.Kill(st1.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, r, "mem", StateRestarting, 2*time.Second)
	if !strings.Contains(st.LastError, "exited") {
		t.Fatalf("last error while restarting: %q", st.LastError)
	}
	begin := time.Now()
	_, err := h.Describe(ctx)
	if d := time.Since(begin); d > 200*time.Millisecond {
		t.Fatalf("a call while restarting took %s", d)
	}
	wantUnavailable(t, err, "plugin mem is restarting: plugin process exited")

	waitFor(t, 5*time.Second, "a new running process", func() bool {
		st, _ = r.Status("mem")
		return st.State == StateRunning && st.Pid != st1.Pid
	})
	if processExists(st1.Pid) {
		t.Fatalf("killed process %d still exists", st1.Pid)
	}
	if st.Restarts != 1 || starts.Load() != 2 {
		t.Fatalf("restarts %d, OnStart calls %d; want 1 and 2", st.Restarts, starts.Load())
	}
	if info, err := h.Describe(ctx); err != nil || info.ID != "memory" {
		t.Fatalf("describe after restart: %+v, %v", info, err)
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err, _ := unexpected.Load().(error); err != nil {
		t.Fatalf("a caller saw a non-retryable error: %v (code %v)", err, storage.Code(err))
	}
	if calls.Load() == 0 || failures.Load() == 0 {
		t.Fatalf("%d calls, %d failures: the callers did not run through the restart", calls.Load(), failures.Load())
	}
	want := []State{StateStarting, StateRunning, StateRestarting, StateRunning}
	if got := states.names(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("state changes %v, want %v", got, want)
	}
}

func TestCrashLoopTripsBreaker(t *testing.T) {
	states := &stateLog{}
	r, _ := newRuntime(t, Options{
		BackoffMin: 20 * time.Millisecond, BackoffMax: 80 * time.Millisecond,
		CrashLimit: 3, CrashWindow: 5 * time.Second,
		OnState: states.record,
	})
	ctx := context.Background()
	if err := r.Start(ctx, selfSpec(t, "crashy", modeCrashOnPut)); err != nil {
		t.Fatal(err)
	}
	h := r.Provider("crashy")
	lastPid := 0
	for i := 0; i < 3; i++ {
		waitFor(t, 5*time.Second, "a new running process", func() bool {
			st, _ := r.Status("crashy")
			return st.State == StateRunning && st.Pid != lastPid
		})
		st, _ := r.Status("crashy")
		lastPid = st.Pid
		_, err := h.Put(ctx, "k", strings.NewReader("x"), storage.PutOptions{Size: 1})
		if !storage.IsRetryable(err) {
			t.Fatalf("put %d: %v (code %v), want Unavailable", i, err, storage.Code(err))
		}
	}
	st := waitState(t, r, "crashy", StateFailed, 5*time.Second)
	const want = "crashed 3 times in 5s; last: plugin process exited"
	if st.LastError != want || st.Restarts != 2 || st.Pid != 0 {
		t.Fatalf("failed status %+v, want LastError %q and 2 restarts", st, want)
	}
	_, err := h.Describe(ctx)
	wantUnavailable(t, err, "plugin crashy is failed: "+want)

	// No more restarts until an admin starts it again.
	time.Sleep(300 * time.Millisecond)
	if st2, _ := r.Status("crashy"); st2 != st {
		t.Fatalf("status changed after failing: %+v -> %+v", st, st2)
	}
	noChildren(t)
	wantStates := []State{StateStarting, StateRunning, StateRestarting, StateRunning, StateRestarting, StateRunning, StateFailed}
	if got := states.names(); fmt.Sprint(got) != fmt.Sprint(wantStates) {
		t.Fatalf("state changes %v, want %v", got, wantStates)
	}

	if err := r.Start(ctx, selfSpec(t, "crashy", modeCrashOnPut)); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.Status("crashy"); st.State != StateRunning || st.Restarts != 0 || st.LastError != "" {
		t.Fatalf("status after the admin restart: %+v", st)
	}
	if _, err := h.Describe(ctx); err != nil {
		t.Fatalf("describe after the admin restart: %v", err)
	}
}

func TestWrongChecksumIsRefused(t *testing.T) {
	r, _ := newRuntime(t, Options{BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	spec := selfSpec(t, "tampered", modeOK)
	other := sha256.Sum256([]byte("the binary that was installed"))
	spec.SHA256 = other[:]
	err := r.Start(context.Background(), spec)
	if !errors.Is(err, plugin.ErrChecksumsDoNotMatch) || !errors.Is(err, sdk.ErrLaunch) {
		t.Fatalf("start: %v, want go-plugin's checksum mismatch", err)
	}
	if !strings.Contains(err.Error(), "checksums did not match") {
		t.Fatalf("error does not say the checksum is wrong: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // no retry may happen
	st, _ := r.Status("tampered")
	if st.State != StateFailed || st.Restarts != 0 || !strings.Contains(st.LastError, "does not match the sha256 recorded at install") {
		t.Fatalf("status: %+v", st)
	}
	noChildren(t)
	_, err = r.Provider("tampered").Describe(context.Background())
	wantUnavailable(t, err, "plugin tampered is failed: refused")

	spec.SHA256 = []byte{1, 2, 3}
	if err := r.Start(context.Background(), spec); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("short sha256: %v", err)
	}
	for _, bad := range []Spec{{Path: "x", SHA256: other[:]}, {ID: "x", SHA256: other[:]}, {ID: "x", Path: "x"}} {
		if err := r.Start(context.Background(), bad); !errors.Is(err, ErrInvalidSpec) {
			t.Fatalf("spec %+v: %v", bad, err)
		}
	}
}

func TestHandshakeTimeout(t *testing.T) {
	r, _ := newRuntime(t, Options{StartTimeout: 500 * time.Millisecond, CrashLimit: 1})
	begin := time.Now()
	err := r.Start(context.Background(), selfSpec(t, "mute", modeHang))
	if err == nil || !errors.Is(err, sdk.ErrLaunch) || !strings.Contains(err.Error(), "timeout while waiting for plugin to start") {
		t.Fatalf("start: %v, want a start timeout", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("start took %s", d)
	}
	st, _ := r.Status("mute")
	if st.State != StateFailed || !strings.Contains(st.LastError, "crashed 1 times in 10m0s; last: plugin launch failed") {
		t.Fatalf("status: %+v", st)
	}
	noChildren(t)
}

func TestFailedHealthChecksCountAsCrashes(t *testing.T) {
	r, _ := newRuntime(t, Options{
		HealthInterval: 150 * time.Millisecond,
		BackoffMin:     20 * time.Millisecond, BackoffMax: 40 * time.Millisecond,
		CrashLimit: 2, CrashWindow: time.Minute,
	})
	if err := r.Start(context.Background(), selfSpec(t, "stuck", modeHealthHang)); err != nil {
		t.Fatal(err)
	}
	st1, _ := r.Status("stuck")
	st := waitState(t, r, "stuck", StateFailed, 10*time.Second)
	if st.Restarts != 1 || !strings.Contains(st.LastError, "crashed 2 times in 1m0s; last: health check failed 2 times in a row: ") {
		t.Fatalf("status: %+v", st)
	}
	if processExists(st1.Pid) {
		t.Fatalf("hung process %d was not killed", st1.Pid)
	}
	noChildren(t)
}

func TestSecretsNeverReachTheHostLog(t *testing.T) {
	buf := make([]byte, 12)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	secret := "s3cr3t-" + hex.EncodeToString(buf)
	var starts atomic.Int32
	states := &stateLog{}
	r, logs := newRuntime(t, Options{
		BackoffMin: 20 * time.Millisecond, BackoffMax: 40 * time.Millisecond,
		Redact: func() []string { return []string{"", secret} },
		OnStart: func(ctx context.Context, _ string, p storage.Provider) error {
			if _, err := p.Configure(ctx, storage.Settings{"secret_access_key": secret}); err != nil {
				return err
			}
			if starts.Add(1) == 1 {
				return fmt.Errorf("the key %s was refused", secret)
			}
			return nil
		},
		OnState: states.record,
	})
	err := r.Start(context.Background(), selfSpec(t, "leaky", modeLogSecret, secretEnv+"="+secret))
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "the key [redacted] was refused") {
		t.Fatalf("start error: %v", err)
	}
	waitState(t, r, "leaky", StateRunning, 5*time.Second)
	waitFor(t, 5*time.Second, "the plugin's log lines", func() bool {
		l := logs.String()
		return strings.Count(l, "startup-marker") >= 2 && strings.Count(l, "configure-marker") >= 2 && strings.Count(l, "raw-marker") >= 2 &&
			strings.Contains(l, "stdout-marker") && strings.Contains(l, "stderr-marker")
	})
	l := logs.String()
	if strings.Contains(l, secret) {
		t.Fatalf("the secret reached the host log:\n%s", l)
	}
	for _, want := range []string{
		"startup-marker: secret is [redacted]",
		"token=[redacted]",
		"inner:x[redacted]y",
		"[redacted]=as-a-key",
		"err=\"wrapped [redacted]\"",
		"raw-marker: secret is [redacted]",
		"configure-marker: configuring with [redacted]",
		"secret_access_key=[redacted]",
		"stdout-marker: [redacted]",
		"stderr-marker: [redacted]",
		"host.leaky.",
	} {
		if !strings.Contains(l, want) {
			t.Errorf("host log lacks %q", want)
		}
	}
	for _, s := range states.all() {
		if strings.Contains(s.LastError, secret) {
			t.Fatalf("status carries the secret: %+v", s)
		}
	}
	if t.Failed() {
		t.Logf("host log:\n%s", l)
	}
}

func TestStopReplaceAndUnknown(t *testing.T) {
	r, _ := newRuntime(t, Options{})
	ctx := context.Background()
	if err := r.Start(ctx, selfSpec(t, "a", modeOK)); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, selfSpec(t, "b", modeOK)); err != nil {
		t.Fatal(err)
	}
	a1, _ := r.Status("a")
	h := r.Provider("a")
	if _, err := h.Put(ctx, "k", strings.NewReader("v"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}

	// Starting a running id replaces it: a new process behind the same handle.
	if err := r.Start(ctx, selfSpec(t, "a", modeOK)); err != nil {
		t.Fatal(err)
	}
	a2, _ := r.Status("a")
	if a2.State != StateRunning || a2.Pid == a1.Pid || processExists(a1.Pid) {
		t.Fatalf("replaced: old %+v new %+v (old exists %v)", a1, a2, processExists(a1.Pid))
	}
	if _, err := h.Stat(ctx, "k"); !storage.IsNotFound(err) {
		t.Fatalf("stat on the new process: %v", err)
	}

	if err := r.Stop(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.Status("a"); st.State != StateStopped || processExists(a2.Pid) {
		t.Fatalf("after stop: %+v", st)
	}
	_, err := h.Describe(ctx)
	wantUnavailable(t, err, "plugin a is stopped")
	if err := r.Stop(ctx, "a"); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if b, _ := r.Status("b"); b.State != StateRunning {
		t.Fatalf("b: %+v", b)
	}

	if err := r.Stop(ctx, "nope"); !errors.Is(err, ErrUnknownPlugin) {
		t.Fatalf("stop unknown: %v", err)
	}
	if _, ok := r.Status("nope"); ok {
		t.Fatal("status of an unknown id")
	}
	_, err = r.Provider("nope").Describe(ctx)
	wantUnavailable(t, err, "plugin nope is unknown")

	b, _ := r.Status("b")
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if processExists(b.Pid) {
		t.Fatalf("process %d left after Close", b.Pid)
	}
	noChildren(t)
}

// TestCloseDuringFirstLaunch closes the runtime while a plugin has not
// finished its handshake. go-plugin holds its client lock for the whole
// handshake, so sdk.Launch can only kill the process once StartTimeout ends:
// Close waits that long, then no process is left.
func TestCloseDuringFirstLaunch(t *testing.T) {
	r, _ := newRuntime(t, Options{StartTimeout: time.Second})
	errc := make(chan error, 1)
	spec := selfSpec(t, "slow", modeHang)
	go func() { errc <- r.Start(context.Background(), spec) }()
	waitFor(t, 2*time.Second, "the launch to begin", func() bool { return len(children(t)) > 0 })
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, errStopped) {
			t.Fatalf("start: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Start did not return after Close")
	}
	if st, _ := r.Status("slow"); st.State != StateStopped {
		t.Fatalf("status %+v", st)
	}
	noChildren(t)
}

// TestPluginExitsWhenItsHostIsKilled: a plugin whose host is SIGKILLed
// (no chance to stop it) notices it has been re-parented and exits within
// seconds, instead of living on beside the next host's plugin.
func TestPluginExitsWhenItsHostIsKilled(t *testing.T) {
	killHostAndWatchPlugin(t, "1", "")
}

// TestPluginCleansUpWhenItsHostIsKilled: a plugin inside a Put when its
// host is SIGKILLed gets its call cancelled and finishes cleaning up (as
// aborting a multipart upload) before it exits, although the log lines it
// writes meanwhile go to a pipe nobody reads any more.
func TestPluginCleansUpWhenItsHostIsKilled(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "cleaned")
	killHostAndWatchPlugin(t, modeCleanup, marker)
	if data, err := os.ReadFile(marker); err != nil {
		t.Fatalf("the plugin exited without finishing its cleanup: %v", err)
	} else {
		t.Logf("plugin: %s", data)
	}
}

// killHostAndWatchPlugin starts this binary as a host (hostModeEnv=mode)
// that launches a plugin, SIGKILLs the host and waits for the plugin to
// exit, within 10 s.
func killHostAndWatchPlugin(t *testing.T, mode, marker string) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	host := exec.Command(exe)
	host.Env = append(os.Environ(), hostModeEnv+"="+mode, markerEnv+"="+marker)
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var pid int
	select {
	case line := <-lines:
		if _, err := fmt.Sscanf(line, "plugin-pid %d", &pid); err != nil {
			host.Process.Kill()
			t.Fatalf("the host said %q", line)
		}
	case <-time.After(30 * time.Second):
		host.Process.Kill()
		t.Fatal("the host did not launch its plugin")
	}
	t.Cleanup(func() {
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if !processLive(pid) {
		t.Fatalf("plugin %d is not running", pid)
	}
	host.Process.Kill()
	host.Wait()
	killed := time.Now()
	for processLive(pid) {
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("plugin %d still runs 10 s after its host was killed", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the plugin exited %v after its host was killed", time.Since(killed).Round(100*time.Millisecond))
}

// TestStopLetsCallsCleanUp: stopping a plugin with a call in flight is
// graceful: the plugin exits by itself (not killed after go-plugin's 2 s)
// and the cancelled call finishes cleaning up first.
func TestStopLetsCallsCleanUp(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "cleaned")
	r, logs := newRuntime(t, Options{})
	if err := r.Start(context.Background(), selfSpec(t, "p", modeCleanup, markerEnv+"="+marker)); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	go r.Provider("p").Put(context.Background(), "images/a.png", pr, storage.PutOptions{Size: -1})
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if err := r.Stop(context.Background(), "p"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the stopped plugin did not finish cleaning up: %v", err)
	}
	if strings.Contains(logs.String(), "plugin failed to exit gracefully") || strings.Contains(logs.String(), "signal: killed") {
		t.Errorf("the plugin had to be killed (stop took %v):\n%s", took, logs.String())
	}
	t.Logf("stop took %v", took.Round(10*time.Millisecond))
}

// TestStrayPluginStoppedOnStart: a plugin process an earlier, killed host
// left running (one built with an SDK that does not notice) is stopped
// before the plugin is launched again, while a pid file whose pid now names
// another program leaves that program alone.
func TestStrayPluginStoppedOnStart(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	startSleeper := func(path string, args ...string) *exec.Cmd {
		cmd := exec.Command(path, args...)
		cmd.Env = append(os.Environ(), sleepEnv+"=1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	stray := startSleeper(exe)
	other := startSleeper("/bin/sleep", "60")
	pidDir := t.TempDir()
	write := func(id string, cmd *exec.Cmd, path string) {
		start, err := processStart(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(pidDir, id+".pid"), []byte(fmt.Sprintf("%d %d %s\n", cmd.Process.Pid, start, path)), 0o600)
	}
	write("stray", stray, exe)
	write("reused", other, exe) // the pid names /bin/sleep now, not the plugin binary

	r, _ := newRuntime(t, Options{PidDir: pidDir})
	for _, id := range []string{"stray", "reused"} {
		if err := r.Start(context.Background(), selfSpec(t, id, "normal")); err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
	}
	waited := make(chan error, 1)
	go func() { waited <- stray.Wait() }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the stray plugin process still runs after the plugin started again")
	}
	if !processLive(other.Process.Pid) {
		t.Fatal("a process whose pid a stale pid file named was killed")
	}
	st, _ := r.Status("stray")
	pid, _, path, err := readPidFile(filepath.Join(pidDir, "stray.pid"))
	if err != nil || pid != st.Pid || path != exe {
		t.Fatalf("pid file of the new process: %d %q %v (running %d)", pid, path, err, st.Pid)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(pidDir); len(left) != 0 {
		t.Fatalf("pid files left after Close: %v", left)
	}
}
