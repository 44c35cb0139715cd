//go:build linux

package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/internal/testdb"
)

// bulkProgress is the part of a bulk run the tests read.
type bulkProgress struct {
	ID    int64  `json:"id"`
	State string `json:"state"`
	Total struct {
		Results, Bytes int64
	} `json:"total"`
	Done struct {
		Results, Bytes int64
	} `json:"done"`
	Failed struct {
		Results int64
	} `json:"failed"`
	Remaining struct {
		Results int64
	} `json:"remaining"`
	Failures []struct {
		ResultID string `json:"result_id"`
		Error    string `json:"error"`
	} `json:"failures"`
	FinishedAt *time.Time `json:"finished_at"`
}

// admin calls the admin API of the running host process with a JSON body.
func (r *crashRig) admin(method, path string, body, out any) int {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, r.proc.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := noRedirect.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			r.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

// storedIn counts the live results whose storage is where.
func (r *crashRig) storedIn(where string) int {
	r.t.Helper()
	var n int
	if err := r.db.QueryRow("SELECT COUNT(*) FROM results WHERE storage = $1 AND deleted = $2", where, false).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// bulkDone counts the done items of a bulk run in the database.
func (r *crashRig) bulkDone(run int64) (n, bytes int64) {
	r.t.Helper()
	if err := r.db.QueryRow("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM bulk_items WHERE run_id = $1 AND state = 'done'", run).Scan(&n, &bytes); err != nil {
		r.t.Fatal(err)
	}
	return n, bytes
}

// objectTimes lists the bucket's objects with their modification times.
func (r *crashRig) objectTimes() map[string]time.Time { return objectTimes(r.t, r.s3) }

// objectTimes lists the bucket's objects with their LastModified.
func objectTimes(t *testing.T, srv *s3test.Server) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	p := s3.NewListObjectsV2Paginator(srv.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatalf("listing the bucket: %v", err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = aws.ToTime(o.LastModified)
		}
	}
	return out
}

// waitBulk polls a run until it is in state, for at most d.
func (r *crashRig) waitBulk(run int64, state string, d time.Duration) bulkProgress {
	r.t.Helper()
	var p bulkProgress
	waitFor(r.t, d, "bulk run "+state, func() bool {
		if code := r.admin("GET", fmt.Sprintf("/api/v1/admin/storage/bulk/%d", run), nil, &p); code != 200 {
			r.t.Fatalf("GET bulk run %d: %d", run, code)
		}
		return p.State == state
	})
	return p
}

// bulkResult is what the test keeps of a result it made: not its bytes
// (10,000 of 100 KiB would hold a gigabyte), their size and sha256.
type bulkResult struct {
	size int64
	sum  string
}

// TestBulkOffloadHostKilled: a bulk offload of results made while Default
// Storage was local, with Delete local copy after upload on, is cut by a
// SIGKILL of the host process halfway and finished by the restarted host:
// every result ends in the bucket with the right bytes, no result recorded
// before the kill is uploaded again (its object was not written after the
// kill), and the progress matches the database. Bringing them all back to
// local then serves every one locally with the right bytes, and still does
// once the plugin is uninstalled.
//
// It makes MAGICADS_BULK_RESULTS results (default 1000) of 100 KiB each.
func TestBulkOffloadHostKilled(t *testing.T) {
	n := bulkResults(t)
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			r := newCrashRig(t, d)
			h := &host{s3: r.s3}
			if code := r.admin("PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", map[string]any{"values": h.settings("endpoint", r.bh.Endpoint, "delete_local", true)}, nil); code != 200 {
				t.Fatalf("saving settings with delete_local: %d", code)
			}
			if code := r.admin("PUT", "/api/v1/admin/storage", map[string]string{"default": "local"}, nil); code != 200 {
				t.Fatalf("setting Default Storage local: %d", code)
			}

			// Make the results, bulkClients at once.
			start := time.Now()
			ids := make([]string, n)
			made := make([]bulkResult, n)
			url := r.proc.url
			if err := forEach(n, bulkClients, func(i int) error {
				b := pngBytes(bulkResultSize + i)
				id, err := postLocalPNG(url, b)
				ids[i], made[i] = id, bulkResult{int64(len(b)), hexSHA256(b)}
				return err
			}); err != nil {
				t.Fatalf("making %d results: %v", n, err)
			}
			want := make(map[string]bulkResult, n)
			var total int64
			for i, id := range ids {
				want[id] = made[i]
				total += made[i].size
			}
			if len(want) != n {
				t.Fatalf("%d results made, %d distinct ids", n, len(want))
			}
			t.Logf("make: %d results (%d bytes) in %v (%.0f results/s)", n, total, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())

			waitFor(t, 30*time.Second, "R2 to be offered again", func() bool {
				return r.admin("PUT", "/api/v1/admin/storage", map[string]string{"default": pluginID}, nil) == 200
			})
			if got := r.storedIn("local"); got != n || r.pending() != 0 {
				t.Fatalf("choosing Default Storage moved results: %d local, %d jobs", got, r.pending())
			}

			var plan struct {
				Provider    string `json:"provider"`
				DeleteLocal bool   `json:"delete_local"`
				Total       struct{ Results, Bytes int64 }
			}
			if code := r.admin("POST", "/api/v1/admin/storage/bulk", map[string]any{"direction": "offload", "dry_run": true}, &plan); code != 200 ||
				plan.Provider != pluginID || !plan.DeleteLocal || plan.Total.Results != int64(n) || plan.Total.Bytes != total {
				t.Fatalf("dry run: %d %+v; want %d results, %d bytes", code, plan, n, total)
			}

			// The throttle makes the whole offload last bulkThrottledRun at
			// least, so the kill at half leaves work at any size, and each
			// upload bulkMinUpload, so that the kill finds jobs leased.
			rate := bulkThrottle(n, total/int64(n))
			r.bh.SetRate(rate)
			start = time.Now()
			var run bulkProgress
			if code := r.admin("POST", "/api/v1/admin/storage/bulk", map[string]any{"direction": "offload"}, &run); code != 201 || run.State != "running" {
				t.Fatalf("starting the offload: %d %+v", code, run)
			}
			var conflict map[string]string
			if code := r.admin("POST", "/api/v1/admin/storage/bulk", map[string]any{"direction": "offload"}, &conflict); code != 409 || conflict["error"] == "" {
				t.Fatalf("a second offload while one runs: %d %v", code, conflict)
			}
			waitFor(t, bulkTimeout(90*time.Second, n/2), "half the results offloaded and offload jobs leased", func() bool {
				return r.storedIn(pluginID) >= n/2 && r.offloadsLeased() > 0
			})
			killedAt := time.Now()
			if err := syscall.Kill(r.proc.pid(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-r.proc.exited
			firstHalf := killedAt.Sub(start)
			leased := r.offloadsLeased()
			before := map[string]string{}
			rows, err := r.db.Query("SELECT id, object_key FROM results WHERE storage = $1", pluginID)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id, key string
				if err := rows.Scan(&id, &key); err != nil {
					t.Fatal(err)
				}
				before[id] = key
			}
			rows.Close()
			t.Logf("at the kill: %d of %d offloaded after %v (throttle %d bytes/s a connection), %d offload jobs leased",
				len(before), n, firstHalf.Round(time.Millisecond), rate, leased)
			if len(before) == n || leased == 0 {
				t.Fatalf("the kill came too late: %d of %d offloaded, %d offload jobs leased", len(before), n, leased)
			}
			// An object written again after the kill has a later time.
			waitFor(t, 5*time.Second, "the next second", func() bool { return time.Now().Truncate(time.Second).After(killedAt) })

			r.bh.SetRate(0)
			restart := time.Now()
			r.start()
			final := r.waitBulk(run.ID, "done", bulkTimeout(2*time.Minute, n))
			secondHalf := time.Since(restart)
			dn, db := r.bulkDone(run.ID)
			if final.Done.Results != int64(n) || final.Done.Bytes != total || final.Failed.Results != 0 || final.Remaining.Results != 0 || dn != final.Done.Results || db != final.Done.Bytes {
				t.Fatalf("final progress %+v; the database says %d done (%d bytes)", final, dn, db)
			}
			t.Logf("offload: %d results before the kill in %v, the other %d after the restart in %v (restart included; %.0f results/s)",
				len(before), firstHalf.Round(time.Millisecond), n-len(before), secondHalf.Round(time.Millisecond), float64(n-len(before))/secondHalf.Seconds())
			if got := r.storedIn(pluginID); got != n {
				t.Fatalf("%d of %d results in %s after the run", got, n, pluginID)
			}

			// Every result in the bucket with its bytes, none uploaded again.
			start = time.Now()
			times := r.objectTimes()
			if len(times) != n {
				t.Fatalf("the bucket holds %d objects, want %d", len(times), n)
			}
			for id, key := range before {
				if at, ok := times[key]; !ok || at.After(killedAt) {
					t.Fatalf("result %s, offloaded before the kill, was uploaded again (object %s written %v, kill at %v)", id, key, at, killedAt)
				}
			}
			type row struct{ id, key, sum string }
			var recorded []row
			rows, err = r.db.Query("SELECT id, object_key, sha256, local_present FROM results")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var x row
				var lp any
				if err := rows.Scan(&x.id, &x.key, &x.sum, &lp); err != nil {
					t.Fatal(err)
				}
				if w, ok := want[x.id]; !ok || x.sum != w.sum {
					t.Fatalf("result %s is recorded with sha256 %s; want one of the results made, with sha256 %s", x.id, x.sum, w.sum)
				}
				if fmt.Sprint(lp) != "false" && fmt.Sprint(lp) != "0" {
					t.Fatalf("result %s keeps its local copy (local_present %v) although delete_local is on", x.id, lp)
				}
				if _, ok := times[x.key]; !ok {
					t.Fatalf("result %s: its object %s is not in the bucket", x.id, x.key)
				}
				recorded = append(recorded, x)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			rows.Close()
			if len(recorded) != n {
				t.Fatalf("%d results recorded, want %d", len(recorded), n)
			}
			if err := forEach(len(recorded), bulkS3Readers, func(i int) error {
				x := recorded[i]
				size, sum, err := r.objectSHA256(x.key)
				if err != nil || size != want[x.id].size || sum != x.sum {
					return fmt.Errorf("result %s: object %s: %d bytes of sha256 %s, %v; want the %d bytes recorded (sha256 %s)", x.id, x.key, size, sum, err, want[x.id].size, x.sum)
				}
				return nil
			}); err != nil {
				t.Fatalf("the objects of the offloaded results: %v", err)
			}
			t.Logf("verify offload: %d objects read and hashed in %v", n, time.Since(start).Round(time.Millisecond))

			// Bring every result back to local: downloaded and verified.
			start = time.Now()
			var back bulkProgress
			if code := r.admin("POST", "/api/v1/admin/storage/bulk", map[string]any{"direction": "local", "provider": pluginID}, &back); code != 201 {
				t.Fatalf("starting the bring back: %d %+v", code, back)
			}
			back = r.waitBulk(back.ID, "done", bulkTimeout(2*time.Minute, n))
			if back.Done.Results != int64(n) || back.Failed.Results != 0 {
				t.Fatalf("bring back progress %+v", back)
			}
			t.Logf("bring back: %d results in %v (%.0f results/s)", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
			if got := r.storedIn("local"); got != n {
				t.Fatalf("%d of %d results local after the bring back", got, n)
			}
			url = r.proc.url
			start = time.Now()
			if err := forEach(n, bulkClients, func(i int) error {
				return servedLocally(url, ids[i], made[i].size, made[i].sum)
			}); err != nil {
				t.Fatalf("after the bring back: %v", err)
			}
			if got := len(r.objectTimes()); got != n {
				t.Fatalf("the bring back left %d objects, want all %d kept", got, n)
			}
			t.Logf("verify bring back: %d results served and hashed in %v", n, time.Since(start).Round(time.Millisecond))

			// Uninstall the plugin: every result still serves locally.
			start = time.Now()
			if code := r.admin("POST", "/api/v1/admin/plugins/"+pluginID+"/uninstall", nil, nil); code != 200 {
				t.Fatalf("uninstalling the plugin: %d", code)
			}
			var st struct{ Default string }
			if code := r.admin("GET", "/api/v1/admin/storage", nil, &st); code != 200 || st.Default != "local" {
				t.Fatalf("Default Storage after uninstalling the plugin: %d %q; want local", code, st.Default)
			}
			uninstalled := time.Since(start)
			if got := r.storedIn("local"); got != n {
				t.Fatalf("%d of %d results local after the uninstall", got, n)
			}
			if err := forEach(n, bulkClients, func(i int) error {
				return servedLocally(url, ids[i], made[i].size, made[i].sum)
			}); err != nil {
				t.Fatalf("after uninstalling the plugin: %v", err)
			}
			t.Logf("uninstall: %v, then %d results served and hashed in %v", uninstalled.Round(time.Millisecond), n, (time.Since(start) - uninstalled).Round(time.Millisecond))
			bulkClient.CloseIdleConnections()
		})
	}
}
