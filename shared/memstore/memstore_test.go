package memstore_test

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/conformance"
	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/storage"
)

func TestConformance(t *testing.T) {
	s := memstore.New("https://cdn.example.com/media")
	conformance.Run(t, s)
	if keys := s.Keys(); len(keys) != 0 {
		t.Fatalf("the suite left %v", keys)
	}
}

// TestConformanceWithBucketAndPrefix runs the suite with a bucket and key
// prefix configured, telling it what Configure reported.
func TestConformanceWithBucketAndPrefix(t *testing.T) {
	s := memstore.New("")
	res, err := s.Configure(t.Context(), storage.Settings{"bucket": "media", "key_prefix": "tenants/acme", "public_url": "https://cdn.example.com/m"})
	if err != nil {
		t.Fatal(err)
	}
	conformance.Run(t, s, conformance.Configured(res))
	if keys := s.Keys(); len(keys) != 0 {
		t.Fatalf("the suite left %v", keys)
	}
}

// TestAbortUploads: the reference provider declares and implements the
// optional UploadAborter, so the suite's abort-uploads case runs on it.
func TestAbortUploads(t *testing.T) {
	s := memstore.New("")
	ctx := context.Background()
	info, err := s.Describe(ctx)
	if err != nil || !info.Capabilities.AbortUploads {
		t.Fatalf("describe: %+v, %v; want Capabilities.AbortUploads", info, err)
	}
	var p storage.Provider = s
	a, ok := p.(storage.UploadAborter)
	if !ok {
		t.Fatal("memstore does not implement storage.UploadAborter")
	}
	if _, err := s.Put(ctx, "a/b.png", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	if n, err := a.AbortUploads(ctx, []string{"a/b.png", "a/b.png2"}); n != 0 || err != nil {
		t.Fatalf("abort uploads: %d, %v; want 0, nil", n, err)
	}
	if _, err := s.Stat(ctx, "a/b.png"); err != nil {
		t.Fatalf("the object is gone after AbortUploads: %v", err)
	}
	if _, err := a.AbortUploads(ctx, []string{"a/../b"}); storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("abort uploads of a bad key: %v, want InvalidArgument", err)
	}
}

// TestLocations: Configure reports the bucket identity and key prefix; Put
// stores under the prefix and says where; after the prefix changes the
// object is reached by its Location only; another bucket is refused with
// FailedPrecondition naming both and nothing is touched; each bucket keeps
// its own objects.
func TestLocations(t *testing.T) {
	s := memstore.New("")
	ctx := context.Background()
	var p storage.Provider = s
	l, ok := p.(storage.Locator)
	if !ok {
		t.Fatal("memstore does not implement storage.Locator")
	}
	if info, err := s.Describe(ctx); err != nil || !info.Capabilities.Locations {
		t.Fatalf("describe: %+v, %v; want Capabilities.Locations", info, err)
	}
	res, err := s.Configure(ctx, storage.Settings{"bucket": "media", "key_prefix": "/tenants/acme/", "public_url": "https://cdn.example.com/m/"})
	want := storage.ConfigureResult{PublicBaseURL: "https://cdn.example.com/m", Bucket: "memory:media", KeyPrefix: "tenants/acme/"}
	if err != nil || res != want {
		t.Fatalf("configure = %+v, %v; want %+v", res, err, want)
	}
	const key, body = "images/a b+c.png", "located"
	pi, err := s.Put(ctx, key, strings.NewReader(body), storage.PutOptions{ContentType: "image/png", Size: int64(len(body))})
	if err != nil {
		t.Fatal(err)
	}
	if pi.Key != key || pi.StoredKey != "tenants/acme/"+key || pi.Bucket != "memory:media" || pi.URL != storage.PublicURL(res.PublicBaseURL, pi.StoredKey) {
		t.Fatalf("put = %+v", pi)
	}
	if got := s.Keys(); !slices.Equal(got, []string{pi.StoredKey}) {
		t.Fatalf("keys = %q, want the stored key", got)
	}
	loc := storage.Location{Bucket: pi.Bucket, Key: pi.StoredKey}
	if st, err := l.StatAt(ctx, loc); err != nil || st.Key != key || st.StoredKey != loc.Key || st.Bucket != loc.Bucket {
		t.Fatalf("stat at under the same prefix = %+v, %v; want Key %q", st, err, key)
	}

	if res, err := s.Configure(ctx, storage.Settings{"bucket": "media"}); err != nil || res.KeyPrefix != "" || res.Bucket != "memory:media" {
		t.Fatalf("configure without a prefix = %+v, %v", res, err)
	}
	if _, err := s.Stat(ctx, key); !storage.IsNotFound(err) {
		t.Fatalf("stat by key after the prefix changed: %v, want NotFound", err)
	}
	st, err := l.StatAt(ctx, loc)
	if err != nil || st.Key != loc.Key || st.Size != int64(len(body)) || st.URL != "" {
		t.Fatalf("stat at after the prefix changed = %+v, %v", st, err)
	}
	rc, gi, err := l.GetAt(ctx, loc, storage.GetOptions{Offset: 1, Length: 3})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != body[1:4] || gi.Size != int64(len(body)) || gi.StoredKey != loc.Key {
		t.Fatalf("get at a range = %q, %+v", got, gi)
	}

	// Another bucket: the object is out of reach, not missing.
	if _, err := s.Configure(ctx, storage.Settings{"bucket": "archive"}); err != nil {
		t.Fatal(err)
	}
	_, _, gerr := l.GetAt(ctx, loc, storage.GetOptions{Length: -1})
	_, serr := l.StatAt(ctx, loc)
	derr := l.DeleteAt(ctx, loc)
	for name, err := range map[string]error{"get at": gerr, "stat at": serr, "delete at": derr} {
		if storage.Code(err) != storage.FailedPrecondition || !strings.Contains(err.Error(), "memory:media") || !strings.Contains(err.Error(), "memory:archive") {
			t.Errorf("%s in the old bucket: %v (code %v); want FailedPrecondition naming both buckets", name, err, storage.Code(err))
		}
	}
	if keys := s.Keys(); len(keys) != 0 {
		t.Fatalf("the new bucket holds %q, want nothing", keys)
	}
	if _, err := s.Configure(ctx, storage.Settings{"bucket": "media"}); err != nil {
		t.Fatal(err)
	}
	if got := s.Keys(); !slices.Equal(got, []string{pi.StoredKey}) {
		t.Fatalf("back in the old bucket, keys = %q, want the object untouched", got)
	}
	if err := l.DeleteAt(ctx, loc); err != nil {
		t.Fatalf("delete at: %v", err)
	}
	if keys := s.Keys(); len(keys) != 0 {
		t.Fatalf("delete at left %q", keys)
	}
	if err := l.DeleteAt(ctx, loc); err != nil {
		t.Fatalf("delete at a missing object: %v", err)
	}
	if _, err := l.StatAt(ctx, loc); !storage.IsNotFound(err) {
		t.Fatalf("stat at after delete: %v, want NotFound", err)
	}
	if _, err := l.StatAt(ctx, storage.Location{Key: loc.Key}); storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("stat at without a bucket: %v, want InvalidArgument", err)
	}
}

func TestSettings(t *testing.T) {
	s := memstore.New("")
	ctx := context.Background()
	if res, err := s.Configure(ctx, storage.Settings{}); err != nil || res.Bucket != memstore.BucketID(memstore.DefaultBucket) || res.KeyPrefix != "" {
		t.Fatalf("configure with no settings = %+v, %v; want the default bucket and no prefix", res, err)
	}
	for _, c := range []struct {
		field    string
		settings storage.Settings
	}{
		{"bucket", storage.Settings{"bucket": ""}},
		{"bucket", storage.Settings{"bucket": "a/b"}},
		{"bucket", storage.Settings{"bucket": 7}},
		{"key_prefix", storage.Settings{"key_prefix": "a/../b"}},
		{"key_prefix", storage.Settings{"key_prefix": "a//b"}},
		{"public_url", storage.Settings{"public_url": "ftp://x"}},
		{"mode", storage.Settings{"mode": "x"}},
	} {
		fe, err := s.ValidateSettings(ctx, c.settings)
		if err != nil || len(fe) != 1 || fe[0].Field != c.field {
			t.Errorf("validate %v = %v, %v; want one problem with %s", c.settings, fe, err, c.field)
		}
		if _, err := s.Configure(ctx, c.settings); storage.Code(err) != storage.InvalidSettings {
			t.Errorf("configure %v: %v, want InvalidSettings", c.settings, err)
		}
	}
	long := strings.Repeat("k", storage.MaxKeyBytes)
	if _, err := s.Configure(ctx, storage.Settings{"key_prefix": "p"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, long, strings.NewReader(""), storage.PutOptions{Size: 0}); storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("put of a key too long with the prefix: %v, want InvalidArgument", err)
	}
}

// TestMissingBucket: a store made by NewWithBuckets answers the calls on
// a bucket it does not have as the contract says (conformance's
// CheckMissingBucket), and reaches its objects again once configured back;
// a store made by New has every bucket.
func TestMissingBucket(t *testing.T) {
	ctx := t.Context()
	settings := storage.Settings{"bucket": "media", "key_prefix": "tenants/acme"}
	s := memstore.NewWithBuckets("", "media")
	if _, err := s.Configure(ctx, settings); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "kept.png", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	if err := conformance.CheckMissingBucket(ctx, s, settings); err != nil {
		t.Fatalf("NewWithBuckets: %v", err)
	}
	if _, err := s.Stat(ctx, "kept.png"); err != nil {
		t.Fatalf("stat after configuring the bucket back: %v", err)
	}
	if _, err := s.Configure(ctx, storage.Settings{"bucket": "gone"}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Stat(ctx, "kept.png")
	if storage.Code(err) != storage.FailedPrecondition || !strings.Contains(err.Error(), "gone") {
		t.Fatalf("stat in a missing bucket: %v, want FailedPrecondition naming it", err)
	}
	s.CreateBucket("gone")
	if _, err := s.Stat(ctx, "kept.png"); !storage.IsNotFound(err) {
		t.Fatalf("stat after CreateBucket: %v, want NotFound", err)
	}
	if err := conformance.CheckMissingBucket(ctx, memstore.New(""), settings); err == nil || !strings.Contains(err.Error(), "put") {
		t.Fatalf("New makes every bucket, so the check fails: %v", err)
	}
}

// TestReadAtEnd: a Get at Offset == size is an empty read with the
// object's info; past it, InvalidArgument.
func TestReadAtEnd(t *testing.T) {
	ctx := t.Context()
	s := memstore.New("")
	if _, err := s.Put(ctx, "a", strings.NewReader("abc"), storage.PutOptions{Size: 3}); err != nil {
		t.Fatal(err)
	}
	rc, info, err := s.Get(ctx, "a", storage.GetOptions{Offset: 3, Length: -1})
	if err != nil || info.Size != 3 {
		t.Fatalf("get at the end: %+v, %v", info, err)
	}
	if b, _ := io.ReadAll(rc); len(b) != 0 {
		t.Fatalf("get at the end read %q", b)
	}
	for _, l := range []int64{-1, 0, 1} {
		if _, _, err := s.Get(ctx, "a", storage.GetOptions{Offset: 4, Length: l}); storage.Code(err) != storage.InvalidArgument {
			t.Fatalf("get past the end (Length %d): %v, want InvalidArgument", l, err)
		}
	}
}
