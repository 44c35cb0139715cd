//go:build linux

package app_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/internal/testdb"
)

// Bounds of the crash test. Each is what a requirement promises, with room
// for a loaded 2-core machine.
const (
	// recoverBound: after a restart, litter is gone, the killed host's
	// multipart uploads are aborted, one plugin runs and the jobs the killed
	// host had leased are done ("within seconds", well before the 1-minute
	// lease would expire by itself).
	recoverBound = 20 * time.Second
	// drainBound: the whole queue is empty once S3 is back.
	drainBound = 60 * time.Second
	// killPointBound: how long a burst may take to reach its kill moment.
	killPointBound = 45 * time.Second
)

// crashMoment is a point in a burst at which the host is SIGKILLed.
type crashMoment struct {
	name string
	// run starts the burst and returns once the moment is reached (checked
	// in the database, on disk or in versitygw); the rig kills the host then.
	run func(r *crashRig, l *crashLoad)
	// check fails the test when the frozen state after the kill does not
	// show the moment: the kill came too early or too late.
	check func(st crashState) string
}

// TestHostKilled SIGKILLs a host process (the real `magicads serve`, with
// the real R2 plugin against versitygw) at four moments of a burst, on
// SQLite and PostgreSQL, restarts it on the same data dir and database,
// and checks that nothing of the killed process is left: no interrupted
// temp or spool file, no result file without a row, no incomplete
// multipart upload, exactly one plugin process, the jobs it had leased
// done within seconds, and every result acknowledged with a 201 readable
// with the sha256 it was acknowledged with.
func TestHostKilled(t *testing.T) {
	moments := []crashMoment{
		{name: "mid-upload", run: killMidUpload, check: func(st crashState) string {
			if len(st.temp) == 0 || len(st.spool) == 0 || len(st.orphans) == 0 {
				return fmt.Sprintf("want interrupted temp files, spool files and result files without rows; got %d, %d and %d", len(st.temp), len(st.spool), len(st.orphans))
			}
			return ""
		}},
		{name: "mid-inline-offload", run: killMidInlineOffload, check: func(st crashState) string {
			if len(st.uploads) == 0 || len(st.leased) == 0 {
				return fmt.Sprintf("want multipart uploads and leased jobs; got %d and %d", len(st.uploads), len(st.leased))
			}
			return ""
		}},
		{name: "mid-queue", run: killMidQueue, check: func(st crashState) string {
			if len(st.uploads) == 0 || len(st.leased) < 2 {
				return fmt.Sprintf("want multipart uploads and at least 2 jobs leased by the workers; got %d and %d", len(st.uploads), len(st.leased))
			}
			return ""
		}},
		{name: "mid-deletes", run: killMidDeletes, check: func(st crashState) string {
			n := 0
			for _, j := range st.leased {
				if j.kind == "delete" {
					n++
				}
			}
			if n == 0 {
				return fmt.Sprintf("want leased delete jobs; got none among %d leased jobs", len(st.leased))
			}
			return ""
		}},
	}
	for _, d := range testdb.Dialects() {
		for _, m := range moments {
			t.Run(string(d)+"/"+m.name, func(t *testing.T) {
				r := newCrashRig(t, d)
				l := newCrashLoad(r)
				m.run(r, l)
				st := r.kill(l)
				t.Logf("at the kill: %s", st)
				if msg := m.check(st); msg != "" {
					t.Fatalf("the kill missed the moment %s: %s", m.name, msg)
				}
				r.recover(st, l)
			})
		}
	}
}

// killMidUpload: many POSTs stream large bodies slowly (file after the
// fields: a temp file on the results disk; file first: a spool file),
// some have their file staged and hold back their last field (a result
// file whose row is not written yet), while small and multipart-sized
// results are acknowledged.
func killMidUpload(r *crashRig, l *crashLoad) {
	for i := range 4 {
		l.post(crashForm{size: 16<<20 + int64(i), rate: 512 << 10})
	}
	for i := range 3 {
		l.post(crashForm{size: 16<<20 + int64(i), rate: 512 << 10, fileFirst: true})
	}
	for i := range 3 {
		l.post(crashForm{size: 1<<20 + int64(i), hold: true})
	}
	l.post(crashForm{size: 12 << 20})
	l.post(crashForm{size: 16 << 20})
	l.stream(6, func(int) int64 { return 16<<10 + rand.Int64N(48<<10) })
	r.waitKillPoint(l, "temp, spool and row-less result files on disk, and the multipart-sized results acknowledged", func() (bool, string) {
		temp, spool, orphans := r.tempFiles(), r.spoolFiles(), r.orphanFiles()
		bigTemp := r.filesOver(temp, 1<<20)
		large := l.ackedLarger(5 << 20)
		return bigTemp >= 4 && len(spool) >= 3 && len(orphans) >= 3 && large >= 2 && l.ackCount() >= 10,
			fmt.Sprintf("%d temp files (%d over 1 MiB), %d spool files, %d result files without rows, %d multipart-sized results acknowledged, %d acknowledged",
				len(temp), bigTemp, len(spool), len(orphans), large, l.ackCount())
	})
}

// killMidInlineOffload: with S3 slowed, large results are being uploaded
// inline (multipart) while their POSTs wait for the inline bound.
func killMidInlineOffload(r *crashRig, l *crashLoad) {
	r.bh.SetRate(256 << 10)
	l.stream(4, func(i int) int64 { return int64(12+2*(i%5)) << 20 })
	l.stream(4, func(int) int64 { return 16<<10 + rand.Int64N(48<<10) })
	r.waitKillPoint(l, "large POSTs waiting on their inline multipart uploads", func() (bool, string) {
		uploads, leased := r.uploads(), r.leasedJobs()
		inflight := l.largeInFlight.Load()
		return len(uploads) >= 2 && len(leased) >= 2 && inflight >= 2 && l.ackCount() >= 5,
			fmt.Sprintf("%d multipart uploads, %d leased jobs, %d large POSTs in flight, %d acknowledged", len(uploads), len(leased), inflight, l.ackCount())
	})
}

// killMidQueue: with S3 slowed to a crawl, large results are handed to the
// queue after the inline bound and several workers hold their leases while
// uploading; S3 then goes dark (so the dying plugin cannot abort its
// uploads itself) and the host is killed.
func killMidQueue(r *crashRig, l *crashLoad) {
	r.bh.SetRate(64 << 10)
	for i := range 4 {
		l.post(crashForm{size: 12<<20 + int64(i)})
	}
	for i := range 12 {
		l.post(crashForm{size: 32<<10 + int64(i)})
	}
	r.waitKillPoint(l, "every POST answered and several workers uploading leased jobs", func() (bool, string) {
		leased, uploads := r.leasedJobs(), r.uploads()
		return l.posts.Load() == 0 && len(leased) >= 2 && len(uploads) >= 2,
			fmt.Sprintf("%d POSTs in flight, %d leased jobs, %d multipart uploads", l.posts.Load(), len(leased), len(uploads))
	})
	r.bh.SetBlackhole(true)
}

// killMidDeletes: results offloaded earlier are deleted while S3 is
// blackholed (the inline deletes give up after their bound and the
// workers lease the delete jobs), mixed with new results.
func killMidDeletes(r *crashRig, l *crashLoad) {
	pre := newCrashLoad(r)
	for i := range 16 {
		pre.post(crashForm{size: 24<<10 + int64(i)})
	}
	pre.post(crashForm{size: 12 << 20})
	pre.wg.Wait()
	if len(pre.errs) > 0 {
		r.t.Fatalf("creating the results to delete: %s", strings.Join(pre.errs, "; "))
	}
	// Every result lives in the bucket (the queue finishes what the inline
	// attempts did not), so every delete goes to S3.
	waitFor(r.t, 30*time.Second, "the results to delete to be offloaded", func() bool { return r.pending() == 0 })
	var local int
	if err := r.db.QueryRow(`SELECT COUNT(*) FROM results WHERE storage <> $1`, pluginID).Scan(&local); err != nil || local > 0 {
		r.t.Fatalf("%d results to delete are not in the bucket with the queue empty (%v)", local, err)
	}
	l.acks = append(l.acks, pre.acks...)
	r.bh.SetBlackhole(true)
	sem := make(chan struct{}, 6)
	for _, a := range pre.acks {
		l.del(a.res.ID, sem)
	}
	for i := range 8 {
		l.post(crashForm{size: 40<<10 + int64(i)})
	}
	r.waitKillPoint(l, "deletes acknowledged and delete jobs leased", func() (bool, string) {
		dels := 0
		for _, j := range r.leasedJobs() {
			if j.kind == "delete" {
				dels++
			}
		}
		return l.deletedCount() >= 3 && dels >= 2 && l.ackCount() > len(pre.acks),
			fmt.Sprintf("%d deletes acknowledged, %d delete jobs leased, %d new results acknowledged", l.deletedCount(), dels, l.ackCount()-len(pre.acks))
	})
}

// crashRig is a data dir and database with the R2 plugin installed and
// configured against versitygw behind a Blackhole (so S3 can be slowed or
// silenced), and the host running on them as a process of its own.
type crashRig struct {
	t       *testing.T
	dataDir string
	dsn     string // --db; "" is SQLite in the data dir
	key     string // APP_KEY
	s3      *s3test.Server
	bh      *s3test.Blackhole
	db      *sql.DB // the test's own connection to the host's database
	sysTmp  string  // the host process's TMPDIR
	// pluginExe is the installed plugin binary as the kernel names it.
	pluginExe string
	proc      *hostProc
	procs     []*hostProc
	// seeds numbers the results' contents, so each is different.
	seeds atomic.Uint64
}

// hostProc is one `magicads serve` process.
type hostProc struct {
	cmd     *exec.Cmd
	url     string
	logs    *plugintest.Logs
	started time.Time
	exited  chan struct{}
}

func (p *hostProc) pid() int { return p.cmd.Process.Pid }

// runHost starts `magicads serve` with args and the tests' tokens and
// console password (the caller's MAGICADS_* and APP_KEY variables left
// out, env added), killed with the test if it dies, and stopped (SIGTERM,
// then SIGKILL after 25 s) when the test ends, whose log it then prints
// if the test failed.
func runHost(t *testing.T, name, url string, args []string, env ...string) *hostProc {
	t.Helper()
	exe := hostBin.Build(t, "./host/cmd/magicads")
	cmd := exec.Command(exe, args...)
	// A test that dies takes the host with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MAGICADS_") && !strings.HasPrefix(kv, "APP_KEY") && !strings.HasPrefix(kv, "TMPDIR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "TMPDIR=") }) {
		cmd.Env = append(cmd.Env, "TMPDIR="+os.TempDir())
	}
	cmd.Env = append(cmd.Env, "MAGICADS_ADMIN_TOKEN="+adminToken, "MAGICADS_SERVICE_TOKEN="+serviceToken, "MAGICADS_ADMIN_PASSWORD="+consolePassword)
	cmd.Env = append(cmd.Env, env...)
	p := &hostProc{cmd: cmd, url: url, logs: &plugintest.Logs{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting magicads serve (%s): %v", name, err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(25 * time.Second):
				cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() {
			t.Logf("log of %s (pid %d), last lines but \"offloaded\" ones:\n%s", name, p.pid(), tailLines(dropLines(p.logs.String(), "results: offloaded"), 80))
		}
	})
	return p
}

// newCrashRig installs and configures the plugin with an in-process host,
// closes it, and starts the host process on the same data dir, database
// and APP_KEY.
func newCrashRig(t *testing.T, d dbmigrate.Dialect) *crashRig {
	t.Helper()
	srv := s3test.StartVersity(t)
	srv.CreateBucket(t, bucket)
	r := &crashRig{t: t, dataDir: t.TempDir(), sysTmp: t.TempDir(), key: appKey(), s3: srv,
		bh: s3test.NewBlackhole(t, strings.TrimPrefix(srv.Endpoint, "http://"))}
	if d == dbmigrate.Postgres {
		r.dsn = testdb.Open(t, d).DSN
	}
	h := &host{t: t, s3: srv, dsn: r.dsn, dataDir: r.dataDir, logs: &plugintest.Logs{}}
	h.start(r.key)
	bin := pluginBin.Build(t, "./plugin/cmd/cloudflare-r2")
	if err := h.app.Providers.Register(context.Background(), providers.Installed{ID: pluginID, Version: "1.0.0", Dir: plugintest.ModuleRoot(t), BinaryPath: bin, SHA256: fileSHA256(t, bin)}); err != nil {
		t.Fatalf("installing the plugin: %v", err)
	}
	h.waitRunning()
	h.configure("endpoint", r.bh.Endpoint)
	h.stop()
	h.app, h.srv = nil, nil

	dsn := r.dsn
	if dsn == "" {
		dsn = filepath.Join(r.dataDir, "magicads.db")
	}
	db, _, err := dbmigrate.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("opening the host's database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	r.db = db
	var exe string
	if err := db.QueryRow(`SELECT binary_path FROM plugins WHERE id = $1`, pluginID).Scan(&exe); err != nil {
		t.Fatalf("reading the installed plugin's binary: %v", err)
	}
	if r.pluginExe, err = filepath.EvalSymlinks(exe); err != nil {
		t.Fatalf("installed plugin binary %s: %v", exe, err)
	}
	r.start()
	return r
}

// start starts a host process on the rig's data dir and database, on a free
// port, and waits until it answers and runs the plugin.
func (r *crashRig) start() {
	t := r.t
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	args := []string{"serve", "--addr", addr, "--data-dir", r.dataDir}
	if r.dsn != "" {
		args = append(args, "--db", r.dsn)
	}
	n := len(r.procs) + 1
	p := runHost(t, fmt.Sprintf("host process %d", n), "http://"+addr, args, "APP_KEY="+r.key, "TMPDIR="+r.sysTmp)
	r.proc = p
	r.procs = append(r.procs, p)
	cmd := p.cmd
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.exited:
			t.Fatalf("magicads serve exited: %v\n%s", cmd.ProcessState, p.logs)
		default:
		}
		if r.healthy() && r.pluginRunning() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host process did not answer /healthz and run its plugin within 30s:\n%s", p.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *crashRig) healthy() bool {
	resp, err := http.Get(r.proc.url + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// pluginRunning reports whether the admin API offers R2 as Default Storage
// (enabled, fully configured and running) and it is the Default Storage.
func (r *crashRig) pluginRunning() bool {
	req, _ := http.NewRequest("GET", r.proc.url+"/api/v1/admin/storage", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var st struct {
		Default string
		Options []struct{ ID string }
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil || st.Default != pluginID {
		return false
	}
	for _, o := range st.Options {
		if o.ID == pluginID {
			return true
		}
	}
	return false
}

// waitKillPoint waits until cond says the burst reached its kill moment.
func (r *crashRig) waitKillPoint(l *crashLoad, what string, cond func() (bool, string)) {
	r.t.Helper()
	deadline := time.Now().Add(killPointBound)
	for {
		ok, state := cond()
		if ok {
			r.t.Logf("kill moment reached: %s", state)
			return
		}
		if errs := l.errors(); len(errs) > 0 {
			r.t.Fatalf("the burst failed before the kill: %s", strings.Join(errs, "; "))
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the burst did not reach the kill moment (%s) within %v; last state: %s", what, killPointBound, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// crashState is what the killed host left: measured right after the kill
// (the host is dead, so the disk and the database are frozen). The
// multipart uploads are those listed just before the kill and right after
// it (the dying plugin may abort some, and one requested just before the
// kill may appear after it): nothing but the killed host starts uploads.
type crashState struct {
	temp, spool, sysTmp, orphans []string
	leased                       []leasedJob
	uploads                      []mpUpload
}

func (st crashState) String() string {
	return fmt.Sprintf("%d temp files, %d spool files, %d files in the host's TMPDIR, %d result files without rows, %d leased jobs %v, %d multipart uploads",
		len(st.temp), len(st.spool), len(st.sysTmp), len(st.orphans), len(st.leased), st.leased, len(st.uploads))
}

// kill SIGKILLs the host process, lets the burst's clients see it, and
// returns what the host left.
func (r *crashRig) kill(l *crashLoad) crashState {
	r.t.Helper()
	var st crashState
	st.uploads = r.uploads()
	l.killed.Store(true)
	if err := syscall.Kill(r.proc.pid(), syscall.SIGKILL); err != nil {
		r.t.Fatalf("killing the host: %v", err)
	}
	<-r.proc.exited
	for _, u := range r.uploads() {
		if !slices.Contains(st.uploads, u) {
			st.uploads = append(st.uploads, u)
		}
	}
	st.temp, st.spool, st.sysTmp, st.orphans, st.leased = r.tempFiles(), r.spoolFiles(), r.sysTmpFiles(), r.orphanFiles(), r.leasedJobs()
	l.stop()
	return st
}

// crashCheck is one condition the restarted host must reach: it returns ""
// once it holds, else what is left.
type crashCheck struct {
	name string
	left func() string
}

// recover restores S3, restarts the host and checks what it left behind.
func (r *crashRig) recover(st crashState, l *crashLoad) {
	t := r.t
	t.Helper()
	r.bh.SetBlackhole(false)
	r.bh.SetRate(0)
	killedHost := r.proc
	r.start()
	restarted := r.proc
	watch := r.watchPlugins(restarted)
	jobsDone := time.Duration(-1)
	checks := []crashCheck{
		{"interrupted temp files on the results disk", func() string { return listed(r.tempFiles()) }},
		{"spool files in " + r.spoolDir(), func() string { return listed(r.spoolFiles()) }},
		{"files in the host's TMPDIR " + r.sysTmp, func() string { return listed(r.sysTmpFiles()) }},
		{"result files without a row", func() string { return listed(r.orphanFiles()) }},
		{"multipart uploads the killed host left", func() string {
			var left []string
			now := r.uploads()
			for _, u := range st.uploads {
				if slices.Contains(now, u) {
					left = append(left, u.String())
				}
			}
			return listed(left)
		}},
		{"jobs the killed host had leased, not done", func() string {
			var left []string
			for _, j := range st.leased {
				if cur, ok := r.job(j.id); ok {
					left = append(left, cur.String())
				}
			}
			if len(left) == 0 && jobsDone < 0 {
				jobsDone = time.Since(restarted.started)
			}
			return listed(left)
		}},
		{"plugin processes", func() string { return r.onePlugin(restarted, killedHost) }},
	}
	left := settle(restarted.started.Add(recoverBound), checks)
	for _, c := range checks {
		if msg := left[c.name]; msg != "" {
			t.Errorf("%v after the restart, %s: %s", recoverBound, c.name, msg)
		}
	}
	if jobsDone >= 0 && len(st.leased) > 0 {
		t.Logf("the %d jobs the killed host had leased were done %v after the restart", len(st.leased), jobsDone.Round(time.Millisecond))
	}

	// The whole queue drains once S3 is back.
	start := time.Now()
	for r.pending() > 0 && time.Since(start) < drainBound {
		time.Sleep(100 * time.Millisecond)
	}
	if n := r.pending(); n > 0 {
		t.Errorf("the queue still holds %d jobs %v after S3 came back: %s", n, drainBound, listed(r.jobs()))
	} else {
		t.Logf("the queue was empty when checked, %v after the restart", time.Since(restarted.started).Round(time.Millisecond))
	}
	// With the queue empty, no multipart upload may be in progress, one
	// plugin still runs (the same), and nothing came back.
	if ups := r.uploads(); len(ups) > 0 {
		var s []string
		for _, u := range ups {
			s = append(s, u.String())
		}
		t.Errorf("incomplete multipart uploads in bucket %s once the queue is empty: %s", bucket, listed(s))
	}
	for _, c := range checks[:4] {
		if msg := c.left(); msg != "" {
			t.Errorf("once the queue is empty, %s: %s", c.name, msg)
		}
	}
	if msg := listed(r.rowsWithoutContent()); msg != "" {
		t.Errorf("results whose content is missing: %s", msg)
	}

	// No acknowledged result is lost or corrupted; an acknowledged delete
	// removed everything, and one cut by the kill either did or left the
	// result whole.
	deleted := map[string]bool{}
	for _, id := range l.deleted {
		deleted[id] = true
	}
	var lost, back []string
	for _, a := range l.acks {
		switch {
		case deleted[a.res.ID]:
			if msg := r.gone(a); msg != "" {
				back = append(back, msg)
			}
		case l.deleting[a.res.ID] && r.gone(a) == "":
			// The delete in flight at the kill went through.
		default:
			if msg := r.readable(a); msg != "" {
				lost = append(lost, msg)
			}
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged results are not readable as acknowledged: %s", len(lost), len(l.acks)-len(l.deleted), listed(lost))
	}
	if len(back) > 0 {
		t.Errorf("%d of %d acknowledged deletes did not remove everything: %s", len(back), len(l.deleted), listed(back))
	}
	t.Logf("checked %d acknowledged results and %d acknowledged deletes", len(l.acks)-len(l.deleted), len(l.deleted))
	// Exactly one plugin, from the moment there was one on: a second one
	// launched late (or the one gone) shows.
	if msg := watch.stop(r, onePluginFor); msg != "" {
		t.Errorf("plugin processes after the recovery: %s", msg)
	}
	if t.Failed() {
		t.Logf("what the restarted host logged about recovery:\n%s", grepLines(restarted.logs.String(), "earlier host", "released", "stray", "abort", "level=ERROR", "level=WARN"))
	}
}

// settle polls the checks until all hold or the deadline passes, and
// returns what each check still failing at the deadline reported.
func settle(deadline time.Time, checks []crashCheck) map[string]string {
	left := map[string]string{}
	for {
		clear(left)
		for _, c := range checks {
			if msg := c.left(); msg != "" {
				left[c.name] = msg
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// onePlugin returns "" when exactly one process runs the installed plugin
// binary and it is a child of the restarted host; else what runs.
func (r *crashRig) onePlugin(restarted, killed *hostProc) string {
	procs, err := r.pluginProcesses()
	if err != nil {
		return err.Error()
	}
	if len(procs) == 1 && procs[0].ppid == restarted.pid() {
		return ""
	}
	return fmt.Sprintf("want exactly one, a child of the restarted host (pid %d; the killed host was %d); %s",
		restarted.pid(), killed.pid(), r.describePlugins(procs, restarted))
}

// describePlugins says which plugin processes run.
func (r *crashRig) describePlugins(procs []proc, restarted *hostProc) string {
	var s []string
	for _, p := range procs {
		who := "parent " + strconv.Itoa(p.ppid)
		if p.ppid == restarted.pid() {
			who = "child of the restarted host"
		}
		s = append(s, fmt.Sprintf("pid %d (%s)", p.pid, who))
	}
	return fmt.Sprintf("%d run %s: %s", len(procs), r.pluginExe, strings.Join(s, ", "))
}

// onePluginFor is how long exactly one plugin process must be seen running
// after the restart: long enough for a late second launch to show.
const onePluginFor = 5 * time.Second

// pluginWatch samples the plugin processes from a restart on.
type pluginWatch struct {
	quit, done chan struct{}
	// Set by the sampler; read after done is closed.
	firstOne  time.Time // when exactly one child of the restarted host first ran
	pids      []int     // the plugin pids seen since, in order
	violation string    // the first sample since firstOne that was not exactly one
}

// watchPlugins samples the plugin processes every 50 ms until stop.
func (r *crashRig) watchPlugins(restarted *hostProc) *pluginWatch {
	w := &pluginWatch{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			w.sample(r, restarted)
			select {
			case <-w.quit:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *pluginWatch) sample(r *crashRig, restarted *hostProc) {
	if w.violation != "" {
		return
	}
	procs, err := r.pluginProcesses()
	if err != nil {
		w.violation = err.Error()
		return
	}
	one := len(procs) == 1 && procs[0].ppid == restarted.pid()
	switch {
	case one && w.firstOne.IsZero():
		w.firstOne, w.pids = time.Now(), []int{procs[0].pid}
	case one && procs[0].pid != w.pids[len(w.pids)-1]:
		w.pids = append(w.pids, procs[0].pid)
	case !one && !w.firstOne.IsZero():
		w.violation = fmt.Sprintf("%v after there was one: %s", time.Since(w.firstOne).Round(time.Millisecond), r.describePlugins(procs, restarted))
	}
}

// stop ends the sampling, once exactly one plugin was seen for at least
// d (sampling on if needed), and returns what was wrong, or "".
func (w *pluginWatch) stop(r *crashRig, d time.Duration) string {
	close(w.quit)
	<-w.done
	if w.firstOne.IsZero() {
		return "" // the recovery checks reported it
	}
	for w.violation == "" && time.Since(w.firstOne) < d {
		time.Sleep(50 * time.Millisecond)
		w.sample(r, r.proc)
	}
	if len(w.pids) > 1 {
		r.t.Logf("the plugin process changed after the recovery: pids %v", w.pids)
	}
	return w.violation
}

type proc struct{ pid, ppid int }

// pluginProcesses lists the live processes running the installed plugin
// binary, from /proc.
func (r *crashRig) pluginProcesses() ([]proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || strings.TrimSuffix(exe, " (deleted)") != r.pluginExe {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue // gone meanwhile
		}
		p := proc{pid: pid}
		zombie := false
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "PPid:"); ok {
				p.ppid, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if v, ok := strings.CutPrefix(line, "State:"); ok && strings.HasPrefix(strings.TrimSpace(v), "Z") {
				zombie = true
			}
		}
		if !zombie {
			out = append(out, p)
		}
	}
	return out, nil
}

func (r *crashRig) resultsDir() string { return filepath.Join(r.dataDir, "results") }
func (r *crashRig) spoolDir() string   { return filepath.Join(r.dataDir, "tmp", "uploads") }

// walkFiles lists the regular files under dir as "rel/path (N bytes)"
// entries, keeping those keep accepts.
func (r *crashRig) walkFiles(dir string, keep func(rel string, d fs.DirEntry) bool) []string {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if !keep(rel, d) {
			return nil
		}
		size := int64(-1)
		if fi, err := d.Info(); err == nil {
			size = fi.Size()
		}
		out = append(out, fmt.Sprintf("%s (%d bytes)", rel, size))
		return nil
	})
	if err != nil {
		r.t.Fatalf("listing %s: %v", dir, err)
	}
	return out
}

// filesOver counts the walkFiles entries of more than n bytes.
func (r *crashRig) filesOver(files []string, n int64) int {
	c := 0
	for _, f := range files {
		_, size, _ := strings.Cut(f, " (")
		if b, err := strconv.ParseInt(strings.TrimSuffix(size, " bytes)"), 10, 64); err == nil && b > n {
			c++
		}
	}
	return c
}

// tempFiles lists the results disk's temporary files (.magicads-tmp-*).
func (r *crashRig) tempFiles() []string {
	return r.walkFiles(r.resultsDir(), func(_ string, d fs.DirEntry) bool {
		return strings.HasPrefix(d.Name(), ".magicads-tmp-")
	})
}

// spoolFiles lists every file in the upload spool.
func (r *crashRig) spoolFiles() []string {
	return r.walkFiles(r.spoolDir(), func(string, fs.DirEntry) bool { return true })
}

// sysTmpFiles lists every file in the host process's TMPDIR.
func (r *crashRig) sysTmpFiles() []string {
	return r.walkFiles(r.sysTmp, func(string, fs.DirEntry) bool { return true })
}

// orphanFiles lists the result files on the results disk that no results
// row names (the store's own metadata and temp files aside). The files are
// listed before the rows are read, so a result recorded meanwhile is not
// counted.
func (r *crashRig) orphanFiles() []string {
	files := r.walkFiles(r.resultsDir(), func(rel string, d fs.DirEntry) bool {
		return !strings.HasPrefix(rel, ".magicads-meta/") && !strings.HasPrefix(d.Name(), ".magicads-tmp-")
	})
	if len(files) == 0 {
		return nil
	}
	rows := map[string]bool{}
	q, err := r.db.Query(`SELECT path FROM results`)
	if err != nil {
		r.t.Fatalf("reading the results' paths: %v", err)
	}
	defer q.Close()
	for q.Next() {
		var p string
		if err := q.Scan(&p); err != nil {
			r.t.Fatal(err)
		}
		rows[p] = true
	}
	if err := q.Err(); err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if rel, _, _ := strings.Cut(f, " ("); !rows[rel] {
			out = append(out, f)
		}
	}
	return out
}

// leasedJob is a row of the jobs table.
type leasedJob struct {
	id                                      int64
	kind, resultID, lockedBy, lastError, at string
	attempts                                int
	leased                                  bool
}

func (j leasedJob) String() string {
	s := fmt.Sprintf("job %d (%s of %s, %d attempts, due %s", j.id, j.kind, j.resultID, j.attempts, j.at)
	if j.leased {
		s += ", leased by " + j.lockedBy
	}
	if j.lastError != "" {
		s += ", last error: " + j.lastError
	}
	return s + ")"
}

const jobColumns = `SELECT id, kind, result_id, locked_by, last_error, attempts, CAST(next_attempt_at AS TEXT), CASE WHEN locked_until IS NULL THEN 0 ELSE 1 END FROM jobs`

func (r *crashRig) queryJobs(where string, args ...any) []leasedJob {
	rows, err := r.db.Query(jobColumns+" "+where+" ORDER BY id", args...)
	if err != nil {
		r.t.Fatalf("reading the jobs: %v", err)
	}
	defer rows.Close()
	var out []leasedJob
	for rows.Next() {
		var j leasedJob
		var leased int
		if err := rows.Scan(&j.id, &j.kind, &j.resultID, &j.lockedBy, &j.lastError, &j.attempts, &j.at, &leased); err != nil {
			r.t.Fatal(err)
		}
		j.leased = leased == 1
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// leasedJobs lists the jobs whose lease is held.
func (r *crashRig) leasedJobs() []leasedJob { return r.queryJobs("WHERE locked_until IS NOT NULL") }

func (r *crashRig) jobs() []string {
	var out []string
	for _, j := range r.queryJobs("") {
		out = append(out, j.String())
	}
	return out
}

func (r *crashRig) job(id int64) (leasedJob, bool) {
	js := r.queryJobs("WHERE id = $1", id)
	if len(js) == 0 {
		return leasedJob{}, false
	}
	return js[0], true
}

func (r *crashRig) pending() int {
	var n int
	if err := r.db.QueryRow(`SELECT COUNT(*) FROM jobs`).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// mpUpload is an incomplete multipart upload in the bucket.
type mpUpload struct {
	key, id   string
	initiated time.Time
}

func (u mpUpload) String() string {
	return fmt.Sprintf("%s (upload id %s, initiated %s)", u.key, u.id, u.initiated.Format(time.TimeOnly))
}

// uploads lists the bucket's incomplete multipart uploads, straight from
// versitygw (not through the blackhole).
func (r *crashRig) uploads() []mpUpload {
	var out []mpUpload
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)}
	for range 1000 {
		res, err := r.s3.Client().ListMultipartUploads(r.t.Context(), in)
		if err != nil {
			r.t.Fatalf("listing the multipart uploads of %s: %v", bucket, err)
		}
		for _, u := range res.Uploads {
			out = append(out, mpUpload{key: aws.ToString(u.Key), id: aws.ToString(u.UploadId), initiated: aws.ToTime(u.Initiated)})
		}
		if !aws.ToBool(res.IsTruncated) {
			return out
		}
		in.KeyMarker, in.UploadIdMarker = res.NextKeyMarker, res.NextUploadIdMarker
	}
	r.t.Fatalf("listing the multipart uploads of %s: too many pages", bucket)
	return nil
}

// rowsWithoutContent lists the live results whose content is neither on the
// results disk nor in the bucket where their row says it is.
func (r *crashRig) rowsWithoutContent() []string {
	rows, err := r.db.Query(`SELECT id, path, storage, object_key, bucket, CASE WHEN local_present THEN 1 ELSE 0 END FROM results WHERE NOT deleted`)
	if err != nil {
		r.t.Fatalf("reading the results: %v", err)
	}
	type res struct {
		id, path, storage, key, bucket string
		local                          int
	}
	var all []res
	for rows.Next() {
		var x res
		if err := rows.Scan(&x.id, &x.path, &x.storage, &x.key, &x.bucket, &x.local); err != nil {
			r.t.Fatal(err)
		}
		all = append(all, x)
	}
	rows.Close()
	var out []string
	for _, x := range all {
		if x.local == 1 && !fileExists(filepath.Join(r.resultsDir(), filepath.FromSlash(x.path))) {
			out = append(out, fmt.Sprintf("%s: local copy %s recorded but missing", x.id, x.path))
		}
		switch {
		case x.storage == "local" && x.local == 0:
			out = append(out, fmt.Sprintf("%s: local without a local copy", x.id))
		case x.storage != "local":
			// object_key is the full key; a legacy row (no bucket) holds
			// the key given to Put, under the "magicads" prefix.
			key := x.key
			if x.bucket == "" {
				key = "magicads/" + x.key
			}
			if _, err := r.object(key); err != nil {
				out = append(out, fmt.Sprintf("%s: in %s at %s, but: %v", x.id, x.storage, x.key, err))
			}
		}
	}
	return out
}

// object reads an object straight from versitygw.
func (r *crashRig) object(key string) ([]byte, error) {
	out, err := r.s3.Client().GetObject(r.t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// api calls the results API of the running host with the service token.
func (r *crashRig) api(method, path string) (int, []byte, http.Header, error) {
	req, _ := http.NewRequest(method, r.proc.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	resp, err := noRedirect.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, resp.Header, err
}

// readable returns "" when an acknowledged result is served with the
// sha256 and size it was acknowledged with (locally, or from the bucket
// object its content URL redirects to), else what is wrong.
func (r *crashRig) readable(a acked) string {
	id := a.res.ID
	if a.res.SHA256 != a.sum {
		return fmt.Sprintf("%s: acknowledged with sha256 %s, sent %s", id, a.res.SHA256, a.sum)
	}
	code, body, _, err := r.api("GET", "/api/v1/results/"+id)
	if err != nil || code != http.StatusOK {
		return fmt.Sprintf("%s: GET answered %d %s %v", id, code, body, err)
	}
	var cur resultBody
	if err := json.Unmarshal(body, &cur); err != nil {
		return fmt.Sprintf("%s: GET answered %s: %v", id, body, err)
	}
	if cur.SHA256 != a.sum || cur.Size != a.size || cur.Path != a.res.Path {
		return fmt.Sprintf("%s: now sha256 %s size %d path %s; acknowledged %s, %d, %s", id, cur.SHA256, cur.Size, cur.Path, a.sum, a.size, a.res.Path)
	}
	code, body, hdr, err := r.api("GET", "/api/v1/results/"+id+"/content")
	var data []byte
	switch {
	case err != nil:
		return fmt.Sprintf("%s: content: %v", id, err)
	case code == http.StatusOK && cur.Storage == "local":
		data = body
	case code == http.StatusFound && cur.Storage == pluginID:
		key, ok := strings.CutPrefix(hdr.Get("Location"), publicURL+"/")
		if !ok || key != "magicads/"+cur.Path {
			return fmt.Sprintf("%s: content redirects to %q, want %s/magicads/%s", id, hdr.Get("Location"), publicURL, cur.Path)
		}
		if data, err = r.object(key); err != nil {
			return fmt.Sprintf("%s: its bucket object %s: %v", id, key, err)
		}
	default:
		return fmt.Sprintf("%s (storage %s): content answered %d %q", id, cur.Storage, code, hdr.Get("Location"))
	}
	if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != a.sum || int64(len(data)) != a.size {
		return fmt.Sprintf("%s (storage %s): content has sha256 %x and %d bytes; acknowledged %s and %d", id, cur.Storage, got, len(data), a.sum, a.size)
	}
	return ""
}

// gone returns "" when a deleted result answers 404 and has neither a row,
// a local file nor a bucket object left; else what is left.
func (r *crashRig) gone(a acked) string {
	id, path := a.res.ID, a.res.Path
	var left []string
	if code, body, _, err := r.api("GET", "/api/v1/results/"+id); err != nil || code != http.StatusNotFound {
		left = append(left, fmt.Sprintf("GET answered %d %s %v", code, strings.TrimSpace(string(body)), err))
	}
	var n int
	if err := r.db.QueryRow(`SELECT COUNT(*) FROM results WHERE id = $1`, id).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	if n > 0 {
		left = append(left, "its row")
	}
	if fileExists(filepath.Join(r.resultsDir(), filepath.FromSlash(path))) {
		left = append(left, "its local file "+path)
	}
	if _, err := r.object("magicads/" + path); err == nil {
		left = append(left, "its bucket object magicads/"+path)
	}
	if len(left) == 0 {
		return ""
	}
	return id + ": " + strings.Join(left, ", ")
}

// crashLoad is the burst of requests against the host until it is killed.
type crashLoad struct {
	r      *crashRig
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	killed atomic.Bool
	// posts counts the POSTs in flight; largeInFlight those over 5 MiB.
	posts, largeInFlight atomic.Int64

	mu      sync.Mutex
	acks    []acked
	deleted []string // results whose DELETE answered 204
	// deleting are the results a DELETE was sent for, answered or not.
	deleting map[string]bool
	errs     []string // unexpected answers before the kill
}

// acked is a result acknowledged with a 201.
type acked struct {
	res  resultBody
	sum  string // sha256 of what was sent
	size int64
}

func newCrashLoad(r *crashRig) *crashLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &crashLoad{r: r, ctx: ctx, cancel: cancel, deleting: map[string]bool{}}
	r.t.Cleanup(l.stop)
	return l
}

// stop ends the burst's requests and waits for them.
func (l *crashLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *crashLoad) fail(format string, args ...any) {
	if l.killed.Load() || l.ctx.Err() != nil {
		return // the host is gone: requests in flight fail
	}
	l.mu.Lock()
	l.errs = append(l.errs, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *crashLoad) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

func (l *crashLoad) ackCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

func (l *crashLoad) deletedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.deleted)
}

func (l *crashLoad) ackedLarger(n int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := 0
	for _, a := range l.acks {
		if a.size > n {
			c++
		}
	}
	return c
}

// crashForm is a results form the load sends.
type crashForm struct {
	size int64
	// fileFirst sends the file before kind and generator: the host spools
	// it until the fields arrive.
	fileFirst bool
	// rate limits the file part to this many bytes per second (0: as fast
	// as the host reads).
	rate int
	// hold stops after the file part, before the owner field, until the
	// load stops: the host has staged the file but not recorded it.
	hold bool
	seed uint64
}

// content is the form's file: a PNG signature, then seeded random bytes.
func (f crashForm) content() io.Reader {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], f.seed)
	return io.MultiReader(strings.NewReader("\x89PNG\r\n\x1a\n"), io.LimitReader(rand.NewChaCha8(seed), f.size-8))
}

func (f crashForm) sum() string {
	h := sha256.New()
	io.Copy(h, f.content())
	return hex.EncodeToString(h.Sum(nil))
}

// body streams the form.
func (f crashForm) body(ctx context.Context) (string, io.Reader) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		pw.CloseWithError(func() error {
			fields := func() error {
				if err := mw.WriteField("kind", "images"); err != nil {
					return err
				}
				return mw.WriteField("generator", "gemini")
			}
			if !f.fileFirst {
				if err := fields(); err != nil {
					return err
				}
			}
			fw, err := mw.CreateFormFile("file", "r.png")
			if err != nil {
				return err
			}
			src, buf := f.content(), make([]byte, 32<<10)
			for {
				n, rerr := src.Read(buf)
				if _, err := fw.Write(buf[:n]); err != nil {
					return err
				}
				if f.rate > 0 && n > 0 {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(time.Duration(n) * time.Second / time.Duration(f.rate)):
					}
				}
				if rerr == io.EOF {
					break
				}
			}
			if f.fileFirst {
				if err := fields(); err != nil {
					return err
				}
			}
			if f.hold {
				// The owner part's header ends the file part, so the host
				// stages the file; its value never comes.
				if _, err := mw.CreateFormField("owner"); err != nil {
					return err
				}
				<-ctx.Done()
				return ctx.Err()
			}
			return mw.Close()
		}())
	}()
	return mw.FormDataContentType(), pr
}

// post sends one form in the background.
func (l *crashLoad) post(f crashForm) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.send(f)
	}()
}

// send sends one form and records a 201.
func (l *crashLoad) send(f crashForm) {
	f.seed = l.r.seeds.Add(1)
	l.posts.Add(1)
	defer l.posts.Add(-1)
	if f.size > 5<<20 {
		l.largeInFlight.Add(1)
		defer l.largeInFlight.Add(-1)
	}
	sum := f.sum()
	ct, body := f.body(l.ctx)
	req, _ := http.NewRequestWithContext(l.ctx, "POST", l.r.proc.url+"/api/v1/results", body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.fail("POST of %d bytes: %v", f.size, err)
		return
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var res resultBody
	if resp.StatusCode != http.StatusCreated || err != nil || json.Unmarshal(data, &res) != nil {
		l.fail("POST of %d bytes: %d %s %v", f.size, resp.StatusCode, data, err)
		return
	}
	l.mu.Lock()
	l.acks = append(l.acks, acked{res: res, sum: sum, size: f.size})
	l.mu.Unlock()
}

// stream keeps n clients posting results, each one after the other, until
// the load stops; size gives the size of each client's i-th result.
func (l *crashLoad) stream(n int, size func(i int) int64) {
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; l.ctx.Err() == nil; i++ {
				l.send(crashForm{size: size(i)})
			}
		}()
	}
}

// del deletes a result in the background (at most cap(sem) at once) and
// records a 204.
func (l *crashLoad) del(id string, sem chan struct{}) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		select {
		case sem <- struct{}{}:
		case <-l.ctx.Done():
			return
		}
		defer func() { <-sem }()
		l.mu.Lock()
		l.deleting[id] = true
		l.mu.Unlock()
		req, _ := http.NewRequestWithContext(l.ctx, "DELETE", l.r.proc.url+"/api/v1/results/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+serviceToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			l.fail("DELETE %s: %v", id, err)
			return
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			l.fail("DELETE %s: %d %s", id, resp.StatusCode, data)
			return
		}
		l.mu.Lock()
		l.deleted = append(l.deleted, id)
		l.mu.Unlock()
	}()
}

// listed formats a list of leftovers: "" when empty, else the count and
// the first few.
func listed(items []string) string {
	if len(items) == 0 {
		return ""
	}
	const show = 8
	s := fmt.Sprintf("%d: %s", len(items), strings.Join(items[:min(len(items), show)], "; "))
	if len(items) > show {
		s += fmt.Sprintf("; and %d more", len(items)-show)
	}
	return s
}

// dropLines returns s without the lines that contain word.
func dropLines(s, word string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.Contains(line, word) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// grepLines returns the lines of s that contain any of words.
func grepLines(s string, words ...string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				out = append(out, line)
				break
			}
		}
	}
	return tailLines(strings.Join(out, "\n"), 60)
}
