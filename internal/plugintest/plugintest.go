// Package plugintest builds and launches the real plugin binary for tests.
package plugintest

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/magicads/r2storage/shared/sdk"
)

// Builder builds a Go main package once per test binary.
type Builder struct {
	// Flags are extra go build flags, such as -ldflags.
	Flags []string

	once sync.Once
	path string
	err  error
	out  string
}

// Build compiles pkg (an import path under this module, such as
// "./plugin/cmd/cloudflare-r2") into a temporary directory and returns the
// binary's path. Later calls return the same binary. The directory is
// removed by Cleanup.
func (b *Builder) Build(t testing.TB, pkg string) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "magicads-plugin-build-")
		if err != nil {
			b.err = err
			return
		}
		name := filepath.Base(pkg)
		if runtime.GOOS == "windows" {
			name += ".exe"
		}
		b.path = filepath.Join(dir, name)
		args := append([]string{"build", "-o", b.path}, b.Flags...)
		cmd := exec.Command("go", append(args, pkg)...)
		cmd.Dir = ModuleRoot(t)
		out, err := cmd.CombinedOutput()
		b.out, b.err = string(out), err
	})
	if b.err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, b.err, b.out)
	}
	return b.path
}

// BuildAt builds main package pkg (such as "./plugin/cmd/cloudflare-r2")
// as it is at commit of this repository: it extracts the commit's tree
// with git archive into a temporary directory and runs go build there, so
// the binary holds that commit's code, its SDK included. Modules come from
// the module cache, as for any build. It fails the test, never skips it,
// when git or the build fails. The directory is removed at cleanup.
func BuildAt(t testing.TB, commit, pkg string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := extractCommit(ModuleRoot(t), commit, src); err != nil {
		t.Fatalf("extracting commit %s: %v (the test needs git and the repository's history)", commit, err)
	}
	name := filepath.Base(pkg)
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s at commit %s: %v\n%s", pkg, commit, err, out)
	}
	return bin
}

// extractCommit writes the tree of commit in the git repository at repo
// into dir.
func extractCommit(repo, commit, dir string) error {
	cmd := exec.Command("git", "-C", repo, "archive", "--format=tar", commit)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git archive: %w", err)
	}
	terr := untar(out, dir)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git archive %s: %w: %s", commit, err, strings.TrimSpace(stderr.String()))
	}
	return terr
}

// untar extracts the regular files and directories of a tar stream into
// dir, refusing names that would leave it.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("archive entry %q is outside the tree", h.Name)
		}
		path := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("writing %s: %w", h.Name, err)
			}
		}
	}
}

// Cleanup removes the built binary; call it from TestMain after m.Run.
func (b *Builder) Cleanup() {
	if b.path != "" {
		os.RemoveAll(filepath.Dir(b.path))
	}
}

// ModuleRoot returns the directory holding go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// Plugin is a launched plugin and the log lines it wrote.
type Plugin struct {
	*sdk.Client
	logs *Logs
}

// Logs returns everything the plugin logged so far.
func (p *Plugin) Logs() string { return p.logs.String() }

// Launch starts the plugin binary over go-plugin and stops it at cleanup.
// The plugin's logs are kept, and shown if the test failed.
func Launch(t testing.TB, path string) *Plugin {
	t.Helper()
	logs := &Logs{}
	c, err := sdk.Launch(context.Background(), sdk.LaunchConfig{
		Path:   path,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: logs, Level: hclog.Debug}),
	})
	if err != nil {
		t.Fatalf("launching %s: %v", path, err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			t.Logf("plugin log:\n%s", logs.String())
		}
	})
	return &Plugin{Client: c, logs: logs}
}

// Logs is a concurrency-safe log buffer.
type Logs struct {
	mu  sync.Mutex
	buf strings.Builder
}

// Write appends to the buffer.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns the buffer's contents.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// PeakRSS returns a process's peak resident set size (VmHWM) in bytes, from
// /proc: Linux only.
func PeakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak RSS needs /proc: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// ProcessCPU returns the CPU time (user and system) that process pid and
// its live child processes (a host's plugins) have used so far (Linux
// /proc; clock ticks of 10 ms).
func ProcessCPU(pid int) (time.Duration, error) {
	total, err := cpuOf(pid)
	if err != nil {
		return 0, err
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, c := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(c); err == nil {
				if d, err := cpuOf(n); err == nil {
					total += d
				}
			}
		}
	}
	return total, nil
}

// cpuOf reads utime and stime of one process.
func cpuOf(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("process CPU needs /proc: %w", err)
	}
	// Fields after the command name, which ends with the last ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// Clock is a settable clock for tests (an Options.Now); safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
