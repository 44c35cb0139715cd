//go:build linux && bulkbench

package benchbulk

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/magicads/r2storage/internal/markettest"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/s3test"
)

const (
	// resultsEnv is how many local results the benchmark offloads
	// (default 10,000): a smaller count makes a quick run.
	resultsEnv = "MAGICADS_BENCH_BULK_RESULTS"
	// rcloneEnv names the rclone binary (default: rclone on $PATH).
	rcloneEnv = "MAGICADS_BENCH_RCLONE"
	// perfEnv, if set, is a file into which `perf record -g` writes a CPU
	// profile of the host and its plugin during the offload (for `perf
	// report -i FILE`); it slows the offload a little.
	perfEnv = "MAGICADS_BENCH_BULK_PERF"

	defaultResults = 10000
	resultBytes    = 100 << 10
	uploadClients  = 16
	rcloneTransfer = 16

	pluginID     = "cloudflare-r2"
	hostBucket   = "magicads-bulk"
	rcloneBucket = "rclone-bulk"
	// rcloneAfter is the bucket of the rclone run after the host's.
	rcloneAfter  = "rclone-bulk-after"
	adminToken   = "bench-admin-token"
	serviceToken = "bench-service-token"
	version      = "1.0.0" // the manifest's, which the plugin binary reports
)

var (
	hostBin   plugintest.Builder
	pluginBin plugintest.Builder
)

func TestMain(m *testing.M) {
	code := m.Run()
	hostBin.Cleanup()
	pluginBin.Cleanup()
	os.Exit(code)
}

// BenchmarkBulkOffload is the bulk offload benchmark: a `magicads serve`
// process (SQLite in its data dir) holds N local results of 100 KiB
// (MAGICADS_BENCH_BULK_RESULTS, default 10,000), made through the results
// API while Default Storage was local; R2 is installed from a signed
// catalog, configured against versitygw (region auto, path style) and made
// the Default Storage. Then, in the same run, `rclone copy --transfers 16`
// copies the host's results directory into another bucket of the same
// versitygw, a bulk offload (POST /api/v1/admin/storage/bulk) is timed
// from its start until its progress says done, and rclone copies the
// files again into a third bucket. It reports the host's rate and
// rclone's over both its runs in files per second, their ratio
// host/rclone (target >= 1.0), each rclone run's rate, the peak RSS
// (VmHWM, reset just before the offload) of the host and of its plugin
// (target: sum <= 96 MiB), and the CPU seconds each side spent.
func BenchmarkBulkOffload(b *testing.B) {
	n, err := resultCount()
	if err != nil {
		b.Fatal(err)
	}
	rclone, err := findRclone()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		runOnce(b, n, rclone)
	}
}

func resultCount() (int, error) {
	v := os.Getenv(resultsEnv)
	if v == "" {
		return defaultResults, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1_000_000 {
		return 0, fmt.Errorf("%s must be a count of results from 1 to 1000000, got %q", resultsEnv, v)
	}
	return n, nil
}

func findRclone() (string, error) {
	name := os.Getenv(rcloneEnv)
	if name == "" {
		name = "rclone"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("the bulk benchmark needs rclone (apt-get install -y rclone, or set %s): %w", rcloneEnv, err)
	}
	return p, nil
}

// runOnce sets up a fresh versitygw and host with n local results and
// measures rclone, then the host's bulk offload.
func runOnce(b *testing.B, n int, rclone string) {
	s3 := s3test.StartVersity(b)
	s3.CreateBucket(b, hostBucket)
	s3.CreateBucket(b, rcloneBucket)
	s3.CreateBucket(b, rcloneAfter)
	h := startHost(b)

	uploadResults(b, h, n)
	installR2(b, h, s3)

	// rclone: the same files, from the host's results directory.
	files := countFiles(b, h.resultsDir)
	if files != n {
		b.Fatalf("the host's results directory %s holds %d files, want %d", h.resultsDir, files, n)
	}
	// Both sides read the files from the page cache: this machine evicts
	// pages within seconds, so without this the side that runs second
	// reads from disk what the first read from memory.
	warmFiles(b, h.resultsDir)
	rcloneSecs, rcloneCPU, rcloneVgw := runRclone(b, rclone, s3, h.resultsDir, rcloneBucket, n)

	// The host: peak RSS counted from here on.
	plugins := children(h.pid)
	if len(plugins) == 0 {
		b.Fatalf("the host runs no plugin process\n%s", h.logs)
	}
	for _, pid := range append([]int{h.pid}, plugins...) {
		resetPeak(b, pid)
	}
	warmFiles(b, h.resultsDir)
	cpu0, plugin0, vgw0 := processCPU(b, h.pid), pluginCPU(b, plugins), processCPU(b, s3.Pid())
	if out := os.Getenv(perfEnv); out != "" {
		stop := startPerf(b, out, append([]int{h.pid}, plugins...))
		defer stop()
	}
	b.StartTimer()
	start := time.Now()
	var run struct {
		ID    int64  `json:"id"`
		State string `json:"state"`
	}
	code, out, err := h.call("POST", "/api/v1/admin/storage/bulk", adminToken, map[string]any{"direction": "offload", "dry_run": false})
	if err != nil || code != http.StatusCreated || json.Unmarshal(out, &run) != nil {
		b.Fatalf("starting the bulk offload: %d %s %v\n%s", code, out, err, h.logs)
	}
	var p struct {
		State string `json:"state"`
		Done  struct {
			Results int64 `json:"results"`
		} `json:"done"`
		Failed struct {
			Results int64 `json:"results"`
		} `json:"failed"`
	}
	// Polled every 250 ms: often enough to time the run within 1% at
	// 10,000 results, rarely enough to cost the host little.
	h.waitFor(b, time.Hour, "the bulk offload to finish", 250*time.Millisecond, func() (bool, string) {
		code, out, err := h.call("GET", fmt.Sprintf("/api/v1/admin/storage/bulk/%d", run.ID), adminToken, nil)
		if err != nil || code != http.StatusOK || json.Unmarshal(out, &p) != nil {
			return false, fmt.Sprintf("%d %s %v", code, out, err)
		}
		return p.State != "running" && p.State != "queued", string(out)
	})
	hostSecs := time.Since(start).Seconds()
	b.StopTimer()
	for _, pid := range plugins {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			b.Fatalf("the plugin process %d ended during the offload, so its CPU and memory cannot be read\n%s", pid, h.logs)
		}
	}
	cpu, plugCPU, hostVgw := processCPU(b, h.pid)-cpu0, pluginCPU(b, plugins)-plugin0, processCPU(b, s3.Pid())-vgw0
	if p.State != "done" || p.Done.Results != int64(n) || p.Failed.Results != 0 {
		b.Fatalf("the bulk offload ended %s with %d done and %d failed, want %d done\n%s", p.State, p.Done.Results, p.Failed.Results, n, h.logs)
	}
	hostRSS := peakRSS(b, h.pid)
	var pluginRSS int64
	for _, pid := range plugins {
		pluginRSS += peakRSS(b, pid)
	}
	if got := len(s3.Keys(b, hostBucket)); got != n {
		b.Fatalf("the host's bucket holds %d objects after the offload, want %d", got, n)
	}

	// rclone again, after the host: this machine's speed drifts by a
	// third over minutes, so the host is compared with rclone on both
	// sides of it.
	warmFiles(b, h.resultsDir)
	afterSecs, afterCPU, afterVgw := runRclone(b, rclone, s3, h.resultsDir, rcloneAfter, n)

	hostRate, rcloneRate := float64(n)/hostSecs, float64(2*n)/(rcloneSecs+afterSecs)
	b.ReportMetric(hostRate, "host-files/s")
	b.ReportMetric(rcloneRate, "rclone-files/s")
	b.ReportMetric(float64(n)/rcloneSecs, "rclone-before-files/s")
	b.ReportMetric(float64(n)/afterSecs, "rclone-after-files/s")
	rcloneCPU, rcloneVgw = (rcloneCPU+afterCPU)/2, (rcloneVgw+afterVgw)/2
	b.ReportMetric(hostRate/rcloneRate, "host/rclone")
	b.ReportMetric(float64(hostRSS)/(1<<20), "host-peak-RSS-MiB")
	b.ReportMetric(float64(pluginRSS)/(1<<20), "plugin-peak-RSS-MiB")
	b.ReportMetric(float64(hostRSS+pluginRSS)/(1<<20), "total-peak-RSS-MiB")
	// CPU seconds: the host and its plugin together, the plugin alone, and
	// versitygw while each side ran.
	b.ReportMetric(cpu.Seconds(), "host-cpu-s")
	b.ReportMetric(plugCPU.Seconds(), "plugin-cpu-s")
	b.ReportMetric(hostVgw.Seconds(), "host-vgw-cpu-s")
	b.ReportMetric(rcloneCPU.Seconds(), "rclone-cpu-s")
	b.ReportMetric(rcloneVgw.Seconds(), "rclone-vgw-cpu-s")
	b.ReportMetric(float64(n), "files")
}

// host is a running `magicads serve` process.
type host struct {
	addr       string
	pid        int
	resultsDir string
	logs       *plugintest.Logs
}

// startHost starts the host process on a fresh SQLite data dir with a
// signed catalog offering this tree's R2 plugin.
func startHost(b *testing.B) *host {
	b.Helper()
	bin := hostBin.Build(b, "./host/cmd/magicads")
	indexURL, pubKey := writeCatalog(b)
	dataDir := b.TempDir()
	h := &host{addr: freeAddr(b), logs: &plugintest.Logs{}, resultsDir: filepath.Join(dataDir, "results")}
	key := make([]byte, 32)
	rand.Read(key)
	cmd := exec.Command(bin, "serve", "--addr", h.addr, "--data-dir", dataDir, "--catalog", indexURL, "--trusted-key", pubKey)
	cmd.Env = append(os.Environ(),
		"APP_KEY=base64:"+base64.StdEncoding.EncodeToString(key),
		"MAGICADS_ADMIN_TOKEN="+adminToken,
		"MAGICADS_SERVICE_TOKEN="+serviceToken,
		"MAGICADS_ADMIN_PASSWORD=bench-admin-password",
	)
	// If the benchmark dies, the host goes too; its output never reaches
	// the benchmark's lines.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = h.logs, h.logs
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting the host %s: %v", bin, err)
	}
	h.pid = cmd.Process.Pid
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-done
		}
	})
	h.waitFor(b, time.Minute, "the host to answer /healthz", 50*time.Millisecond, func() (bool, string) {
		select {
		case <-done:
			b.Fatalf("the host exited:\n%s", h.logs)
		default:
		}
		code, out, err := h.call("GET", "/healthz", "", nil)
		return err == nil && code == http.StatusOK, fmt.Sprintf("%d %s %v", code, out, err)
	})
	return h
}

// uploadResults finalizes n distinct 100 KiB PNG results through the
// results API while Default Storage is local, uploadClients at a time.
func uploadResults(b *testing.B, h *host, n int) {
	b.Helper()
	if code, out, err := h.call("PUT", "/api/v1/admin/storage", adminToken, map[string]string{"default": "local"}); err != nil || code != http.StatusOK {
		b.Fatalf("setting Default Storage local: %d %s %v", code, out, err)
	}
	base := make([]byte, resultBytes)
	rand.Read(base)
	copy(base, "\x89PNG\r\n\x1a\n")
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: uploadClients}, Timeout: 2 * time.Minute}
	defer client.CloseIdleConnections()
	for range uploadClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := bytes.Clone(base)
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || failed.Load() != nil {
					return
				}
				binary.BigEndian.PutUint64(data[8:], uint64(i)) // distinct content
				if err := postResult(client, h.addr, data); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatalf("making the local results: %v\n%s", err, h.logs)
	}
}

// postResult finalizes one result and checks that it stayed local.
func postResult(client *http.Client, addr string, data []byte) error {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("kind", "images")
	mw.WriteField("generator", "bench")
	fw, err := mw.CreateFormFile("file", "bench.png")
	if err != nil {
		return err
	}
	fw.Write(data)
	mw.Close()
	req, err := http.NewRequest("POST", "http://"+addr+"/api/v1/results", &buf)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var res struct{ Storage string }
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &res) != nil || res.Storage != "local" {
		return fmt.Errorf("POST /api/v1/results: %d %s; want 201 stored local", resp.StatusCode, body)
	}
	return nil
}

// installR2 installs the R2 plugin through the admin API, configures it
// against the versitygw (keeping local copies) and makes it the Default
// Storage, as an admin would.
func installR2(b *testing.B, h *host, s3 *s3test.Server) {
	b.Helper()
	if code, out, err := h.call("POST", "/api/v1/admin/plugins/"+pluginID+"/install", adminToken, nil); err != nil || code != http.StatusOK {
		b.Fatalf("installing the plugin: %d %s %v\n%s", code, out, err, h.logs)
	}
	settings := map[string]any{
		"enabled": true, "delete_local": false,
		"access_key_id": s3.AccessKey, "secret_access_key": s3.SecretKey,
		"bucket": hostBucket, "endpoint": s3.Endpoint, "public_url": "https://pub-bench.r2.dev",
		"key_prefix": "magicads", "use_path_style": true,
	}
	if code, out, err := h.call("PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", adminToken, map[string]any{"values": settings}); err != nil || code != http.StatusOK {
		b.Fatalf("saving the R2 settings: %d %s %v\n%s", code, out, err, h.logs)
	}
	h.waitFor(b, time.Minute, "R2 to be accepted as Default Storage", 50*time.Millisecond, func() (bool, string) {
		code, out, err := h.call("PUT", "/api/v1/admin/storage", adminToken, map[string]string{"default": pluginID})
		return err == nil && code == http.StatusOK, fmt.Sprintf("%d %s %v", code, out, err)
	})
}

// runRclone copies dir's n files into bucket with `rclone copy --transfers
// 16`, configured through the environment only (an S3 remote of provider
// Other, path style, region auto), and returns the wall seconds, its CPU
// time and versitygw's meanwhile.
func runRclone(b *testing.B, rclone string, s3 *s3test.Server, dir, bucket string, n int) (float64, time.Duration, time.Duration) {
	b.Helper()
	conf := filepath.Join(b.TempDir(), "rclone.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		// AWS_CA_BUNDLE and the rest of AWS_* and RCLONE_* would
		// configure rclone beside the settings below.
		if strings.HasPrefix(name, "AWS_") || strings.HasPrefix(name, "RCLONE_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"RCLONE_CONFIG="+conf,
		"RCLONE_CONFIG_BENCH_TYPE=s3",
		"RCLONE_CONFIG_BENCH_PROVIDER=Other",
		"RCLONE_CONFIG_BENCH_ENV_AUTH=false",
		"RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="+s3.AccessKey,
		"RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="+s3.SecretKey,
		"RCLONE_CONFIG_BENCH_ENDPOINT="+s3.Endpoint,
		"RCLONE_CONFIG_BENCH_REGION="+s3.Region,
		"RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true",
	)
	var logs plugintest.Logs
	cmd := exec.Command(rclone, "copy", dir, "bench:"+bucket, "--transfers", strconv.Itoa(rcloneTransfer))
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	vgw0 := processCPU(b, s3.Pid())
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("rclone copy: %v\n%s", err, logs.String())
	}
	secs := time.Since(start).Seconds()
	vgw := processCPU(b, s3.Pid()) - vgw0
	if got := len(s3.Keys(b, bucket)); got != n {
		b.Fatalf("rclone copied %d objects to %s, want %d", got, bucket, n)
	}
	return secs, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), vgw
}

// startPerf starts `perf record -g` on the processes, writing to out, and
// returns the function that stops it and waits for the file.
func startPerf(b *testing.B, out string, pids []int) func() {
	b.Helper()
	list := make([]string, len(pids))
	for i, p := range pids {
		list[i] = strconv.Itoa(p)
	}
	var logs plugintest.Logs
	cmd := exec.Command("perf", "record", "-g", "-F", "499", "-o", out, "-p", strings.Join(list, ","))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		b.Fatalf("%s is set but perf does not start (apt-get install -y linux-perf): %v", perfEnv, err)
	}
	time.Sleep(500 * time.Millisecond) // perf attaches before the offload starts
	return func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait() // perf exits by the interrupt; the file tells whether it worked
		if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
			b.Logf("perf record wrote no profile to %s:\n%s", out, logs.String())
		}
	}
}

// writeCatalog writes a signed catalog offering this tree's R2 plugin
// (free) and its public key; it returns the index's file:// URL and the
// key file.
func writeCatalog(b *testing.B) (indexURL, pubKeyFile string) {
	b.Helper()
	binary, err := os.ReadFile(pluginBin.Build(b, "./plugin/cmd/cloudflare-r2"))
	if err != nil {
		b.Fatalf("reading the plugin binary: %v", err)
	}
	return markettest.FreeR2Catalog(b, version, binary)
}

// call sends a JSON request (body may be nil) with the bearer token (none
// if empty) and returns the status and answer.
func (h *host) call(method, path, token string, body any) (int, []byte, error) {
	return plugintest.CallJSON(h.addr, method, path, token, body)
}

// waitFor polls cond every interval until it holds; cond also says what
// it last saw, for the failure message.
func (h *host) waitFor(b *testing.B, d time.Duration, what string, interval time.Duration, cond func() (bool, string)) {
	b.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %v waiting for %s (last: %s)\n%s", d, what, last, h.logs)
		}
		time.Sleep(interval)
	}
}

// countFiles counts the regular files under dir.
func countFiles(b *testing.B, dir string) int {
	b.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if err != nil {
		b.Fatalf("counting the results files: %v", err)
	}
	return n
}

// warmFiles reads every regular file under dir once, so that the side
// measured next finds them in the page cache as the other side did.
func warmFiles(b *testing.B, dir string) {
	b.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(io.Discard, f)
		return err
	})
	if err != nil {
		b.Fatalf("reading the results files into the page cache: %v", err)
	}
}

// children returns the live child processes of pid (a host's plugins).
func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, c := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(c); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// resetPeak resets a process's peak RSS (VmHWM) to its current RSS, so the
// peak read later covers only what follows.
func resetPeak(b *testing.B, pid int) {
	b.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		b.Fatalf("resetting the peak RSS of process %d (needs Linux /proc/PID/clear_refs and the right to write it): %v", pid, err)
	}
}

// processCPU is plugintest.ProcessCPU (pid and its children), failing the
// benchmark if /proc cannot tell.
func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	d, err := plugintest.ProcessCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// pluginCPU sums the CPU time of the plugin processes.
func pluginCPU(b *testing.B, pids []int) time.Duration {
	b.Helper()
	var total time.Duration
	for _, pid := range pids {
		total += processCPU(b, pid)
	}
	return total
}

func peakRSS(b *testing.B, pid int) int64 {
	b.Helper()
	n, err := plugintest.PeakRSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func freeAddr(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
