package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/internal/markettest"
	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/internal/testdb"
)

// inlineBound is the documented bound on how long finalizing waits for
// the inline upload (results.Options.InlineOffloadTimeout's default).
const inlineBound = 5 * time.Second

// posted is one POST /api/v1/results outcome.
type posted struct {
	res  resultBody
	data []byte
	took time.Duration
	err  error
}

// tryUpload finalizes a result through the API without failing the test,
// so it can run off the test's goroutine.
func (h *host) tryUpload(data []byte) posted {
	form, contentType := resultForm(data, "r.png")
	req, _ := http.NewRequest("POST", h.srv.URL+"/api/v1/results", form)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	client := &http.Client{Timeout: 3 * time.Minute}
	start := time.Now()
	resp, err := client.Do(req)
	p := posted{data: data}
	if err != nil {
		p.took, p.err = time.Since(start), err
		return p
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p.took = time.Since(start)
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &p.res) != nil {
		p.err = fmt.Errorf("POST /api/v1/results: %d %s", resp.StatusCode, body)
	}
	return p
}

// burst posts n results, conc at a time, and returns them in order.
func (h *host) burst(n, conc, size int) []posted {
	out := make([]posted, n)
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = h.tryUpload(pngBytes(size + i))
		}()
	}
	wg.Wait()
	return out
}

// allOffloaded waits until every result lives in the bucket and no job is
// left, then checks each is readable there.
func (h *host) allOffloaded(within time.Duration, ps []posted) time.Duration {
	h.t.Helper()
	start := time.Now()
	waitFor(h.t, within, "every result to be offloaded", func() bool {
		if h.pending() != 0 {
			return false
		}
		for _, p := range ps {
			if h.result(p.res.ID).Storage != pluginID {
				return false
			}
		}
		return true
	})
	took := time.Since(start)
	for _, p := range ps {
		h.readable(p.res, p.data)
	}
	return took
}

// localWithoutJob counts results recorded local that no job will offload.
func (h *host) localWithoutJob() int {
	h.t.Helper()
	var n int
	err := h.app.DB.QueryRow(`SELECT COUNT(*) FROM results r WHERE r.storage = 'local' AND r.deleted = $1
		AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.result_id = r.id AND j.kind = 'offload')`, false).Scan(&n)
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func checkPosted(t *testing.T, ps []posted, storage string) {
	t.Helper()
	for i, p := range ps {
		if p.err != nil {
			t.Fatalf("result %d: %v", i, p.err)
		}
		if storage != "" && p.res.Storage != storage {
			t.Fatalf("result %d answered storage %q, want %q", i, p.res.Storage, storage)
		}
	}
}

// blackholed starts a host whose R2 endpoint goes through a blackhole proxy.
func blackholed(t *testing.T, d dbmigrate.Dialect) (*host, *s3test.Blackhole) {
	h := newHost(t, d)
	bh := s3test.NewBlackhole(t, strings.TrimPrefix(h.s3.Endpoint, "http://"))
	h.configure("endpoint", bh.Endpoint)
	return h, bh
}

// TestS3BlackholedFinalizeStaysBounded: with S3 blackholed, every POST
// answers 201 local within the inline bound, and once S3 is back every
// result lands without waiting for the dead connections' old 2-minute
// timeout.
func TestS3BlackholedFinalizeStaysBounded(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h, bh := blackholed(t, d)
			if r := h.upload(pngBytes(50<<10), "warm.png"); r.Storage != pluginID {
				t.Fatalf("before the blackhole: %+v", r)
			}
			bh.SetBlackhole(true)
			ps := h.burst(8, 8, 100<<10)
			checkPosted(t, ps, "local")
			var slowest time.Duration
			for i, p := range ps {
				slowest = max(slowest, p.took)
				if p.took > inlineBound+3*time.Second {
					t.Errorf("POST %d took %v with S3 blackholed (bound %v)", i, p.took.Round(time.Millisecond), inlineBound)
				}
			}
			t.Logf("slowest POST with S3 blackholed: %v", slowest.Round(time.Millisecond))
			time.Sleep(3 * time.Second) // the queue's attempts are on dead connections now
			bh.SetBlackhole(false)
			took := h.allOffloaded(90*time.Second, ps)
			t.Logf("all results offloaded %v after S3 came back", took.Round(time.Millisecond))
			if took > 40*time.Second {
				t.Fatalf("the queue took %v after S3 came back: it waited on dead connections", took)
			}
		})
	}
}

// TestResultsQueuedWhileProviderUnusable: while R2 is the Default Storage
// but momentarily unusable (its settings or the Default Storage entry
// unreadable, the plugin being updated), results are answered local and
// queued for R2, and jobs queued earlier are kept, not dropped.
func TestResultsQueuedWhileProviderUnusable(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)
			h.configure()
			if r := h.upload(pngBytes(1000), "warm.png"); r.Storage != pluginID {
				t.Fatalf("before: %+v", r)
			}
			var all []posted
			for _, entry := range []string{"storage.default", providers.EntryName(pluginID)} {
				// Jobs queued while S3 is down…
				h.s3.Stop()
				early := h.burst(5, 5, 2000)
				checkPosted(t, early, "local")
				// …and results finalized while the entry cannot be read.
				saved := h.corruptEntry(entry)
				h.s3.Start()
				during := h.burst(20, 8, 3000)
				checkPosted(t, during, "local")
				time.Sleep(1500 * time.Millisecond) // the workers try the queued jobs meanwhile
				h.restoreEntry(entry, saved)
				if n := h.localWithoutJob(); n != 0 {
					t.Fatalf("%s unreadable: %d results local without a job", entry, n)
				}
				h.allOffloaded(30*time.Second, append(early, during...))
				all = append(all, append(early, during...)...)
			}
			// A plugin update: the new version's record exists before its
			// plugin is configured.
			upd := make(chan error, 1)
			var ps []posted
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				ps = h.burst(120, 8, 4000)
			}()
			time.Sleep(100 * time.Millisecond)
			go func() { upd <- h.update("1.0.1") }()
			wg.Wait()
			if err := <-upd; err != nil {
				t.Fatalf("updating the plugin: %v", err)
			}
			checkPosted(t, ps, "")
			local := 0
			for _, p := range ps {
				if p.res.Storage == "local" {
					local++
				}
			}
			t.Logf("%d of %d results answered local during the update", local, len(ps))
			if n := h.localWithoutJob(); n != 0 {
				t.Fatalf("during the update: %d results local without a job", n)
			}
			h.allOffloaded(30*time.Second, append(all, ps...))
		})
	}
}

// corruptEntry replaces a settings entry's ciphertext with garbage and
// returns the original.
func (h *host) corruptEntry(name string) []byte {
	h.t.Helper()
	var saved []byte
	if err := h.app.DB.QueryRow(`SELECT value FROM settings WHERE name = $1`, name).Scan(&saved); err != nil {
		h.t.Fatalf("reading %s: %v", name, err)
	}
	if _, err := h.app.DB.Exec(`UPDATE settings SET value = $1 WHERE name = $2`, []byte("garbage"), name); err != nil {
		h.t.Fatal(err)
	}
	return saved
}

func (h *host) restoreEntry(name string, saved []byte) {
	h.t.Helper()
	if _, err := h.app.DB.Exec(`UPDATE settings SET value = $1 WHERE name = $2`, saved, name); err != nil {
		h.t.Fatal(err)
	}
}

// update installs the same plugin binary as another version.
func (h *host) update(version string) error {
	bin := pluginBin.Build(h.t, "./plugin/cmd/cloudflare-r2")
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	dir := h.t.TempDir()
	for _, f := range markettest.Bundle(h.t, version, data, nil) {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, os.FileMode(f.Mode)); err != nil {
			return err
		}
	}
	exe := filepath.Join(dir, "bin", "cloudflare-r2")
	return h.app.Providers.Register(context.Background(), providers.Installed{ID: pluginID, Version: version, Dir: dir, BinaryPath: exe, SHA256: fileSHA256(h.t, exe)})
}

// crashing hands over the running app, to be treated as a process about to
// die: the host restarts beside it, and it is closed when the test ends.
func (h *host) crashing() *app.App {
	crashed, crashedSrv := h.app, h.srv
	h.t.Cleanup(func() {
		crashedSrv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		crashed.Close(ctx)
	})
	return crashed
}

// TestLeasesReleasedOnRestart: a host dies while its inline upload holds a
// job's lease; the restarted host (same data dir, same database) releases
// that lease at once and lands the result in seconds, not after the lease
// expires.
func TestLeasesReleasedOnRestart(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h, bh := blackholed(t, d)
			bh.SetBlackhole(true)
			crashed := h.crashing()
			done := make(chan posted, 1)
			go func() { done <- h.tryUpload(pngBytes(30 << 10)) }()
			// Wait until the inline attempt holds the job's lease.
			waitFor(t, 10*time.Second, "the inline upload to hold its lease", func() bool {
				var n int
				crashed.DB.QueryRow(`SELECT COUNT(*) FROM jobs WHERE locked_until IS NOT NULL`).Scan(&n)
				return n == 1
			})
			// The host dies: nothing it does from now on reaches the
			// database, and its plugin is gone.
			crashed.DB.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			crashed.Runtime.Close(ctx)
			cancel()
			app.LoseDataDirLock(crashed) // the process is gone
			p := <-done
			if p.err != nil {
				t.Fatalf("the POST in flight: %v", p.err)
			}
			bh.SetBlackhole(false)
			h.start(h.key)
			h.waitRunning()
			start := time.Now()
			h.allOffloaded(60*time.Second, []posted{p})
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("the restarted host took %v to resume the interrupted job", took)
			}
		})
	}
}
