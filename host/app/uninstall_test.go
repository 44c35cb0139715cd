package app_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/internal/faultproxy"
	"github.com/magicads/r2storage/internal/testdb"
)

// orphans returns the bucket's result objects that no live result row
// records as stored there (the key prefix is "magicads").
func (h *host) orphans() []string {
	h.t.Helper()
	var out []string
	for _, k := range h.objects() {
		path, ok := strings.CutPrefix(k, "magicads/")
		if !ok || !(strings.HasPrefix(path, "images/") || strings.HasPrefix(path, "videos/")) {
			continue
		}
		var n int
		// object_key is the full key, or the key given to Put for a
		// legacy row (no bucket).
		err := h.app.DB.QueryRow(`SELECT COUNT(*) FROM results WHERE storage = $1 AND ((bucket <> '' AND object_key = $2) OR (bucket = '' AND object_key = $3))`,
			pluginID, k, path).Scan(&n)
		if err != nil {
			h.t.Fatal(err)
		}
		if n == 0 {
			out = append(out, k)
		}
	}
	return out
}

// uninstall uninstalls the R2 plugin through the admin API.
func (h *host) uninstall() int {
	return h.do("POST", "/api/v1/admin/plugins/"+pluginID+"/uninstall", nil, nil)
}

// TestUninstallMidUploadLeavesNoOrphan: uploads whose objects landed in
// the bucket but whose answers are still on the way when the admin
// uninstalls the plugin: the uninstall lets them finish and be recorded
// before it stops the plugin, so no object is left without a row.
func TestUninstallMidUploadLeavesNoOrphan(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)
			proxy, err := faultproxy.Start(strings.TrimPrefix(h.s3.Endpoint, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { proxy.Close() })
			h.configure("endpoint", "http://"+proxy.Addr())
			if r := h.upload(pngBytes(2000), "warm.png"); r.Storage != pluginID {
				t.Fatalf("before: %+v", r)
			}
			proxy.SetMode(faultproxy.Mute)
			var ps []posted
			var wg sync.WaitGroup
			wg.Go(func() { ps = h.burst(12, 12, 20<<10) })
			// The objects land; their answers are held.
			waitFor(t, 20*time.Second, "the uploads' objects to land", func() bool { return len(h.orphans()) >= 6 })
			code := make(chan int, 1)
			go func() { code <- h.uninstall() }()
			time.Sleep(2 * time.Second)
			proxy.SetMode(faultproxy.Pass)
			if c := <-code; c != 200 {
				t.Fatalf("uninstall: %d\n%s", c, h.logs)
			}
			wg.Wait()
			checkPosted(t, ps, "")
			if o := h.orphans(); len(o) != 0 {
				t.Fatalf("%d bucket objects without a row after the uninstall: %v", len(o), o)
			}
			for _, p := range ps {
				h.readable(h.result(p.res.ID), p.data)
			}
		})
	}
}

// TestBurstThroughUpdateAndUninstall: 600 results finalized while the
// plugin is updated and then uninstalled. While R2 is the Default Storage
// no result is left local without a job; afterwards no bucket object is
// without a row and every result is readable where it is recorded.
func TestBurstThroughUpdateAndUninstall(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)
			h.configure()
			const n = 600
			var ps []posted
			var wg sync.WaitGroup
			wg.Go(func() { ps = h.burst(n, 16, 3000) })
			finalized := func() int {
				var c int
				h.app.DB.QueryRow(`SELECT COUNT(*) FROM results`).Scan(&c)
				return c
			}
			waitFor(t, 60*time.Second, "a third of the burst", func() bool { return finalized() >= n/3 })
			if err := h.update("1.0.1"); err != nil {
				t.Fatalf("updating the plugin: %v", err)
			}
			if c := h.localWithoutJob(); c != 0 {
				t.Fatalf("after the update: %d results local without a job while R2 is the Default Storage", c)
			}
			waitFor(t, 60*time.Second, "two thirds of the burst", func() bool { return finalized() >= 2*n/3 })
			if c := h.uninstall(); c != 200 {
				t.Fatalf("uninstall: %d\n%s", c, h.logs)
			}
			wg.Wait()
			checkPosted(t, ps, "")
			waitFor(t, 30*time.Second, "the queue to settle", func() bool { return h.pending() == 0 })
			if o := h.orphans(); len(o) != 0 {
				t.Fatalf("%d bucket objects without a row: %v", len(o), o)
			}
			inR2 := 0
			for _, p := range ps {
				r := h.result(p.res.ID)
				if r.Storage == pluginID {
					inR2++
				}
				h.readable(r, p.data)
			}
			t.Logf("%d of %d results in R2, the rest local after the uninstall", inR2, n)
		})
	}
}
