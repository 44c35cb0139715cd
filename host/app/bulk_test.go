//go:build linux

package app_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

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

// uploadPNG finalizes data as a result through the running host process.
func (r *crashRig) uploadPNG(data []byte) string {
	r.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("kind", "images")
	mw.WriteField("generator", "gemini")
	fw, _ := mw.CreateFormFile("file", "a.png")
	fw.Write(data)
	mw.Close()
	req, _ := http.NewRequest("POST", r.proc.url+"/api/v1/results", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var res struct{ ID, Storage string }
	if resp.StatusCode != 201 || json.Unmarshal(body, &res) != nil || res.Storage != "local" {
		r.t.Fatalf("finalizing a result while Default Storage is local: %d %s", resp.StatusCode, body)
	}
	return res.ID
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
func (r *crashRig) objectTimes() map[string]time.Time {
	r.t.Helper()
	out := map[string]time.Time{}
	p := s3.NewListObjectsV2Paginator(r.s3.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(r.t.Context())
		if err != nil {
			r.t.Fatalf("listing the bucket: %v", err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = aws.ToTime(o.LastModified)
		}
	}
	return out
}

// waitBulk polls a run until it is in state.
func (r *crashRig) waitBulk(run int64, state string) bulkProgress {
	r.t.Helper()
	var p bulkProgress
	waitFor(r.t, 2*time.Minute, "bulk run "+state, func() bool {
		if code := r.admin("GET", fmt.Sprintf("/api/v1/admin/storage/bulk/%d", run), nil, &p); code != 200 {
			r.t.Fatalf("GET bulk run %d: %d", run, code)
		}
		return p.State == state
	})
	return p
}

// TestBulkOffloadHostKilled: a bulk offload of results made while Default
// Storage was local, with Delete local copy after upload on, is cut by a
// SIGKILL of the host process halfway and finished by the restarted host:
// every result ends in the bucket with the right bytes, no result recorded
// before the kill is uploaded again (its object was not written after the
// kill), and the progress matches the database. Bringing them all back to
// local then serves every one locally with the right bytes.
func TestBulkOffloadHostKilled(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			const n = 200
			r := newCrashRig(t, d)
			h := &host{s3: r.s3}
			if code := r.admin("PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", map[string]any{"values": h.settings("endpoint", r.bh.Endpoint, "delete_local", true)}, nil); code != 200 {
				t.Fatalf("saving settings with delete_local: %d", code)
			}
			if code := r.admin("PUT", "/api/v1/admin/storage", map[string]string{"default": "local"}, nil); code != 200 {
				t.Fatalf("setting Default Storage local: %d", code)
			}
			data := map[string][]byte{}
			var total int64
			for i := range n {
				b := pngBytes(12<<10 + i)
				data[r.uploadPNG(b)] = b
				total += int64(len(b))
			}
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
				plan.Provider != pluginID || !plan.DeleteLocal || plan.Total.Results != n || plan.Total.Bytes != total {
				t.Fatalf("dry run: %d %+v; want %d results, %d bytes", code, plan, n, total)
			}

			r.bh.SetRate(96 << 10)
			var run bulkProgress
			if code := r.admin("POST", "/api/v1/admin/storage/bulk", map[string]any{"direction": "offload"}, &run); code != 201 || run.State != "running" {
				t.Fatalf("starting the offload: %d %+v", code, run)
			}
			var conflict map[string]string
			if code := r.admin("POST", "/api/v1/admin/storage/bulk", map[string]any{"direction": "offload"}, &conflict); code != 409 || conflict["error"] == "" {
				t.Fatalf("a second offload while one runs: %d %v", code, conflict)
			}
			waitFor(t, 90*time.Second, "half the results offloaded", func() bool { return r.storedIn(pluginID) >= n/2 })
			killedAt := time.Now()
			if err := syscall.Kill(r.proc.pid(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-r.proc.exited
			leased := 0
			for _, j := range r.leasedJobs() {
				if j.kind == "offload" {
					leased++
				}
			}
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
			t.Logf("at the kill: %d of %d offloaded, %d offload jobs leased", len(before), n, leased)
			if len(before) == n || leased == 0 {
				t.Fatalf("the kill came too late: %d of %d offloaded, %d offload jobs leased", len(before), n, leased)
			}
			// An object written again after the kill has a later time.
			waitFor(t, 5*time.Second, "the next second", func() bool { return time.Now().Truncate(time.Second).After(killedAt) })

			r.bh.SetRate(0)
			r.start()
			final := r.waitBulk(run.ID, "done")
			dn, db := r.bulkDone(run.ID)
			if final.Done.Results != n || final.Done.Bytes != total || final.Failed.Results != 0 || final.Remaining.Results != 0 || dn != final.Done.Results || db != final.Done.Bytes {
				t.Fatalf("final progress %+v; the database says %d done (%d bytes)", final, dn, db)
			}
			if got := r.storedIn(pluginID); got != n {
				t.Fatalf("%d of %d results in %s after the run", got, n, pluginID)
			}
			times := r.objectTimes()
			if len(times) != n {
				t.Fatalf("the bucket holds %d objects, want %d", len(times), n)
			}
			for id, key := range before {
				if at, ok := times[key]; !ok || at.After(killedAt) {
					t.Fatalf("result %s, offloaded before the kill, was uploaded again (object %s written %v, kill at %v)", id, key, at, killedAt)
				}
			}
			rows, err = r.db.Query("SELECT id, object_key, sha256, local_present FROM results")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id, key, sum string
				var lp any
				if err := rows.Scan(&id, &key, &sum, &lp); err != nil {
					t.Fatal(err)
				}
				got, err := r.object(key)
				s := sha256.Sum256(got)
				if err != nil || hex.EncodeToString(s[:]) != sum || !bytes.Equal(got, data[id]) {
					t.Fatalf("result %s: object %s: %d bytes, %v; want the %d bytes recorded (sha256 %s)", id, key, len(got), err, len(data[id]), sum)
				}
				if fmt.Sprint(lp) != "false" && fmt.Sprint(lp) != "0" {
					t.Fatalf("result %s keeps its local copy (local_present %v) although delete_local is on", id, lp)
				}
			}
			rows.Close()

			// Bring every result back to local: downloaded and verified.
			var back bulkProgress
			if code := r.admin("POST", "/api/v1/admin/storage/bulk", map[string]any{"direction": "local", "provider": pluginID}, &back); code != 201 {
				t.Fatalf("starting the bring back: %d %+v", code, back)
			}
			back = r.waitBulk(back.ID, "done")
			if back.Done.Results != n || back.Failed.Results != 0 {
				t.Fatalf("bring back progress %+v", back)
			}
			for id, want := range data {
				code, got, _, err := r.api("GET", "/api/v1/results/"+id+"/content")
				if err != nil || code != 200 || !bytes.Equal(got, want) {
					t.Fatalf("result %s after the bring back: %d, %d bytes, %v; want it served locally", id, code, len(got), err)
				}
			}
			if got := len(r.objectTimes()); got != n {
				t.Fatalf("the bring back left %d objects, want all %d kept", got, n)
			}
		})
	}
}
