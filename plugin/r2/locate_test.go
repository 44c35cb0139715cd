package r2

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/storage"
)

// TestLocationsSurviveAPrefixChange: Put reports the full bucket key and
// the bucket's identity; after the admin changes the key prefix, the
// object is no longer found by its key but GetAt, StatAt and DeleteAt
// reach it at its location, and DeleteAt deletes the real object. A
// location in another bucket is refused with FailedPrecondition and
// nothing is deleted in either bucket.
func TestLocationsSurviveAPrefixChange(t *testing.T) {
	srv, s := newVersity(t)
	srv.CreateBucket(t, "second")
	p := newProvider(t, s, nil, nil)
	ctx := context.Background()
	if info, err := p.Describe(ctx); err != nil || !info.Capabilities.Locations {
		t.Fatalf("describe = %+v, %v; want Capabilities.Locations", info, err)
	}
	res, err := p.Configure(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	bucketID := strings.TrimPrefix(srv.Endpoint, "http://") + "/" + bucket
	if want := (storage.ConfigureResult{PublicBaseURL: "https://pub-test.r2.dev", Bucket: bucketID, KeyPrefix: "magicads/"}); res != want {
		t.Fatalf("configure = %+v, want %+v", res, want)
	}
	const key, body = "images/gen/a b+c.png", "the result's bytes"
	pi, err := p.Put(ctx, key, strings.NewReader(body), storage.PutOptions{ContentType: "image/png", Size: int64(len(body))})
	if err != nil {
		t.Fatal(err)
	}
	stored := "magicads/" + key
	if pi.Key != key || pi.StoredKey != stored || pi.Bucket != bucketID || pi.URL != "https://pub-test.r2.dev/magicads/images/gen/a%20b%2Bc.png" {
		t.Fatalf("put = %+v; want StoredKey %q, Bucket %q and the URL of the stored key", pi, stored, bucketID)
	}
	for _, op := range []func() (storage.ObjectInfo, error){
		func() (storage.ObjectInfo, error) { return p.Stat(ctx, key) },
		func() (storage.ObjectInfo, error) {
			rc, info, err := p.Get(ctx, key, storage.GetOptions{Length: -1})
			if err == nil {
				rc.Close()
			}
			return info, err
		},
	} {
		if info, err := op(); err != nil || info.StoredKey != stored || info.Bucket != bucketID {
			t.Fatalf("stat or get by key = %+v, %v; want the StoredKey and Bucket put reported", info, err)
		}
	}

	// The admin changes the key prefix.
	if res, err := p.Configure(ctx, with(s, "key_prefix", "media/v2")); err != nil || res.KeyPrefix != "media/v2/" || res.Bucket != bucketID {
		t.Fatalf("configure with another prefix = %+v, %v", res, err)
	}
	if _, err := p.Stat(ctx, key); !storage.IsNotFound(err) {
		t.Fatalf("stat by key under the new prefix: %v, want NotFound", err)
	}
	loc := storage.Location{Bucket: pi.Bucket, Key: pi.StoredKey}
	st, err := p.StatAt(ctx, loc)
	if err != nil || st.Size != int64(len(body)) || st.ContentType != "image/png" || st.StoredKey != stored || st.Bucket != bucketID || st.Key != stored {
		t.Fatalf("stat at %+v = %+v, %v", loc, st, err)
	}
	rc, gi, err := p.GetAt(ctx, loc, storage.GetOptions{Offset: 4, Length: 8})
	if err != nil {
		t.Fatalf("get at: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != body[4:12] || gi.Size != int64(len(body)) || gi.URL != pi.URL {
		t.Fatalf("get at a range = %q, %+v, %v; want %q", got, gi, err, body[4:12])
	}

	// Another bucket: a location in it is refused here, and the bucket
	// this provider is configured for is never touched by it.
	other := storage.Location{Bucket: strings.TrimPrefix(srv.Endpoint, "http://") + "/second", Key: stored}
	_, _, gerr := p.GetAt(ctx, other, storage.GetOptions{Length: -1})
	_, serr := p.StatAt(ctx, other)
	derr := p.DeleteAt(ctx, other)
	for name, err := range map[string]error{"get at": gerr, "stat at": serr, "delete at": derr} {
		if storage.Code(err) != storage.FailedPrecondition || !strings.Contains(err.Error(), other.Bucket) || !strings.Contains(err.Error(), bucketID+";") {
			t.Errorf("%s in another bucket: %v (code %v); want FailedPrecondition naming both buckets", name, err, storage.Code(err))
		}
	}
	if keys := srv.Keys(t, bucket); !slices.Equal(keys, []string{stored}) {
		t.Fatalf("after the refused calls the bucket holds %q, want %q", keys, stored)
	}
	// Configured for the second bucket, a location in the first is refused.
	second := newProvider(t, with(s, "bucket", "second"), nil, nil)
	if _, err := second.Put(ctx, key, strings.NewReader("second"), storage.PutOptions{Size: 6}); err != nil {
		t.Fatal(err)
	}
	if err := second.DeleteAt(ctx, loc); storage.Code(err) != storage.FailedPrecondition {
		t.Fatalf("delete at a location in the first bucket, configured for the second: %v, want FailedPrecondition", err)
	}
	if keys := srv.Keys(t, bucket); !slices.Equal(keys, []string{stored}) {
		t.Fatalf("the first bucket holds %q, want %q", keys, stored)
	}
	if keys := srv.Keys(t, "second"); !slices.Equal(keys, []string{stored}) {
		t.Fatalf("the second bucket holds %q, want %q", keys, stored)
	}

	// DeleteAt deletes the real object, whatever the prefix is now.
	if err := p.DeleteAt(ctx, loc); err != nil {
		t.Fatalf("delete at: %v", err)
	}
	if keys := srv.Keys(t, bucket); len(keys) != 0 {
		t.Fatalf("delete at left %q in the bucket", keys)
	}
	if err := p.DeleteAt(ctx, loc); err != nil {
		t.Fatalf("delete at a missing object: %v, want nil", err)
	}
	if _, err := p.StatAt(ctx, loc); !storage.IsNotFound(err) {
		t.Fatalf("stat at after delete: %v, want NotFound", err)
	}
	if _, _, err := p.GetAt(ctx, loc, storage.GetOptions{Length: -1}); !storage.IsNotFound(err) {
		t.Fatalf("get at after delete: %v, want NotFound", err)
	}
	if keys := srv.Keys(t, "second"); !slices.Equal(keys, []string{stored}) {
		t.Fatalf("the second bucket holds %q after the delete in the first, want %q", keys, stored)
	}
}

func TestLocationsRefusals(t *testing.T) {
	srv, s := newVersity(t)
	p := newProvider(t, s, nil, nil)
	ctx := context.Background()
	id := strings.TrimPrefix(srv.Endpoint, "http://") + "/" + bucket
	for name, loc := range map[string]storage.Location{
		"no bucket":   {Key: "magicads/a.png"},
		".. segment":  {Bucket: id, Key: "magicads/../a.png"},
		"no key":      {Bucket: id},
		"over 1024 B": {Bucket: id, Key: strings.Repeat("k", storage.MaxKeyBytes+1)},
	} {
		if _, err := p.StatAt(ctx, loc); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("stat at, %s: %v, want InvalidArgument", name, err)
		}
		if err := p.DeleteAt(ctx, loc); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("delete at, %s: %v, want InvalidArgument", name, err)
		}
	}
	unconfigured, _ := NewFromBundle(nil)
	if _, err := unconfigured.StatAt(ctx, storage.Location{Bucket: id, Key: "a.png"}); storage.Code(err) != storage.FailedPrecondition {
		t.Errorf("not configured: %v, want FailedPrecondition", err)
	}
	wrong := newProvider(t, with(s, "secret_access_key", strings.Repeat("x", len(srv.SecretKey))), nil, nil)
	if _, err := wrong.StatAt(ctx, storage.Location{Bucket: id, Key: "magicads/a.png"}); storage.Code(err) != storage.PermissionDenied {
		t.Errorf("wrong secret: %v, want PermissionDenied", err)
	}
	// The full key is used as given: a key of 1024 bytes is addressed,
	// with no prefix added that would push it over the limit.
	long := strings.Repeat("k/", storage.MaxKeyBytes/2-1) + "kk"
	if _, err := p.StatAt(ctx, storage.Location{Bucket: id, Key: long}); !storage.IsNotFound(err) {
		t.Errorf("stat at a 1024-byte key: %v, want NotFound", err)
	}
}
