//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/internal/markettest"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/internal/testdb"
)

// The settings of BenchmarkConcurrentUploads, read from the environment so
// that scripts/bench-uploads can run the same load against another build.
const (
	// benchSecondsEnv is how long each load runs, in seconds (default 60).
	benchSecondsEnv = "MAGICADS_BENCH_SECONDS"
	// benchHostBinEnv is a prebuilt `magicads` binary to measure instead
	// of this test binary's host.
	benchHostBinEnv = "MAGICADS_BENCH_HOST_BIN"
	// benchPluginBinEnv is a prebuilt R2 plugin binary to install instead
	// of one built from this tree.
	benchPluginBinEnv = "MAGICADS_BENCH_PLUGIN_BIN"
	// benchPluginTreeEnv is the checkout that binary was built from: its
	// manifest.json, schema/ and migrations/ go into the archive, so an
	// older host gets the settings schema it knows.
	benchPluginTreeEnv = "MAGICADS_BENCH_PLUGIN_TREE"
)

const (
	benchClients      = 32
	benchFileBytes    = 200 << 10
	benchPluginID     = "cloudflare-r2"
	benchBucket       = "magicads-bench"
	benchAdminToken   = "bench-admin-token"
	benchServiceToken = "bench-service-token"
	benchVersion      = "1.0.0" // the manifest's, which the plugin binary reports
	benchDefaultSecs  = 60
)

// benchPlugin builds the R2 plugin of this tree once per test binary.
var benchPlugin plugintest.Builder

// BenchmarkConcurrentUploads is issue 9's throughput benchmark: the host
// runs as a process of its own with the R2 plugin installed from a signed
// catalog and Cloudflare R2 (versitygw, region auto) as Default Storage;
// 32 clients each POST /api/v1/results with a 200 KiB PNG in a loop for
// MAGICADS_BENCH_SECONDS (default 60). It reports created results per
// second, the p50 and p99 latency of every request, the requests that
// failed, and the share of 201s that said the result was stored in R2
// (r2-share) or locally (local-share). Each dialect is a sub-benchmark:
// SQLite in the data dir, and a fresh PostgreSQL schema that the host
// migrates itself, so a host of another version (MAGICADS_BENCH_HOST_BIN,
// MAGICADS_BENCH_PLUGIN_BIN) is measured with the same load.
func BenchmarkConcurrentUploads(b *testing.B) {
	secs, err := benchSeconds()
	if err != nil {
		b.Fatal(err)
	}
	body, contentType := benchForm(b)
	for _, dialect := range testdb.Dialects() {
		b.Run(string(dialect), func(b *testing.B) {
			h := startBenchHost(b, dialect)
			h.warmUp(b, body, contentType)
			var total loadResult
			cpu0, cpuErr := plugintest.ProcessCPU(h.pid)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				total.add(runLoad(h.addr, body, contentType, benchClients, secs))
			}
			b.StopTimer()
			total.report(b)
			// CPU per result of the host and its plugin: what the work
			// costs, which a busy or noisy machine moves far less than
			// the rate.
			if cpu1, err := plugintest.ProcessCPU(h.pid); err == nil && cpuErr == nil && total.created > 0 {
				b.ReportMetric(float64((cpu1-cpu0).Microseconds())/1000/float64(total.created), "cpu-ms/result")
			}
			if total.errors > 0 {
				b.Logf("%d requests failed; the first: %s", total.errors, total.firstError)
			}
		})
	}
}

func benchSeconds() (time.Duration, error) {
	v := os.Getenv(benchSecondsEnv)
	if v == "" {
		return benchDefaultSecs * time.Second, nil
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || n <= 0 || n > 3600 {
		return 0, fmt.Errorf("%s must be a number of seconds from 1 to 3600, got %q", benchSecondsEnv, v)
	}
	return time.Duration(n * float64(time.Second)), nil
}

// benchForm returns one results form (kind=images, generator=bench and a
// 200 KiB PNG of random bytes), built once so the clients spend no CPU on it.
func benchForm(b *testing.B) ([]byte, string) {
	data := make([]byte, benchFileBytes)
	rand.Read(data)
	copy(data, "\x89PNG\r\n\x1a\n")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("kind", "images")
	mw.WriteField("generator", "bench")
	fw, err := mw.CreateFormFile("file", "bench.png")
	if err != nil {
		b.Fatal(err)
	}
	fw.Write(data)
	if err := mw.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

// benchHost is a running host process under benchmark.
type benchHost struct {
	addr string
	logs *plugintest.Logs
	// pid is the host process's.
	pid int
}

// startBenchHost starts versitygw, a host process on a fresh database of
// the dialect with a signed catalog offering the R2 plugin, and makes R2
// the Default Storage through the admin API, as an admin would. Installing
// through the host's own marketplace works the same for every host version
// that has this admin API, whatever its database schema.
func startBenchHost(b *testing.B, dialect dbmigrate.Dialect) *benchHost {
	b.Helper()
	s3 := s3test.StartVersity(b)
	s3.CreateBucket(b, benchBucket)
	indexURL, pubKey := benchCatalog(b)
	h := &benchHost{addr: freeAddr(b), logs: &plugintest.Logs{}}
	args := []string{"serve", "--addr", h.addr, "--data-dir", b.TempDir(), "--catalog", indexURL, "--trusted-key", pubKey}
	if dialect == dbmigrate.Postgres {
		args = append(args, "--db", testdb.EmptyPostgres(b))
	}
	key := make([]byte, 32)
	rand.Read(key)
	env := []string{
		"APP_KEY=base64:" + base64.StdEncoding.EncodeToString(key),
		"MAGICADS_ADMIN_TOKEN=" + benchAdminToken,
		"MAGICADS_SERVICE_TOKEN=" + benchServiceToken,
		"MAGICADS_ADMIN_PASSWORD=bench-admin-password",
	}
	var cmd *exec.Cmd
	if bin := os.Getenv(benchHostBinEnv); bin != "" {
		cmd = exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
	} else {
		cmd = exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), append(env, hostProcessEnv+"="+strings.Join(args, " "))...)
	}
	// If the benchmark process dies, the host goes too. Its output goes to a
	// buffer, never into the benchmark's lines.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = h.logs, h.logs
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting the host %s: %v", cmd.Path, err)
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
	h.waitFor(b, time.Minute, "the host to answer /healthz", func() (bool, string) {
		select {
		case <-done:
			b.Fatalf("the host exited:\n%s", h.logs)
		default:
		}
		code, out, err := h.call("GET", "/healthz", "", nil)
		return err == nil && code == http.StatusOK, fmt.Sprintf("%d %s %v", code, out, err)
	})

	if code, out, err := h.call("POST", "/api/v1/admin/plugins/"+benchPluginID+"/install", benchAdminToken, nil); err != nil || code != http.StatusOK {
		b.Fatalf("installing the plugin: %d %s %v\n%s", code, out, err, h.logs)
	}
	settings := map[string]any{
		"enabled": true, "delete_local": false,
		"access_key_id": s3.AccessKey, "secret_access_key": s3.SecretKey,
		"bucket": benchBucket, "endpoint": s3.Endpoint, "public_url": "https://pub-bench.r2.dev",
		"key_prefix": "magicads", "use_path_style": true,
	}
	if code, out, err := h.call("PUT", "/api/v1/admin/plugins/"+benchPluginID+"/settings", benchAdminToken, map[string]any{"values": settings}); err != nil || code != http.StatusOK {
		b.Fatalf("saving the R2 settings: %d %s %v\n%s", code, out, err, h.logs)
	}
	// Default Storage takes a provider once its plugin runs.
	h.waitFor(b, time.Minute, "R2 to be accepted as Default Storage", func() (bool, string) {
		code, out, err := h.call("PUT", "/api/v1/admin/storage", benchAdminToken, map[string]string{"default": benchPluginID})
		return err == nil && code == http.StatusOK, fmt.Sprintf("%d %s %v", code, out, err)
	})
	return h
}

// benchCatalog writes a signed catalog offering this plugin binary (free)
// and its public key; it returns the index's file:// URL and the key file.
func benchCatalog(b *testing.B) (indexURL, pubKeyFile string) {
	b.Helper()
	bin := os.Getenv(benchPluginBinEnv)
	if bin == "" {
		bin = benchPlugin.Build(b, "./plugin/cmd/cloudflare-r2")
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		b.Fatalf("reading the plugin binary: %v", err)
	}
	if tree := os.Getenv(benchPluginTreeEnv); tree != "" {
		return markettest.FreeR2CatalogOf(b, markettest.BundleOf(b, os.DirFS(tree), benchVersion, binary, nil), benchVersion)
	}
	return markettest.FreeR2Catalog(b, benchVersion, binary)
}

// call sends a JSON request (body may be nil) with the bearer token (none
// if empty) and returns the status and answer.
func (h *benchHost) call(method, path, token string, body any) (int, []byte, error) {
	return plugintest.CallJSON(h.addr, method, path, token, body)
}

// waitFor polls cond until it holds; cond also says what it last saw,
// for the failure message.
func (h *benchHost) waitFor(b *testing.B, d time.Duration, what string, cond func() (bool, string)) {
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
		time.Sleep(50 * time.Millisecond)
	}
}

// warmUp uploads one result and waits until it is stored in R2, which
// proves the plugin is installed, configured and the Default Storage.
func (h *benchHost) warmUp(b *testing.B, body []byte, contentType string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+h.addr+"/api/v1/results", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+benchServiceToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatalf("warm-up upload: %v", err)
	}
	var res struct {
		ID      string `json:"id"`
		Storage string `json:"storage"`
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(data, &res) != nil || res.ID == "" {
		b.Fatalf("warm-up upload: %d %s\n%s", resp.StatusCode, data, h.logs)
	}
	h.waitFor(b, time.Minute, "the warm-up result to be stored in R2", func() (bool, string) {
		if res.Storage == benchPluginID {
			return true, ""
		}
		code, out, err := h.call("GET", "/api/v1/results/"+res.ID, benchServiceToken, nil)
		return err == nil && code == http.StatusOK && json.Unmarshal(out, &res) == nil && res.Storage == benchPluginID,
			fmt.Sprintf("%d %s %v", code, out, err)
	})
}

// loadResult is what one or more loads measured.
type loadResult struct {
	elapsed    time.Duration
	created    int // 201s
	r2, local  int // 201s by the storage they named
	errors     int // transport errors and any status but 201
	firstError string
	latencies  []time.Duration // of every request, failed ones too
}

func (r *loadResult) add(o loadResult) {
	r.elapsed += o.elapsed
	r.created += o.created
	r.r2 += o.r2
	r.local += o.local
	r.errors += o.errors
	if r.firstError == "" {
		r.firstError = o.firstError
	}
	r.latencies = append(r.latencies, o.latencies...)
}

func (r *loadResult) report(b *testing.B) {
	slices.Sort(r.latencies)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(float64(r.created)/r.elapsed.Seconds(), "results/s")
	b.ReportMetric(ms(percentile(r.latencies, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(r.latencies, 0.99)), "p99-ms")
	b.ReportMetric(float64(r.errors), "errors")
	if r.created > 0 {
		b.ReportMetric(float64(r.r2)/float64(r.created), "r2-share")
		b.ReportMetric(float64(r.local)/float64(r.created), "local-share")
	}
}

// percentile is the nearest-rank percentile of sorted latencies (0 if none).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// runLoad runs clients that each POST the form in a loop and start no new
// request after d; the rate counts until the last request answered.
func runLoad(addr string, body []byte, contentType string, clients int, d time.Duration) loadResult {
	tr := &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	start := time.Now()
	deadline := start.Add(d)
	parts := make([]loadResult, clients)
	var wg sync.WaitGroup
	for c := range parts {
		wg.Add(1)
		go func(r *loadResult) {
			defer wg.Done()
			for time.Now().Before(deadline) {
				t0 := time.Now()
				storage, err := postOnce(client, addr, body, contentType)
				r.latencies = append(r.latencies, time.Since(t0))
				switch {
				case err != nil:
					r.errors++
					if r.firstError == "" {
						r.firstError = err.Error()
					}
				case storage == benchPluginID:
					r.created++
					r.r2++
				default:
					r.created++
					r.local++
				}
			}
		}(&parts[c])
	}
	wg.Wait()
	total := loadResult{elapsed: time.Since(start)}
	for _, p := range parts {
		total.add(p)
	}
	return total
}

// postOnce creates one result and returns the storage its 201 named.
func postOnce(client *http.Client, addr string, body []byte, contentType string) (string, error) {
	req, err := http.NewRequest("POST", "http://"+addr+"/api/v1/results", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+benchServiceToken)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("%s: %.200s", resp.Status, data)
	}
	var res struct {
		Storage string `json:"storage"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return "", fmt.Errorf("decoding the 201: %w", err)
	}
	return res.Storage, nil
}
