package app_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/storage"
)

// custodyResult is a result as the API shows it, with where it is and its
// pending upload.
type custodyResult struct {
	ID, Path, Storage, URL string
	ObjectKey              string `json:"object_key"`
	Bucket                 string
	LocalReason            string `json:"local_reason"`
	LocalPresent           bool   `json:"local_present"`
	Upload                 *struct {
		State, Provider, Error string
		Attempts               int
	}
}

func (h *host) custody(id string) custodyResult {
	h.t.Helper()
	var r custodyResult
	if code := h.do("GET", "/api/v1/results/"+id, nil, &r); code != 200 {
		h.t.Fatalf("GET result %s: %d", id, code)
	}
	return r
}

func (h *host) jobStats() results.ProviderJobs {
	h.t.Helper()
	st, err := h.app.Results.JobStats(context.Background())
	if err != nil {
		h.t.Fatalf("JobStats: %v", err)
	}
	return st[pluginID]
}

// TestCustodyPrefixChangeThenDelete: finding 1 with the real plugin — a
// result uploaded under one key prefix is deleted from where it is after
// the prefix changed.
func TestCustodyPrefixChangeThenDelete(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)
			h.configure()
			r := h.upload(pngBytes(3000), "prefix.png")
			key := "magicads/" + r.Path
			got := h.custody(r.ID)
			if r.Storage != pluginID || got.ObjectKey != key || !strings.Contains(got.Bucket, bucket) || got.Upload != nil {
				t.Fatalf("offloaded result %+v", got)
			}
			h.configure("key_prefix", "moved")
			after := h.upload(pngBytes(100), "after.png")
			if !hasKey(h.objects(), "moved/"+after.Path) {
				t.Fatalf("the new prefix is not used: %v", h.objects())
			}
			if code := h.do("DELETE", "/api/v1/results/"+r.ID, nil, nil); code != http.StatusNoContent {
				t.Fatalf("delete: %d", code)
			}
			waitFor(t, 10*time.Second, "the object under the old prefix to be deleted", func() bool { return !hasKey(h.objects(), key) })
			waitFor(t, 10*time.Second, "the delete job to finish", func() bool { return h.pending() == 0 })
			if !hasKey(h.objects(), "moved/"+after.Path) {
				t.Fatal("the delete removed another object")
			}
		})
	}
}

// TestCustodyPublicURLChange: finding 2 with the real plugin — moving the
// public URL (r2.dev to a custom domain) moves older results too.
func TestCustodyPublicURLChange(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)
			h.configure()
			r := h.upload(pngBytes(2000), "old-url.png")
			if r.URL != publicURL+"/magicads/"+r.Path {
				t.Fatalf("url %q", r.URL)
			}
			const custom = "https://media.example.com"
			h.configure("public_url", custom)
			want := custom + "/magicads/" + r.Path
			if got := h.result(r.ID); got.URL != want {
				t.Fatalf("after moving the public URL: %q, want %q", got.URL, want)
			}
			if code, _, loc := h.content(r.ID); code != http.StatusFound || loc != want {
				t.Fatalf("content after moving the public URL: %d %q", code, loc)
			}
			var list struct{ Results []resultBody }
			h.do("GET", "/api/v1/results", nil, &list)
			if len(list.Results) != 1 || list.Results[0].URL != want {
				t.Fatalf("list after moving the public URL: %+v", list.Results)
			}
		})
	}
}

// TestCustodyBucketChange: results of a bucket the provider is no longer
// configured for keep their recorded URLs; their delete is not sent to the
// new bucket but parked failed, visible in JobStats, and runs once the
// bucket is configured again.
func TestCustodyBucketChange(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			const other = "magicads-other"
			h := newHost(t, d)
			h.s3.CreateBucket(t, other)
			h.configure()
			r := h.upload(pngBytes(2500), "first-bucket.png")
			key := "magicads/" + r.Path
			h.configure("bucket", other, "public_url", "https://other.example")
			newer := h.upload(pngBytes(500), "second-bucket.png")
			if newer.Storage != pluginID || !hasKey(h.s3.Keys(t, other), "magicads/"+newer.Path) {
				t.Fatalf("the new bucket is not used: %+v", newer)
			}
			if got := h.result(r.ID); got.URL != r.URL {
				t.Fatalf("a result of the earlier bucket: url %q, want the recorded %q", got.URL, r.URL)
			}
			if code, _, loc := h.content(r.ID); code != http.StatusFound || loc != r.URL {
				t.Fatalf("content of a result of the earlier bucket: %d %q", code, loc)
			}
			old := h.custody(r.ID)
			if code := h.do("DELETE", "/api/v1/results/"+r.ID, nil, nil); code != http.StatusNoContent {
				t.Fatalf("delete: %d", code)
			}
			if code := h.do("GET", "/api/v1/results/"+r.ID, nil, nil); code != http.StatusNotFound {
				t.Fatalf("a result whose delete is parked is still shown: %d", code)
			}
			waitFor(t, 10*time.Second, "the delete to be parked", func() bool { return h.jobStats().Failed == 1 })
			st := h.jobStats()
			if !strings.Contains(st.LastError, "the object "+key+" is in bucket "+old.Bucket) || !strings.Contains(st.LastError, "configure that bucket again and retry") || st.LastCode != storage.FailedPrecondition {
				t.Fatalf("JobStats: %+v", st)
			}
			time.Sleep(time.Second) // retries would have run by now
			if !hasKey(h.objects(), key) || !hasKey(h.s3.Keys(t, other), "magicads/"+newer.Path) || h.jobStats().Failed != 1 {
				t.Fatalf("the parked delete ran: %v / %v", h.objects(), h.s3.Keys(t, other))
			}
			// The bucket is configured again: the settings change retries it.
			h.configure()
			waitFor(t, 10*time.Second, "the retried delete", func() bool { return !hasKey(h.objects(), key) && h.pending() == 0 })
		})
	}
}

// TestCustodyPermanentErrorParksUntilSettingsChange: finding 3 with the
// real plugin — a wrong secret (PermissionDenied) parks the upload after
// one attempt; saving the right secret queues it again and it lands.
func TestCustodyPermanentErrorParksUntilSettingsChange(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)
			h.configure("secret_access_key", "not-the-secret")
			r := h.upload(pngBytes(1500), "denied.png")
			got := h.custody(r.ID)
			if got.Storage != "local" || !strings.HasPrefix(got.LocalReason, "upload to "+pluginID+" failed: ") ||
				!strings.HasSuffix(got.LocalReason, "it runs again when the provider's settings change or an admin retries it") {
				t.Fatalf("result with a wrong secret: %+v", got)
			}
			if got.Upload == nil || got.Upload.State != "failed" || got.Upload.Attempts != 1 || !got.LocalPresent {
				t.Fatalf("upload %+v", got.Upload)
			}
			time.Sleep(2 * time.Second) // several backoffs (100 ms to 1 s)
			if got := h.custody(r.ID); got.Upload == nil || got.Upload.Attempts != 1 || got.Upload.State != "failed" {
				t.Fatalf("the parked upload was retried: %+v", got.Upload)
			}
			if st := h.jobStats(); st.Failed != 1 || st.Pending != 0 || st.LastCode != storage.PermissionDenied || st.LastErrorAt.IsZero() {
				t.Fatalf("JobStats: %+v", st)
			}
			h.configure()
			waitFor(t, 20*time.Second, "the upload to land after the settings change", func() bool { return h.result(r.ID).Storage == pluginID })
			if !hasKey(h.objects(), "magicads/"+r.Path) || h.pending() != 0 {
				t.Fatalf("after landing: %v, pending %d", h.objects(), h.pending())
			}
			// The outcome reaches the stats just after the job row goes.
			waitFor(t, 10*time.Second, "JobStats to show the success", func() bool { return !h.jobStats().LastSuccessAt.IsZero() })
			if st := h.jobStats(); st.Failed != 0 || st.LastError != "" || st.LastSuccessAt.IsZero() {
				t.Fatalf("JobStats after landing: %+v", st)
			}
		})
	}
}

// TestCustodyTransientErrorRetries: an unreachable endpoint (Unavailable)
// is retried with backoff, never parked, and lands when it is back.
func TestCustodyTransientErrorRetries(t *testing.T) {
	h := newHost(t, "sqlite")
	h.configure()
	h.s3.Stop()
	r := h.upload(pngBytes(1200), "outage.png")
	waitFor(t, 20*time.Second, "a few retries", func() bool {
		u := h.custody(r.ID).Upload
		return u != nil && u.Attempts >= 3
	})
	got := h.custody(r.ID)
	if got.Storage != "local" || got.Upload.State != "retrying" || !strings.HasPrefix(got.LocalReason, "queued for "+pluginID+", retrying") {
		t.Fatalf("while the endpoint is down: %+v %+v", got, got.Upload)
	}
	if st := h.jobStats(); st.Failed != 0 || st.Pending != 1 || st.LastCode != storage.Unavailable {
		t.Fatalf("JobStats while down: %+v", st)
	}
	h.s3.Start()
	waitFor(t, 30*time.Second, "the upload to land", func() bool { return h.result(r.ID).Storage == pluginID })
}

// TestCustodyLegacyResultsAdopted: a result recorded before the host knew
// where objects are (bucket "", relative key) is adopted when the plugin
// is configured at the next start, with the settings it was uploaded
// with; a later prefix change then still deletes the right object.
func TestCustodyLegacyResultsAdopted(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)
			h.configure()
			r := h.upload(pngBytes(1800), "legacy.png")
			key := "magicads/" + r.Path
			// As a host before migration 000010 recorded it.
			if _, err := h.app.DB.Exec(`UPDATE results SET bucket = '', object_key = path WHERE id = $1`, r.ID); err != nil {
				t.Fatal(err)
			}
			if got := h.custody(r.ID); got.Bucket != "" || got.ObjectKey != r.Path || got.URL != r.URL {
				t.Fatalf("legacy result %+v", got)
			}
			h.stop()
			h.start(h.key)
			h.waitRunning()
			waitFor(t, 10*time.Second, "the legacy result to be adopted", func() bool { return h.custody(r.ID).Bucket != "" })
			if got := h.custody(r.ID); got.ObjectKey != key || !strings.Contains(got.Bucket, bucket) || got.URL != r.URL {
				t.Fatalf("adopted result %+v", got)
			}
			h.configure("key_prefix", "moved")
			if code := h.do("DELETE", "/api/v1/results/"+r.ID, nil, nil); code != http.StatusNoContent {
				t.Fatalf("delete: %d", code)
			}
			waitFor(t, 10*time.Second, "the adopted result's object to be deleted", func() bool { return !hasKey(h.objects(), key) && h.pending() == 0 })
		})
	}
}

// TestCustodyParkedUploadDroppedWhenDefaultChanges: an upload parked by a
// permanent error is dropped when the admin moves Default Storage away
// from its provider; the result says it is kept local and why, and the
// provider no longer counts a failed job.
func TestCustodyParkedUploadDroppedWhenDefaultChanges(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)
			h.configure("secret_access_key", "not-the-secret")
			r := h.upload(pngBytes(1500), "denied.png")
			if got := h.custody(r.ID); got.Upload == nil || got.Upload.State != "failed" || h.jobStats().Failed != 1 {
				t.Fatalf("setup: %+v %+v", got, got.Upload)
			}
			if code := h.do("PUT", "/api/v1/admin/storage", map[string]string{"default": "local"}, nil); code != 200 {
				t.Fatalf("setting Default Storage to local: %d", code)
			}
			got := h.custody(r.ID)
			if want := "kept local: Default Storage was changed from " + pluginID + " to local"; got.Storage != "local" || got.Upload != nil || got.LocalReason != want {
				t.Fatalf("after the change: %+v %+v, want local_reason %q", got, got.Upload, want)
			}
			if st := h.jobStats(); st.Failed != 0 || st.Pending != 0 {
				t.Fatalf("JobStats: %+v", st)
			}
		})
	}
}

// TestCustodyLegacyUnderAnotherPrefixStaysLegacy: a legacy result whose
// object is under an earlier key prefix is not adopted at the prefix of
// the moment (its URL stays, its delete is not sent to the wrong key); its
// delete is parked, and runs once the prefix it was uploaded with is back.
func TestCustodyLegacyUnderAnotherPrefixStaysLegacy(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)
			h.configure()
			r := h.upload(pngBytes(1800), "legacy.png")
			key := "magicads/" + r.Path
			if _, err := h.app.DB.Exec(`UPDATE results SET bucket = '', object_key = path WHERE id = $1`, r.ID); err != nil {
				t.Fatal(err)
			}
			h.configure("key_prefix", "moved")
			time.Sleep(time.Second) // the custody pass would have run by now
			if got := h.custody(r.ID); got.Bucket != "" || got.ObjectKey != r.Path || got.URL != r.URL {
				t.Fatalf("a legacy result under an earlier prefix was changed: %+v", got)
			}
			if code := h.do("DELETE", "/api/v1/results/"+r.ID, nil, nil); code != http.StatusNoContent {
				t.Fatalf("delete: %d", code)
			}
			waitFor(t, 10*time.Second, "the delete to be parked", func() bool { return h.jobStats().Failed == 1 })
			if st := h.jobStats(); !strings.Contains(st.LastError, r.Path) || !strings.Contains(st.LastError, "uploaded before the host recorded locations") {
				t.Fatalf("JobStats: %+v", st)
			}
			if !hasKey(h.objects(), key) {
				t.Fatalf("the object was removed: %v", h.objects())
			}
			h.configure()
			waitFor(t, 10*time.Second, "the delete once the prefix is back", func() bool { return !hasKey(h.objects(), key) && h.pending() == 0 })
		})
	}
}
