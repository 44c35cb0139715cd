package results

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/localstore"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/storage"
)

const (
	bucketA = "r2:acc/a"
	bucketB = "r2:acc/b"
	baseA   = "https://pub-a.r2.dev"
	baseB   = "https://media.example.com"
)

// parkedHint ends the local_reason of a result whose upload was parked.
const parkedHint = "; it runs again when the provider's settings change or an admin retries it"

// newBucketEnv is an env whose Default Storage is p (a bucketStore, or one
// behind oldPlugin) under remoteID.
func newBucketEnv(t testing.TB, d dbmigrate.Dialect, opts Options, p storage.Provider) *env {
	t.Helper()
	e := &env{db: testdb.Open(t, d), remote: newRemote()}
	e.db.SetMaxOpenConns(10)
	var err error
	if e.local, err = localstore.New(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	e.router = &router{providers: map[string]storage.Provider{remoteID: p}}
	e.router.setActive(&Target{ID: remoteID, Provider: p})
	e.svc = New(e.db.DB, e.local, e.router, opts)
	t.Cleanup(func() { close(e.remote.unhang) })
	return e
}

// asJSON is the result as the API encodes it.
func asJSON(t *testing.T, r Result) map[string]any {
	t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// jobOf is a result's job of kind, read from the table.
type jobOf struct {
	state, lastError, lastCode, bucket, objectKey, provider string
	attempts                                                int
}

func (e *env) job(t *testing.T, resultID, kind string) (jobOf, bool) {
	t.Helper()
	var j jobOf
	err := e.db.QueryRow(`SELECT state, last_error, last_code, bucket, object_key, provider, attempts FROM jobs WHERE result_id = $1 AND kind = $2`, resultID, kind).
		Scan(&j.state, &j.lastError, &j.lastCode, &j.bucket, &j.objectKey, &j.provider, &j.attempts)
	if isNoRows(err) {
		return j, false
	}
	if err != nil {
		t.Fatalf("reading the %s job of %s: %v", kind, resultID, err)
	}
	return j, true
}

func (e *env) stats(t *testing.T) ProviderJobs {
	t.Helper()
	st, err := e.svc.JobStats(context.Background())
	if err != nil {
		t.Fatalf("JobStats: %v", err)
	}
	return st[remoteID]
}

func (e *env) get(t *testing.T, id string) Result {
	t.Helper()
	r, err := e.svc.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return r
}

// TestPrefixChangeThenDeleteRemovesTheObject: finding 1 — only the
// relative key was recorded, so after the key prefix changed the delete
// went to the new prefix, the object stayed and its row was dropped.
func TestPrefixChangeThenDeleteRemovesTheObject(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		st := newBucketStore(bucketA, "old/", baseA)
		e := newBucketEnv(t, d, testOptions(), st)
		worker(t, e.svc)
		res := e.finalize(t, payload(1))
		full := "old/" + res.Path
		if res.Storage != remoteID || !st.has(bucketA, full) {
			t.Fatalf("Finalize = %+v; bucket a holds %v", res, st.keys(bucketA))
		}
		j := asJSON(t, res)
		if j["object_key"] != full || j["bucket"] != bucketA {
			t.Fatalf("result JSON object_key %v bucket %v, want %q %q", j["object_key"], j["bucket"], full, bucketA)
		}
		if _, ok := j["upload"]; ok {
			t.Fatalf("an offloaded result shows an upload: %v", j["upload"])
		}
		st.set(bucketA, "new/", baseA)
		if err := e.svc.Delete(context.Background(), res.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the delete", func() bool { return e.pending(t) == 0 })
		if st.has(bucketA, full) || e.rowCount(t) != 0 {
			t.Fatalf("after the delete: object %v, rows %d; bucket a holds %v", st.has(bucketA, full), e.rowCount(t), st.keys(bucketA))
		}
	})
}

// TestOldPluginResultsAreAddressedByTheirKey: a plugin that reports no
// location gives legacy rows, deleted by the key given to Put as before.
func TestOldPluginResultsAreAddressedByTheirKey(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		st := newBucketStore(bucketA, "p/", baseA)
		st.locations = false
		e := newBucketEnv(t, d, testOptions(), oldPlugin{st})
		res := e.finalize(t, payload(2))
		if j := asJSON(t, res); res.Storage != remoteID || j["bucket"] != "" || j["object_key"] != res.Path || res.URL != baseA+"/p/"+res.Path {
			t.Fatalf("Finalize = %+v (%v)", res, j)
		}
		if err := e.svc.Delete(context.Background(), res.ID); err != nil {
			t.Fatal(err)
		}
		if st.has(bucketA, "p/"+res.Path) || e.pending(t) != 0 || e.rowCount(t) != 0 {
			t.Fatalf("after the delete: bucket %v, pending %d, rows %d", st.keys(bucketA), e.pending(t), e.rowCount(t))
		}
	})
}

// TestPublicURLChangeRebasesResults: finding 2 — URLs were frozen at
// upload, so moving the public URL left older results on the old one.
func TestPublicURLChangeRebasesResults(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		ctx := context.Background()
		st := newBucketStore(bucketA, "m/", baseA)
		e := newBucketEnv(t, d, testOptions(), st)
		first := e.finalize(t, payload(1))
		if first.URL != baseA+"/m/"+first.Path {
			t.Fatalf("first url %q", first.URL)
		}
		st.set(bucketA, "m/", baseB)
		want := baseB + "/m/" + first.Path
		if got := e.get(t, first.ID); got.URL != want {
			t.Fatalf("after moving the public URL: Get url %q, want %q", got.URL, want)
		}
		list, _, err := e.svc.List(ctx, ListOptions{})
		if err != nil || len(list) != 1 || list[0].URL != want {
			t.Fatalf("List after moving the public URL: %+v, %v", list, err)
		}
		if c, err := e.svc.Content(ctx, first.ID); err != nil || c.RedirectURL != want {
			t.Fatalf("Content after moving the public URL: %+v, %v", c, err)
		}
		second := e.finalize(t, payload(2))
		if second.URL != baseB+"/m/"+second.Path {
			t.Fatalf("second url %q", second.URL)
		}

		// Another bucket: results of the first keep their recorded URLs.
		st.set(bucketB, "m/", "https://cdn-b.example")
		if got := e.get(t, first.ID); got.URL != first.URL {
			t.Fatalf("a result of a bucket no longer configured: url %q, want the recorded %q", got.URL, first.URL)
		}
		if got := e.get(t, second.ID); got.URL != second.URL {
			t.Fatalf("a result of a bucket no longer configured: url %q, want the recorded %q", got.URL, second.URL)
		}
		third := e.finalize(t, payload(3))
		if third.URL != "https://cdn-b.example/m/"+third.Path {
			t.Fatalf("third url %q", third.URL)
		}
		// No public base any more: the recorded URL.
		st.set(bucketB, "m/", "")
		if got := e.get(t, third.ID); got.URL != third.URL {
			t.Fatalf("without a public base: url %q, want the recorded %q", got.URL, third.URL)
		}
	})
}

// TestBucketChangeParksDeletes: a delete whose object is in a bucket the
// provider is no longer configured for is never sent (nor dropped): the
// job is parked failed, naming the bucket, the key and the fix, and runs
// once the bucket is configured again and the job retried.
func TestBucketChangeParksDeletes(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		ctx := context.Background()
		st := newBucketStore(bucketA, "m/", baseA)
		e := newBucketEnv(t, d, testOptions(), st)
		worker(t, e.svc)
		old := e.finalize(t, payload(1))
		st.set(bucketB, "m/", baseB)
		newer := e.finalize(t, payload(2))
		if !st.has(bucketA, "m/"+old.Path) || !st.has(bucketB, "m/"+newer.Path) {
			t.Fatalf("setup: a %v b %v", st.keys(bucketA), st.keys(bucketB))
		}
		if got := e.get(t, old.ID); got.URL != old.URL || got.Bucket != bucketA {
			t.Fatalf("the older result: %+v", got)
		}
		if err := e.svc.Delete(ctx, old.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Get(ctx, old.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of a result whose delete is parked: %v", err)
		}
		j, ok := e.job(t, old.ID, kindDelete)
		if !ok || j.state != "failed" || j.bucket != bucketA || j.lastCode != storage.FailedPrecondition.String() {
			t.Fatalf("the delete job: %+v, %v", j, ok)
		}
		want := fmt.Sprintf("the object m/%s is in bucket %s, which %s is no longer configured for (now %s); delete it there by hand, or configure that bucket again and retry", old.Path, bucketA, remoteID, bucketB)
		if !strings.Contains(j.lastError, want) {
			t.Fatalf("last_error %q\nwant it to hold %q", j.lastError, want)
		}
		time.Sleep(300 * time.Millisecond) // the workers would have retried by now
		if n := st.deleteCount(); n != 0 || !st.has(bucketA, "m/"+old.Path) || !st.has(bucketB, "m/"+newer.Path) {
			t.Fatalf("%d deletes sent; a %v b %v", n, st.keys(bucketA), st.keys(bucketB))
		}
		if j, _ := e.job(t, old.ID, kindDelete); j.state != "failed" || j.attempts != 1 {
			t.Fatalf("the parked delete ran again: %+v", j)
		}
		ps := e.stats(t)
		if ps.Failed != 1 || ps.Pending != 0 || !strings.Contains(ps.LastError, want) || ps.LastCode != storage.FailedPrecondition || ps.LastErrorAt.IsZero() {
			t.Fatalf("JobStats: %+v", ps)
		}

		// The admin configures that bucket again and retries.
		st.set(bucketA, "m/", baseA)
		if n, err := e.svc.RetryFailed(ctx, remoteID); err != nil || n != 1 {
			t.Fatalf("RetryFailed = %d, %v", n, err)
		}
		waitFor(t, "the retried delete", func() bool { return e.pending(t) == 0 })
		if st.has(bucketA, "m/"+old.Path) || !st.has(bucketB, "m/"+newer.Path) || e.rowCount(t) != 1 {
			t.Fatalf("after the retry: a %v b %v rows %d", st.keys(bucketA), st.keys(bucketB), e.rowCount(t))
		}
		waitFor(t, "JobStats to show the success", func() bool { return !e.stats(t).LastSuccessAt.IsZero() })
		if ps := e.stats(t); ps.Failed != 0 || ps.LastError != "" || ps.LastSuccessAt.IsZero() {
			t.Fatalf("JobStats after the retry: %+v", ps)
		}
	})
}

// TestPermanentErrorParksTheUpload: finding 3 — every failure was retried
// forever. A permanent one parks the job after one attempt; the result
// stays local and says why; a retry (settings changed) lands it.
func TestPermanentErrorParksTheUpload(t *testing.T) {
	cases := []struct {
		name string
		err  func() error
		code storage.ErrorCode
		msg  string
	}{
		{"permission denied", func() error { return storage.Errorf(storage.PermissionDenied, "put: access denied: check the secret") }, storage.PermissionDenied, "access denied: check the secret"},
		{"invalid argument", func() error { return storage.Errorf(storage.InvalidArgument, "put: key refused") }, storage.InvalidArgument, "key refused"},
		{"invalid settings", func() error { return storage.Errorf(storage.InvalidSettings, "put: bad settings") }, storage.InvalidSettings, "bad settings"},
		{"failed precondition", func() error { return storage.Errorf(storage.FailedPrecondition, "put: not configured") }, storage.FailedPrecondition, "not configured"},
		{"unimplemented", func() error { return storage.Errorf(storage.Unimplemented, "put: not here") }, storage.Unimplemented, "not here"},
		{"unknown", func() error { return errPlain }, storage.Unknown, errPlain.Error()},
		{"panic", func() error { panic("injected provider panic") }, storage.Unknown, "injected provider panic"},
	}
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				ctx := context.Background()
				st := newBucketStore(bucketA, "m/", baseA)
				st.setPutErr(func(string) error { return c.err() })
				e := newBucketEnv(t, d, testOptions(), st)
				worker(t, e.svc)
				res := e.finalize(t, payload(1))
				if res.Storage != Local || !strings.HasPrefix(res.LocalReason, "upload to "+remoteID+" failed: ") ||
					!strings.Contains(res.LocalReason, c.msg) || !strings.HasSuffix(res.LocalReason, parkedHint) {
					t.Fatalf("Finalize = %+v", res)
				}
				up, _ := asJSON(t, res)["upload"].(map[string]any)
				if up == nil || up["state"] != "failed" || up["provider"] != remoteID || !strings.Contains(fmt.Sprint(up["error"]), c.msg) || up["attempts"] != 1.0 {
					t.Fatalf("upload %v", up)
				}
				if _, ok := up["next_attempt_at"]; ok {
					t.Fatalf("a failed upload shows a next attempt: %v", up)
				}
				time.Sleep(300 * time.Millisecond) // the workers would have retried by now
				if n := st.putCount(res.Path); n != 1 {
					t.Fatalf("%d put attempts, want 1", n)
				}
				j, _ := e.job(t, res.ID, kindOffload)
				if j.state != "failed" || j.lastCode != c.code.String() || j.attempts != 1 {
					t.Fatalf("the offload job: %+v", j)
				}
				ps := e.stats(t)
				if ps.Failed != 1 || ps.Pending != 0 || ps.LastCode != c.code || !strings.Contains(ps.LastError, c.msg) || ps.LastErrorAt.IsZero() {
					t.Fatalf("JobStats: %+v", ps)
				}
				// The admin fixes the settings: the job runs again and lands.
				st.setPutErr(nil)
				if n, err := e.svc.RetryFailed(ctx, remoteID); err != nil || n != 1 {
					t.Fatalf("RetryFailed = %d, %v", n, err)
				}
				waitFor(t, "the retried upload", func() bool { return e.pending(t) == 0 })
				got := e.get(t, res.ID)
				if got.Storage != remoteID || got.LocalReason != "" || got.Upload != nil || !st.has(bucketA, "m/"+res.Path) {
					t.Fatalf("after the retry: %+v", got)
				}
				// The outcome reaches the stats just after the job row goes.
				waitFor(t, "JobStats to show the success", func() bool { return !e.stats(t).LastSuccessAt.IsZero() })
				if ps := e.stats(t); ps.Failed != 0 || ps.LastError != "" || ps.LastSuccessAt.IsZero() {
					t.Fatalf("JobStats after the retry: %+v", ps)
				}
				if n, err := e.svc.RetryFailed(ctx, remoteID); err != nil || n != 0 {
					t.Fatalf("RetryFailed with nothing failed = %d, %v", n, err)
				}
			})
		}
	})
}

// TestPermanentErrorParksAQueuedUpload: the same through the queue: a job
// queued while the provider could not take results fails once.
func TestPermanentErrorParksAQueuedUpload(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		st := newBucketStore(bucketA, "m/", baseA)
		st.setPutErr(func(string) error { return storage.Errorf(storage.PermissionDenied, "access denied") })
		e := newBucketEnv(t, d, testOptions(), st)
		e.router.setUnusable(&Route{State: RouteWaiting, Default: remoteID, Reason: "the plugin is restarting"})
		res := e.finalize(t, payload(1))
		up, _ := asJSON(t, res)["upload"].(map[string]any)
		if up == nil || up["state"] != "queued" || up["attempts"] != 0.0 || up["next_attempt_at"] == nil {
			t.Fatalf("queued upload %v", up)
		}
		if ps := e.stats(t); ps.Pending != 1 || ps.Failed != 0 {
			t.Fatalf("JobStats while queued: %+v", ps)
		}
		e.router.setUnusable(nil)
		worker(t, e.svc)
		waitFor(t, "the job to be parked", func() bool { j, _ := e.job(t, res.ID, kindOffload); return j.state == "failed" })
		time.Sleep(200 * time.Millisecond)
		if n := st.putCount(res.Path); n != 1 {
			t.Fatalf("%d put attempts, want 1", n)
		}
		if got := e.get(t, res.ID); !strings.HasPrefix(got.LocalReason, "upload to "+remoteID+" failed: access denied") || got.Upload == nil || got.Upload.State != UploadFailed {
			t.Fatalf("after the attempt: %+v", got)
		}
	})
}

// TestTransientErrorRetriesWithBackoff: Unavailable is retried, each
// attempt a backoff after the last, and the result shows it retrying.
func TestTransientErrorRetriesWithBackoff(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		opts := testOptions()
		opts.BackoffMin, opts.BackoffMax = 200*time.Millisecond, 400*time.Millisecond
		st := newBucketStore(bucketA, "m/", baseA)
		var mu sync.Mutex
		var at []time.Time
		st.setPutErr(func(string) error {
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Now())
			if len(at) <= 3 {
				return storage.Errorf(storage.Unavailable, "put: throttled (503)")
			}
			return nil
		})
		e := newBucketEnv(t, d, opts, st)
		// The first retry is due a backoff step (100 to 200 ms) after the
		// failure, which comes after this instant however slow the machine.
		before := time.Now()
		res := e.finalize(t, payload(1))
		if res.Storage != Local || !strings.HasPrefix(res.LocalReason, "queued for "+remoteID+", retrying (attempt 1 failed): ") {
			t.Fatalf("Finalize = %+v", res)
		}
		up := res.Upload
		if up == nil || up.State != UploadRetrying || up.Attempts != 1 || !strings.Contains(up.Error, "throttled") || up.NextAttemptAt.Before(before.Add(90*time.Millisecond)) {
			t.Fatalf("upload %+v", up)
		}
		if ps := e.stats(t); ps.Pending != 1 || ps.Failed != 0 || ps.LastCode != storage.Unavailable || !strings.Contains(ps.LastError, "throttled") {
			t.Fatalf("JobStats while retrying: %+v", ps)
		}
		worker(t, e.svc)
		waitFor(t, "the upload to land", func() bool { return e.pending(t) == 0 })
		mu.Lock()
		defer mu.Unlock()
		if len(at) != 4 {
			t.Fatalf("%d attempts, want 4", len(at))
		}
		for i := 1; i < len(at); i++ {
			if gap := at[i].Sub(at[i-1]); gap < 90*time.Millisecond {
				t.Fatalf("attempt %d came %v after the one before: no backoff", i+1, gap)
			}
		}
		if got := e.get(t, res.ID); got.Storage != remoteID || got.Upload != nil {
			t.Fatalf("after landing: %+v", got)
		}
		// The outcome reaches the stats just after the job row goes.
		waitFor(t, "JobStats to show the success", func() bool { return !e.stats(t).LastSuccessAt.IsZero() })
		if ps := e.stats(t); ps.LastError != "" || ps.LastSuccessAt.IsZero() || ps.Pending != 0 {
			t.Fatalf("JobStats after landing: %+v", ps)
		}
	})
}

// TestDeleteErrors: NotFound is done; a permanent error parks the delete
// (the result stays hidden) until it is retried; a transient one retries.
func TestDeleteErrors(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		ctx := context.Background()
		st := newBucketStore(bucketA, "m/", baseA)
		e := newBucketEnv(t, d, testOptions(), st)
		worker(t, e.svc)

		gone := e.finalize(t, payload(1))
		st.setDeleteErr(func(string) error { return storage.Errorf(storage.NotFound, "no such key") })
		if err := e.svc.Delete(ctx, gone.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the delete of a missing object", func() bool { return e.pending(t) == 0 && e.rowCount(t) == 0 })

		denied := e.finalize(t, payload(2))
		st.setDeleteErr(func(string) error { return storage.Errorf(storage.PermissionDenied, "delete: access denied") })
		before := st.deleteCount()
		if err := e.svc.Delete(ctx, denied.ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		j, _ := e.job(t, denied.ID, kindDelete)
		if n := st.deleteCount() - before; n != 1 || j.state != "failed" || !strings.Contains(j.lastError, "access denied") || j.lastCode != storage.PermissionDenied.String() {
			t.Fatalf("%d delete calls; job %+v", n, j)
		}
		if _, err := e.svc.Get(ctx, denied.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of a result whose delete failed: %v", err)
		}
		if list, _, err := e.svc.List(ctx, ListOptions{}); err != nil || len(list) != 0 {
			t.Fatalf("List: %+v, %v", list, err)
		}
		st.setDeleteErr(nil)
		if n, err := e.svc.RetryFailed(ctx, remoteID); err != nil || n != 1 {
			t.Fatalf("RetryFailed = %d, %v", n, err)
		}
		waitFor(t, "the retried delete", func() bool { return e.pending(t) == 0 && e.rowCount(t) == 0 })
		if st.has(bucketA, "m/"+denied.Path) {
			t.Fatal("the object stayed")
		}

		flaky := e.finalize(t, payload(3))
		var mu sync.Mutex
		n := 0
		st.setDeleteErr(func(string) error {
			mu.Lock()
			defer mu.Unlock()
			if n++; n <= 2 {
				return storage.Errorf(storage.Unavailable, "delete: connection reset")
			}
			return nil
		})
		if err := e.svc.Delete(ctx, flaky.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the retried delete", func() bool { return e.pending(t) == 0 && e.rowCount(t) == 0 })
		mu.Lock()
		defer mu.Unlock()
		if st.has(bucketA, "m/"+flaky.Path) || n != 3 {
			t.Fatalf("after the retries: %d attempts, object %v", n, st.has(bucketA, "m/"+flaky.Path))
		}
	})
}

// TestOverMaxObjectSizeStaysLocal: finding 4 — Capabilities.MaxObjectSize
// was unused, so a result over the limit was sent (and failed) forever.
func TestOverMaxObjectSizeStaysLocal(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		st := newBucketStore(bucketA, "m/", baseA)
		st.maxSize = 40
		e := newBucketEnv(t, d, testOptions(), st)
		worker(t, e.svc)
		data := payload(60)
		res := e.finalize(t, data)
		want := fmt.Sprintf("kept local: the result is %d bytes, over %s's limit of 40 bytes", len(data), remoteID)
		if res.Storage != Local || res.LocalReason != want || res.Upload != nil {
			t.Fatalf("Finalize = %+v\nwant local_reason %q", res, want)
		}
		if e.pending(t) != 0 || st.putCount(res.Path) != 0 {
			t.Fatalf("pending %d, puts %d", e.pending(t), st.putCount(res.Path))
		}
		e.checkServed(t, res.ID, data)

		// Queued while the provider could not take results: dropped at its
		// attempt with the same reason, never sent.
		e.router.setUnusable(&Route{State: RouteWaiting, Default: remoteID, Reason: "its settings cannot be read"})
		st.setMax(0)
		queued := e.finalize(t, data)
		st.setMax(40)
		e.router.setUnusable(nil)
		waitFor(t, "the queued job to be dropped", func() bool { return e.pending(t) == 0 })
		if got := e.get(t, queued.ID); got.Storage != Local || got.LocalReason != want || st.putCount(queued.Path) != 0 {
			t.Fatalf("queued: %+v, puts %d", got, st.putCount(queued.Path))
		}
		small := e.finalize(t, payload(1))
		if len(payload(1)) > 40 || small.Storage != remoteID {
			t.Fatalf("a result under the limit: %+v", small)
		}
	})
}

// TestLegacyResultsAdoptedAtFirstConfigure: results uploaded through a
// plugin that did not report locations are adopted when it first reports
// its bucket and prefix, so a later prefix change does not lose them.
func TestLegacyResultsAdoptedAtFirstConfigure(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		ctx := context.Background()
		st := newBucketStore(bucketA, "old/", baseA)
		st.locations = false
		e := newBucketEnv(t, d, testOptions(), oldPlugin{st})
		a := e.finalize(t, payload(1))
		b := e.finalize(t, payload(2))
		if a.Bucket != "" || a.ObjectKey != a.Path {
			t.Fatalf("legacy result %+v", a)
		}
		// b's delete is queued while the provider is down.
		st.setDeleteErr(func(string) error { return storage.Errorf(storage.Unavailable, "down") })
		if err := e.svc.Delete(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if j, ok := e.job(t, b.ID, kindDelete); !ok || j.bucket != "" || j.objectKey != b.Path {
			t.Fatalf("legacy delete job %+v", j)
		}

		// The plugin is updated: it reports where it puts objects, and the
		// host adopts the legacy rows with the settings they were uploaded with.
		st.mu.Lock()
		st.locations = true
		st.mu.Unlock()
		e.router.install(remoteID, st)
		e.router.setActive(&Target{ID: remoteID, Provider: st})
		n, err := e.svc.AdoptLegacy(ctx, remoteID, Placement{Bucket: bucketA, KeyPrefix: "old/", PublicBaseURL: baseA, Locations: true})
		if err != nil || n.Adopted != 2 || n.Unverified != 0 {
			t.Fatalf("AdoptLegacy = %+v, %v", n, err)
		}
		if got := e.get(t, a.ID); got.Bucket != bucketA || got.ObjectKey != "old/"+a.Path || got.URL != a.URL {
			t.Fatalf("adopted result %+v", got)
		}
		if j, _ := e.job(t, b.ID, kindDelete); j.bucket != bucketA || j.objectKey != "old/"+b.Path {
			t.Fatalf("adopted delete job %+v", j)
		}
		if n, err := e.svc.AdoptLegacy(ctx, remoteID, Placement{Bucket: bucketA, KeyPrefix: "other/", Locations: true}); err != nil || n.Adopted != 0 {
			t.Fatalf("second AdoptLegacy = %+v, %v", n, err)
		}

		// The prefix changes; both objects are still deleted where they are.
		st.set(bucketA, "new/", baseA)
		st.setDeleteErr(nil)
		worker(t, e.svc)
		if err := e.svc.Delete(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the deletes", func() bool { return e.pending(t) == 0 })
		if keys := st.keys(bucketA); len(keys) != 0 || e.rowCount(t) != 0 {
			t.Fatalf("after the deletes: bucket %v, rows %d", keys, e.rowCount(t))
		}
	})
}

// TestDeleteToAnUninstalledProviderParks: a delete whose provider is not
// installed fails at once and waits for a retry (once the provider is
// installed again), instead of retrying forever.
func TestDeleteToAnUninstalledProviderParks(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		ctx := context.Background()
		st := newBucketStore(bucketA, "m/", baseA)
		e := newBucketEnv(t, d, testOptions(), st)
		worker(t, e.svc)
		res := e.finalize(t, payload(1))
		e.router.uninstall(remoteID)
		if err := e.svc.Delete(ctx, res.ID); err != nil {
			t.Fatal(err)
		}
		j, _ := e.job(t, res.ID, kindDelete)
		if j.state != "failed" || !strings.Contains(j.lastError, remoteID+" is not installed") {
			t.Fatalf("the delete job: %+v", j)
		}
		e.router.install(remoteID, st)
		if n, err := e.svc.RetryFailed(ctx, remoteID); err != nil || n != 1 {
			t.Fatalf("RetryFailed = %d, %v", n, err)
		}
		waitFor(t, "the delete", func() bool { return e.pending(t) == 0 })
		if st.has(bucketA, "m/"+res.Path) || e.rowCount(t) != 0 {
			t.Fatalf("after the retry: bucket %v rows %d", st.keys(bucketA), e.rowCount(t))
		}
	})
}
