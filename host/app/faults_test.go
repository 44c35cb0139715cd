package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/internal/testdb"
)

// pluginPid returns the running plugin's pid, waiting up to 30 s for the
// plugin to run (between launches it has none).
func (h *host) pluginPid() int {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _ := h.app.Runtime.Status(pluginID)
		if st.State == pluginrt.StateRunning && st.Pid > 0 {
			return st.Pid
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the plugin is not running after 30 s: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killPid SIGKILLs process pid. It refuses pid 0 or below, which kill(2)
// reads as "every process in the caller's process group" (the test, go
// test and the shell that started them): a plugin between launches has
// no pid.
func killPid(t testing.TB, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("refusing to kill pid %d: no process to kill (the plugin is not running)", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing pid %d: %v", pid, err)
	}
}

func (h *host) pending() int {
	n, err := h.app.Results.Pending(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// readable checks a result serves its bytes: locally, or from the bucket
// object its redirect names.
func (h *host) readable(r resultBody, want []byte) {
	h.t.Helper()
	cur := h.result(r.ID)
	code, body, loc := h.content(r.ID)
	switch {
	case cur.Storage == "local" && code == http.StatusOK:
		if !bytes.Equal(body, want) {
			h.t.Fatalf("result %s: local content differs", r.ID)
		}
	case cur.Storage == pluginID && code == http.StatusFound && loc == cur.URL:
		if !bytes.Equal(h.s3.GetObject(h.t, bucket, "magicads/"+cur.Path), want) {
			h.t.Fatalf("result %s: bucket content differs", r.ID)
		}
	default:
		h.t.Fatalf("result %s (%s) not readable: %d %q", r.ID, cur.Storage, code, loc)
	}
}

// TestPluginKilledMidUpload: SIGKILL the plugin during a 64 MiB offload.
// The result stays local and readable, the plugin restarts, and the retry
// lands it in the bucket exactly once.
func TestPluginKilledMidUpload(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)
			h.configure()
			pid := h.pluginPid()
			if pid <= 0 {
				t.Fatalf("the plugin has no process to kill (pid %d)", pid)
			}
			killed := make(chan struct{})
			go func() {
				defer close(killed)
				deadline := time.Now().Add(30 * time.Second)
				for time.Now().Before(deadline) {
					if len(h.s3.MultipartUploads(t, bucket)) > 0 {
						syscall.Kill(pid, syscall.SIGKILL)
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
			}()
			data := pngBytes(64<<20 + 1)
			r := h.upload(data, "big.png")
			<-killed
			if r.Storage != "local" {
				t.Fatalf("the upload was not interrupted (storage %s): the kill came too late", r.Storage)
			}
			h.readable(r, data)
			waitFor(t, 20*time.Second, "the plugin to restart", func() bool {
				st, _ := h.app.Runtime.Status(pluginID)
				return st.State == pluginrt.StateRunning && st.Pid != pid
			})
			waitFor(t, 30*time.Second, "the retry to offload the result", func() bool { return h.result(r.ID).Storage == pluginID })
			h.readable(r, data)
			if n := countPrefix(h.objects(), "magicads/"+r.Path); n != 1 {
				t.Fatalf("%d objects for the result, want exactly 1", n)
			}
			if h.pending() != 0 {
				t.Fatalf("%d jobs left", h.pending())
			}
		})
	}
}

// TestS3Outage: with the S3 server stopped, results stay local and are
// offloaded when it returns.
func TestS3Outage(t *testing.T) {
	h := newHost(t, "postgres")
	h.configure()
	h.s3.Stop()
	var rs []resultBody
	var datas [][]byte
	for i := 0; i < 3; i++ {
		data := pngBytes(10 << 10)
		r := h.upload(data, fmt.Sprintf("outage-%d.png", i))
		if r.Storage != "local" {
			t.Fatalf("offloaded during an outage: %+v", r)
		}
		h.readable(r, data)
		rs, datas = append(rs, r), append(datas, data)
	}
	if h.pending() != 3 {
		t.Fatalf("%d jobs queued, want 3", h.pending())
	}
	h.s3.Start()
	waitFor(t, 30*time.Second, "the queued offloads", func() bool { return h.pending() == 0 })
	for i, r := range rs {
		if h.result(r.ID).Storage != pluginID {
			t.Fatalf("result %d still local after the server returned", i)
		}
		h.readable(r, datas[i])
	}
}

// TestConcurrentFinalizationsWithAKill: 200 concurrent results, one plugin
// kill in the middle; every result readable and in exactly one place.
func TestConcurrentFinalizationsWithAKill(t *testing.T) {
	h := newHost(t, "postgres")
	h.configure("delete_local", true)
	const n = 200
	rs := make([]resultBody, n)
	datas := make([][]byte, n)
	var wg sync.WaitGroup
	var done sync.WaitGroup
	done.Add(n / 2)
	sem := make(chan struct{}, 32)
	for i := 0; i < n; i++ {
		datas[i] = pngBytes(20<<10 + i)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rs[i] = h.upload(datas[i], fmt.Sprintf("c%d.png", i))
			if i < n/2 {
				done.Done()
			}
		}(i)
	}
	done.Wait()
	killPid(t, h.pluginPid())
	wg.Wait()
	waitFor(t, 60*time.Second, "every offload", func() bool { return h.pending() == 0 })
	keys := h.objects()
	local := 0
	for i, r := range rs {
		cur := h.result(r.ID)
		onDisk := fileExists(h.dataDir + "/results/" + cur.Path)
		inBucket := hasKey(keys, "magicads/"+cur.Path)
		switch cur.Storage {
		case pluginID:
			if !inBucket || onDisk {
				t.Errorf("result %d offloaded but bucket=%v disk=%v", i, inBucket, onDisk)
			}
		case "local":
			local++
			if inBucket || !onDisk {
				t.Errorf("result %d local but bucket=%v disk=%v", i, inBucket, onDisk)
			}
		}
		h.readable(r, datas[i])
	}
	if local != 0 {
		t.Errorf("%d results stayed local although the provider came back", local)
	}
	if got := countPrefix(keys, "magicads/images/"); got != n {
		t.Fatalf("%d objects in the bucket, want %d", got, n)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestWrongAppKeyAndCorruptEntry: settings that cannot be decrypted name the
// entry; the provider is treated as unconfigured and local keeps working.
func TestWrongAppKeyAndCorruptEntry(t *testing.T) {
	h := newHost(t, "sqlite")
	h.configure()
	h.stop()
	h.start(appKey()) // another APP_KEY
	// The install record does not verify under another key: the plugin is
	// not launched, and says why.
	if st := h.app.Providers.Plugins(); len(st) != 1 || st[0].State != "failed" || !strings.Contains(st[0].Message, "APP_KEY") {
		t.Fatalf("plugin under another APP_KEY: %+v", st)
	}
	var st struct {
		Default, Warning string
		Options          []struct{ ID string }
	}
	if code := h.do("GET", "/api/v1/admin/storage", nil, &st); code != 200 || len(st.Options) != 1 || st.Default != "local" || !strings.Contains(st.Warning, "storage.default") {
		t.Fatalf("storage with a wrong APP_KEY: %d %+v", code, st)
	}
	var e struct{ Error string }
	code := h.do("GET", "/api/v1/admin/plugins/"+pluginID+"/settings", nil, &e)
	if code != http.StatusInternalServerError || !strings.Contains(e.Error, "storage.provider.cloudflare-r2") {
		t.Fatalf("settings with a wrong APP_KEY: %d %q", code, e.Error)
	}
	if r := h.upload(pngBytes(100), "x.png"); r.Storage != "local" {
		t.Fatalf("stored in %s with unreadable settings", r.Storage)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "storage.default") || !strings.Contains(logs, "install record") {
		t.Fatal("the log does not name the unreadable entry and the refused install record")
	}
	// A corrupt blob under the right key behaves the same.
	if _, err := h.app.DB.Exec(`UPDATE settings SET value = $1 WHERE name = 'storage.provider.cloudflare-r2'`, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	code = h.do("GET", "/api/v1/admin/plugins/"+pluginID+"/settings", nil, &e)
	if code != http.StatusInternalServerError || !strings.Contains(e.Error, "storage.provider.cloudflare-r2") {
		t.Fatalf("corrupt settings: %d %q", code, e.Error)
	}
}

// TestShutdownStopsThePlugin: closing the host leaves no plugin process.
func TestShutdownStopsThePlugin(t *testing.T) {
	h := newHost(t, "sqlite")
	pid := h.pluginPid()
	if pid == 0 {
		t.Fatal("no plugin pid")
	}
	h.stop()
	h.app, h.srv = nil, nil
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("plugin process %d still exists after shutdown", pid)
	}
}

// TestCrashLoopFallsBackToLocal: after repeated crashes the plugin is
// failed, the admin sees why, and new results stay local.
func TestCrashLoopFallsBackToLocal(t *testing.T) {
	h := newHost(t, "sqlite")
	h.configure()
	for i := 0; i < 5; i++ { // fastOptions: 5 crashes within a minute trip the breaker
		if st, _ := h.app.Runtime.Status(pluginID); st.State == pluginrt.StateFailed {
			break // a slow restart counted as a crash too
		}
		pid := h.pluginPid()
		killPid(t, pid)
		waitFor(t, 20*time.Second, "the plugin to restart or fail", func() bool {
			st, _ := h.app.Runtime.Status(pluginID)
			return st.State == pluginrt.StateFailed || (st.State == pluginrt.StateRunning && st.Pid != pid)
		})
	}
	var list struct {
		Plugins []struct{ ID, State, Message string }
	}
	h.do("GET", "/api/v1/admin/plugins", nil, &list)
	if len(list.Plugins) != 1 || list.Plugins[0].State != "failed" || list.Plugins[0].Message == "" {
		t.Fatalf("admin view after a crash loop: %+v", list)
	}
	if r := h.upload(pngBytes(100), "after.png"); r.Storage != "local" {
		t.Fatalf("a failed plugin still takes results: %s", r.Storage)
	}
	if h.pending() != 0 {
		t.Fatalf("%d jobs queued for a failed plugin; results must simply stay local", h.pending())
	}
}
