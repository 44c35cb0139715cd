package pluginrt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A pid file (Options.PidDir/<id>.pid) names the process running plugin id:
// "<pid> <start time in clock ticks> <binary path>". A host killed without
// stopping its plugins leaves these behind, and the next host stops a
// process they name before it launches the plugin again, but only if that
// process is still the same one: same start time and same binary, so a pid
// reused by something else is never touched.

// pidFile is the pid file of plugin id, or "" without a PidDir.
func (r *Runtime) pidFile(id string) string {
	if r.opts.PidDir == "" {
		return ""
	}
	return filepath.Join(r.opts.PidDir, id+".pid")
}

// recordPid writes the pid file of a plugin process that started. It
// records the binary as the kernel names it (/proc/<pid>/exe: absolute,
// links resolved), which is what stopStray compares with.
func (r *Runtime) recordPid(id string, pid int) {
	file := r.pidFile(id)
	if file == "" || pid <= 0 {
		return
	}
	start, err := processStart(pid)
	var path string
	if err == nil {
		path, err = os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
	}
	if err != nil {
		r.log.Warn("cannot record the plugin's pid", "plugin", id, "error", err)
		return
	}
	if err := os.MkdirAll(r.opts.PidDir, 0o700); err == nil {
		err = os.WriteFile(file, []byte(fmt.Sprintf("%d %d %s\n", pid, start, path)), 0o600)
	}
	if err != nil {
		r.log.Warn("cannot record the plugin's pid", "plugin", id, "error", err)
	}
}

// forgetPid removes the pid file of plugin id if it names pid.
func (r *Runtime) forgetPid(id string, pid int) {
	file := r.pidFile(id)
	if file == "" {
		return
	}
	if got, _, _, err := readPidFile(file); err == nil && got == pid {
		_ = os.Remove(file)
	}
}

// stopStray stops the process an earlier host left running for plugin id
// (named by its pid file, still the same process and binary), and removes
// the pid file.
func (r *Runtime) stopStray(id string) {
	file := r.pidFile(id)
	if file == "" {
		return
	}
	pid, start, path, err := readPidFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	defer os.Remove(file)
	if err != nil {
		r.log.Warn("ignoring an unreadable plugin pid file", "plugin", id, "file", file, "error", err)
		return
	}
	if pid == os.Getpid() || r.supervises(pid) {
		return
	}
	if got, err := processStart(pid); err != nil || got != start {
		return // gone, or the pid now names another process
	}
	if exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe")); err != nil || exe != path {
		return
	}
	r.log.Warn("stopping a plugin process an earlier host left running", "plugin", id, "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got, err := processStart(pid); err != nil || got != start {
			return
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// supervises reports whether pid is a plugin process this runtime runs.
func (r *Runtime) supervises(pid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.plugins {
		if s.snapshot().Pid == pid {
			return true
		}
	}
	return false
}

// readPidFile parses a pid file.
func readPidFile(file string) (pid int, start uint64, path string, err error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, 0, "", err
	}
	f := strings.SplitN(strings.TrimSpace(string(data)), " ", 3)
	if len(f) != 3 {
		return 0, 0, "", fmt.Errorf("%s: want \"pid start path\"", file)
	}
	if pid, err = strconv.Atoi(f[0]); err != nil || pid <= 1 {
		return 0, 0, "", fmt.Errorf("%s: bad pid %q", file, f[0])
	}
	if start, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return 0, 0, "", fmt.Errorf("%s: bad start time %q", file, f[1])
	}
	return pid, start, f[2], nil
}

// processStart returns a live (not zombie) process's start time in clock
// ticks since boot (/proc/<pid>/stat field 22).
func processStart(pid int) (uint64, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d is not running", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}
