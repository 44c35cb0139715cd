package orphans_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/localstore"
	"github.com/magicads/r2storage/host/orphans"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/plugin/s3compat"
	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/storage"
)

// router is the one provider the tests upload to: results.Router for the
// results service, orphans.Providers for the scanner.
type router struct {
	mu sync.Mutex
	id string
	p  storage.Provider
	pl results.Placement
}

func (r *router) Route(context.Context) results.Route {
	return results.Route{State: results.RouteReady, Default: r.id, Target: results.Target{ID: r.id, Provider: r.p}}
}

func (r *router) Provider(_ context.Context, id string) (storage.Provider, bool) {
	if id != r.id {
		return nil, false
	}
	return r.p, true
}

func (r *router) Placement(_ context.Context, id string) (results.Placement, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pl, id == r.id
}

// bucket is a provider's bucket as a test sees it, beside the contract.
type bucket struct {
	id string
	// p is the provider, configured with the key prefix "tenant".
	p   storage.Provider
	res storage.ConfigureResult
	// put writes an object at a full key, under the key prefix or not.
	put func(t *testing.T, storedKey string, data []byte)
	// startUpload leaves an incomplete upload at a full key.
	startUpload func(t *testing.T, storedKey string)
	// keys lists every full key in the bucket.
	keys func(t *testing.T) []string
	// uploads lists the full keys of every incomplete upload.
	uploads func(t *testing.T) []string
}

// memBucket is a memstore bucket.
func memBucket(t *testing.T) *bucket {
	ctx := context.Background()
	m := memstore.New("https://cdn.example.com")
	settings := storage.Settings{"key_prefix": "tenant", "public_url": "https://cdn.example.com"}
	res, err := m.Configure(ctx, settings)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	// at runs f with the store configured for prefix, then restores it.
	at := func(t *testing.T, prefix string, f func()) {
		mu.Lock()
		defer mu.Unlock()
		if _, err := m.Configure(ctx, storage.Settings{"key_prefix": prefix, "public_url": "https://cdn.example.com"}); err != nil {
			t.Fatal(err)
		}
		f()
		if _, err := m.Configure(ctx, settings); err != nil {
			t.Fatal(err)
		}
	}
	return &bucket{
		id: memstore.ID, p: m, res: res,
		put: func(t *testing.T, storedKey string, data []byte) {
			at(t, "", func() {
				if _, err := m.Put(ctx, storedKey, bytes.NewReader(data), storage.PutOptions{Size: int64(len(data))}); err != nil {
					t.Fatal(err)
				}
			})
		},
		startUpload: func(t *testing.T, storedKey string) {
			at(t, "", func() {
				if err := m.StartUpload(storedKey, time.Now()); err != nil {
					t.Fatal(err)
				}
			})
		},
		keys: func(t *testing.T) []string { return sorted(m.Keys()) },
		uploads: func(t *testing.T) []string {
			var keys []string
			at(t, "", func() {
				page, err := m.ListUploads(ctx, "")
				if err != nil {
					t.Fatal(err)
				}
				for _, u := range page.Uploads {
					keys = append(keys, u.StoredKey)
				}
			})
			return sorted(keys)
		},
	}
}

// versityBucket is bucket "media" of a versitygw server, reached by the
// S3-compatible provider (plugin/s3compat, in process).
func versityBucket(t *testing.T) *bucket {
	ctx := context.Background()
	srv := s3test.StartVersityIn(t, "us-east-1")
	srv.CreateBucket(t, "media")
	p := s3compat.New(s3compat.Options{})
	res, err := p.Configure(ctx, storage.Settings{
		"access_key_id": srv.AccessKey, "secret_access_key": srv.SecretKey,
		"region": "us-east-1", "endpoint": srv.Endpoint, "bucket": "media", "use_path_style": true,
		"key_prefix": "tenant", "public_url": "https://cdn.example.com",
	})
	if err != nil {
		t.Fatalf("configure: %v", err)
	}
	info, err := p.Describe(ctx)
	if err != nil || !info.Capabilities.Listing {
		t.Fatalf("describe = %+v, %v; want Capabilities.Listing", info, err)
	}
	return &bucket{
		id: info.ID, p: p, res: res,
		put: func(t *testing.T, storedKey string, data []byte) {
			if _, err := srv.Client().PutObject(ctx, putInput("media", storedKey, data)); err != nil {
				t.Fatal(err)
			}
		},
		startUpload: func(t *testing.T, storedKey string) { srv.StartMultipartUpload(t, "media", storedKey, []byte("part")) },
		keys:        func(t *testing.T) []string { return sorted(srv.Keys(t, "media")) },
		uploads:     func(t *testing.T) []string { return sorted(srv.MultipartUploads(t, "media")) },
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if s == nil {
		s = []string{}
	}
	return s
}

// png is a small PNG-looking result.
func png(i int) []byte { return []byte(fmt.Sprintf("\x89PNG\r\n\x1a\n result %d", i)) }

// env is a results service on a database, uploading to one bucket, and a
// scanner of it whose clock runs two days ahead.
type env struct {
	db      *testdb.DB
	svc     *results.Service
	scanner *orphans.Scanner
	b       *bucket
	hook    *hooked
	now     time.Time
}

// hooked is a provider with every optional call that runs onDelete (when
// set) before each DeleteAt.
type hooked struct {
	storage.Provider
	storage.Locator
	storage.Lister
	storage.UploadAborter
	mu       sync.Mutex
	onDelete func(loc storage.Location)
}

// DeleteAt runs the hook, then deletes.
func (h *hooked) DeleteAt(ctx context.Context, loc storage.Location) error {
	h.mu.Lock()
	f := h.onDelete
	h.mu.Unlock()
	if f != nil {
		f(loc)
	}
	return h.Locator.DeleteAt(ctx, loc)
}

// recordAt records a result whose object is storedKey in the bucket, as
// the results service does once an upload is confirmed.
func (e *env) recordAt(t *testing.T, n int, storedKey string) {
	t.Helper()
	id := fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
	if _, err := e.db.ExecContext(context.Background(), `INSERT INTO results (id, path, content_type, size, sha256, storage, object_key, bucket)
		VALUES ($1, $2, 'image/png', 11, $3, $4, $5, $6)`,
		id, "images/gemini/"+id+".png", strings.Repeat("0", 64), e.b.id, storedKey, e.b.res.Bucket); err != nil {
		t.Fatal(err)
	}
}

func newEnv(t *testing.T, d dbmigrate.Dialect, b *bucket) *env {
	t.Helper()
	db := testdb.Open(t, d)
	db.SetMaxOpenConns(10)
	local, err := localstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	info, err := b.p.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var h *hooked
	p := b.p
	if _, ok := p.(storage.Lister); ok {
		h = &hooked{Provider: p, Locator: p.(storage.Locator), Lister: p.(storage.Lister), UploadAborter: p.(storage.UploadAborter)}
		p = h
	}
	r := &router{id: b.id, p: p, pl: results.Placement{Bucket: b.res.Bucket, PublicBaseURL: b.res.PublicBaseURL, KeyPrefix: b.res.KeyPrefix, Locations: info.Capabilities.Locations}}
	e := &env{db: db, b: b, hook: h, now: time.Now().Add(48 * time.Hour).UTC()}
	e.svc = results.New(db.DB, local, r, results.Options{})
	// The scanner's clock is two days ahead: every upload started now
	// is older than a day to it.
	e.scanner = orphans.New(db.DB, r, orphans.Options{Now: func() time.Time { return e.now }})
	return e
}

// record finalizes a result and checks it went to the bucket.
func (e *env) record(t *testing.T, i int) results.Result {
	t.Helper()
	res, err := e.svc.Finalize(context.Background(), results.Upload{Kind: results.KindImages, Generator: "gemini", ContentType: "image/png"}, bytes.NewReader(png(i)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Storage != e.b.id || res.ObjectKey == "" || res.Bucket != e.b.res.Bucket {
		t.Fatalf("result %+v was not uploaded to %s", res, e.b.id)
	}
	return res
}

// TestOrphans runs the scenario on memstore and versitygw, each on SQLite
// and PostgreSQL.
func TestOrphans(t *testing.T) {
	for _, d := range testdb.Dialects() {
		for name, mk := range map[string]func(*testing.T) *bucket{"memstore": memBucket, "versitygw": versityBucket} {
			t.Run(string(d)+"/"+name, func(t *testing.T) { scenario(t, newEnv(t, d, mk(t))) })
		}
	}
}

// scenario: recorded results and strays in the bucket (under the key
// prefix, and one outside it), a stale multipart upload. The dry run
// lists exactly the strays and the stale upload and deletes nothing; a
// result recorded between the scan and the clean-up (for one of the
// strays, and a new one) is never deleted; the clean-up removes exactly
// the other strays and aborts the stale upload; nothing recorded, nothing
// outside the key prefix is touched.
func scenario(t *testing.T, e *env) {
	ctx := context.Background()
	var recorded []string
	for i := range 3 {
		recorded = append(recorded, e.record(t, i).ObjectKey)
	}
	strays := map[string]int{
		"tenant/images/gemini/lost-1.png": 11,
		"tenant/junk/lost-2.bin":          2000,
		"tenant/lost-3":                   1,
	}
	for k, n := range strays {
		e.b.put(t, k, bytes.Repeat([]byte("s"), n))
	}
	e.b.put(t, "outside/not-ours.png", []byte("outside the key prefix"))
	e.b.startUpload(t, "tenant/images/gemini/abandoned.png")
	before := e.b.keys(t)

	rep, err := e.scanner.Scan(ctx, e.b.id)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	wantStrays := sorted(keysOf(strays))
	if got := sorted(rep.Orphans.Keys); !slices.Equal(got, wantStrays) || rep.Orphans.Count != 3 || rep.Orphans.Bytes != 2012 || rep.Orphans.Truncated {
		t.Fatalf("scan orphans = %+v, want exactly %q (2012 bytes)", rep.Orphans, wantStrays)
	}
	if rep.Listed != 6 || rep.Bucket != e.b.res.Bucket || rep.KeyPrefix != "tenant/" || !rep.ScannedAt.Equal(e.now) {
		t.Fatalf("scan report = %+v", rep)
	}
	if rep.StaleUploads.Count != 1 || len(rep.StaleUploads.Sample) != 1 || rep.StaleUploads.Sample[0].Key != "tenant/images/gemini/abandoned.png" || !rep.StaleUploads.Abortable {
		t.Fatalf("scan stale uploads = %+v, want the abandoned upload", rep.StaleUploads)
	}
	if got := e.b.keys(t); !slices.Equal(got, before) {
		t.Fatalf("the dry run changed the bucket: %q, was %q", got, before)
	}
	if got := e.b.uploads(t); len(got) != 1 {
		t.Fatalf("the dry run changed the uploads: %q", got)
	}

	// Between the scan and the clean-up a result is recorded for one of
	// the strays, and a new result is uploaded; during the clean-up, just
	// after its first delete, a result is recorded for another stray.
	adopted, late := "tenant/images/gemini/lost-1.png", "tenant/lost-3"
	e.recordAt(t, 1, adopted)
	recorded = append(recorded, e.record(t, 9).ObjectKey)
	var once sync.Once
	e.hook.mu.Lock()
	e.hook.onDelete = func(storage.Location) { once.Do(func() { e.recordAt(t, 2, late) }) }
	e.hook.mu.Unlock()

	if _, err := e.scanner.Clean(ctx, e.b.id, time.Time{}); !errors.Is(err, orphans.ErrConfirmation) {
		t.Fatalf("clean without the scan's time: %v, want ErrConfirmation", err)
	}
	c, err := e.scanner.Clean(ctx, e.b.id, rep.ScannedAt)
	if err != nil {
		t.Fatalf("clean: %v", err)
	}
	wantDeleted := []string{"tenant/junk/lost-2.bin"}
	if got := sorted(c.Deleted.Keys); !slices.Equal(got, wantDeleted) || c.Deleted.Count != 1 || c.Deleted.Bytes != 2000 {
		t.Fatalf("clean deleted %+v, want exactly %q", c.Deleted, wantDeleted)
	}
	if len(c.Kept) != 1 || c.Kept[0].Key != late || !strings.Contains(c.Kept[0].Reason, "refers to it now") {
		t.Fatalf("clean kept %+v, want %s (recorded while the clean-up ran)", c.Kept, late)
	}
	if len(c.Failed) != 0 {
		t.Fatalf("clean failed %+v", c.Failed)
	}
	if c.AbortedUploads != 1 || !slices.Equal(c.AbortedKeys, []string{"tenant/images/gemini/abandoned.png"}) {
		t.Fatalf("clean aborted %d uploads of %q, want the abandoned one", c.AbortedUploads, c.AbortedKeys)
	}
	want := sorted(append([]string{adopted, late, "outside/not-ours.png"}, recorded...))
	if got := e.b.keys(t); !slices.Equal(got, want) {
		t.Fatalf("after the clean-up the bucket holds %q, want %q", got, want)
	}
	if got := e.b.uploads(t); len(got) != 0 {
		t.Fatalf("after the clean-up uploads remain: %q", got)
	}
	for _, k := range recorded {
		if _, err := e.b.p.(storage.Locator).StatAt(ctx, storage.Location{Bucket: e.b.res.Bucket, Key: k}); err != nil {
			t.Errorf("recorded object %s: %v", k, err)
		}
	}
	// A second scan finds nothing.
	rep, err = e.scanner.Scan(ctx, e.b.id)
	if err != nil || rep.Orphans.Count != 0 || rep.StaleUploads.Count != 0 {
		t.Fatalf("scan after the clean-up = %+v, %v; want nothing", rep, err)
	}
}

func keysOf(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// putInput is a PutObject of data at key in bucket.
func putInput(bucket, key string, data []byte) *s3.PutObjectInput {
	return &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data)))}
}

// plain hides every optional call of a provider: a plugin built before
// listing (or its host-side client, which answers Unimplemented).
type plain struct{ storage.Provider }

// TestUnavailableWithoutListing: a provider without Capabilities.Listing
// gets a clear ErrUnavailable naming it and the cause, for the scan and the
// clean-up, and nothing is touched.
func TestUnavailableWithoutListing(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			b := memBucket(t)
			b.p = plain{b.p}
			e := newEnv(t, d, b)
			b.put(t, "tenant/lost.png", []byte("x"))
			_, err := e.scanner.Scan(context.Background(), b.id)
			if !errors.Is(err, orphans.ErrUnavailable) || !strings.Contains(err.Error(), "memory cannot list its bucket") || !strings.Contains(err.Error(), "Capabilities.Listing") {
				t.Fatalf("scan: %v, want ErrUnavailable naming the provider and the capability", err)
			}
			_, err = e.scanner.Clean(context.Background(), b.id, e.now)
			if !errors.Is(err, orphans.ErrUnavailable) {
				t.Fatalf("clean: %v, want ErrUnavailable", err)
			}
			if _, err := e.scanner.Scan(context.Background(), "nope"); !errors.Is(err, orphans.ErrNotInstalled) {
				t.Fatalf("scan of a provider not installed: %v, want ErrNotInstalled", err)
			}
			if got := b.keys(t); len(got) != 1 {
				t.Fatalf("the bucket changed: %q", got)
			}
		})
	}
}

// TestRecentObjectsAndUploadsAreLeftAlone: with the real clock, an
// unreferenced object written a moment ago (its result may be being
// recorded) is counted as recent, not an orphan, and a fresh upload is
// not stale; neither is touched by a clean-up.
func TestRecentObjectsAndUploadsAreLeftAlone(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			b := memBucket(t)
			e := newEnv(t, d, b)
			e.now = time.Now().UTC()
			b.put(t, "tenant/just-written.png", []byte("x"))
			b.startUpload(t, "tenant/uploading.png")
			rep, err := e.scanner.Scan(context.Background(), b.id)
			if err != nil || rep.Orphans.Count != 0 || rep.Recent != 1 || rep.StaleUploads.Count != 0 {
				t.Fatalf("scan = %+v, %v; want one recent object and nothing stale", rep, err)
			}
			c, err := e.scanner.Clean(context.Background(), b.id, rep.ScannedAt)
			if err != nil || c.Deleted.Count != 0 || c.AbortedUploads != 0 {
				t.Fatalf("clean = %+v, %v; want nothing removed", c, err)
			}
			if len(b.keys(t)) != 1 || len(b.uploads(t)) != 1 {
				t.Fatalf("the bucket changed: %q, uploads %q", b.keys(t), b.uploads(t))
			}
		})
	}
}
