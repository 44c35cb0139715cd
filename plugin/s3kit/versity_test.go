package s3kit

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/shared/storage"
)

// versityBucket starts versitygw with the bucket "media" and returns a
// Bucket for name on it.
func versityBucket(t *testing.T, name string) Bucket {
	t.Helper()
	srv := s3test.StartVersityIn(t, "us-east-1")
	srv.CreateBucket(t, "media")
	client, tm := NewClients(ClientConfig{Region: "us-east-1", Endpoint: srv.Endpoint, UsePathStyle: true, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	return Bucket{Client: client, Uploader: tm, Name: name}
}

// TestBucketReadAtEnd: a Get at Offset == size is an empty read with the
// object's size (S3 answers 416); past it, InvalidArgument, also with
// Length 0.
func TestBucketReadAtEnd(t *testing.T) {
	b := versityBucket(t, "media")
	ctx := context.Background()
	if _, err := b.Put(ctx, "a", "a", Upload{Body: strings.NewReader("abcdef"), Size: 6, ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	for _, length := range []int64{-1, 0, 3} {
		rc, obj, err := b.Get(ctx, "a", "a", storage.GetOptions{Offset: 6, Length: length})
		if err != nil {
			t.Fatalf("get at the end (Length %d): %v", length, err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if len(got) != 0 || obj.Size != 6 || obj.ETag == "" {
			t.Fatalf("get at the end (Length %d): %q, %+v; want nothing and the object's size", length, got, obj)
		}
		_, _, err = b.Get(ctx, "a", "a", storage.GetOptions{Offset: 7, Length: length})
		if storage.Code(err) != storage.InvalidArgument || !strings.Contains(err.Error(), "offset 7 is past the end of the object (6 bytes)") {
			t.Fatalf("get past the end (Length %d): %v, want InvalidArgument naming offset and size", length, err)
		}
	}
}

// TestBucketMissing: in a bucket that does not exist, every call fails
// with FailedPrecondition naming it, Stat (whose HEAD gets a bodiless
// 404) included, and Delete does not succeed.
func TestBucketMissing(t *testing.T) {
	b := versityBucket(t, "no-such-bucket")
	ctx := context.Background()
	check := func(op string, err error) {
		t.Helper()
		if storage.Code(err) != storage.FailedPrecondition || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
			t.Errorf("%s: %v (code %v), want FailedPrecondition naming the bucket", op, err, storage.Code(err))
		}
	}
	_, err := b.Put(ctx, "a", "a", Upload{Body: strings.NewReader("x"), Size: 1, ContentType: "text/plain"})
	check("put", err)
	_, err = b.Stat(ctx, "a", "a")
	check("stat", err)
	_, _, err = b.Get(ctx, "a", "a", storage.GetOptions{Length: -1})
	check("get", err)
	_, _, err = b.Get(ctx, "a", "a", storage.GetOptions{Offset: 3, Length: -1})
	check("ranged get", err)
	check("delete", b.Delete(ctx, "a", "a"))

	// A missing key in a bucket that exists is still NotFound.
	b = versityBucket(t, "media")
	if _, err := b.Stat(ctx, "a", "a"); !storage.IsNotFound(err) {
		t.Errorf("stat of a missing key: %v, want NotFound", err)
	}
}
