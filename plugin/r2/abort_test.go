package r2

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/storage"
)

// TestAbortUploadsAbortsOnlyTheExactKey: incomplete uploads left at the
// full keys of the given keys are aborted, several per key and over
// several listing pages; uploads of other keys, of longer keys starting
// with the same bytes and of the bare key without the prefix remain, and
// stored objects are untouched.
func TestAbortUploadsAbortsOnlyTheExactKey(t *testing.T) {
	srv, s := newVersity(t)
	p := newProvider(t, s, nil, nil)
	p.abortListPage = 2 // several pages for a few uploads
	ctx := context.Background()
	special := "ünï cødé/a b+c&d=%2F.png"
	objects := map[string]string{"a/b.png": "stored object", "a/b.png2": "its neighbour"}
	for k, v := range objects {
		if _, err := p.Put(ctx, k, strings.NewReader(v), storage.PutOptions{ContentType: "image/png", Size: int64(len(v))}); err != nil {
			t.Fatal(err)
		}
	}
	part := []byte("part of an upload that never completed")
	for _, k := range []string{
		"magicads/a/b.png", "magicads/a/b.png", "magicads/a/b.png", // three for the exact key
		"magicads/" + special,
		"magicads/a/b.png2", "magicads/a/b.png/x", "magicads/a/c.png", "a/b.png",
	} {
		srv.StartMultipartUpload(t, bucket, k, part)
	}

	n, err := p.AbortUploads(ctx, []string{"a/b.png", special, "nothing/pending.png"})
	if err != nil || n != 4 {
		t.Fatalf("abort uploads: %d, %v; want 4, nil", n, err)
	}
	want := []string{"a/b.png", "magicads/a/b.png/x", "magicads/a/b.png2", "magicads/a/c.png"}
	if got := srv.MultipartUploads(t, bucket); !slices.Equal(got, want) {
		t.Fatalf("uploads left %q, want %q", got, want)
	}
	for k, v := range objects {
		if got := string(srv.GetObject(t, bucket, "magicads/"+k)); got != v {
			t.Fatalf("object %s reads %q after AbortUploads, want %q", k, got, v)
		}
	}
	if n, err := p.AbortUploads(ctx, []string{"a/b.png", special}); err != nil || n != 0 {
		t.Fatalf("abort uploads again: %d, %v; want 0, nil", n, err)
	}
}

func TestAbortUploadsRefusals(t *testing.T) {
	srv, s := newVersity(t)
	p := newProvider(t, s, nil, nil)
	ctx := context.Background()
	srv.StartMultipartUpload(t, bucket, "magicads/a.png", []byte("part"))
	long := strings.Repeat("k", storage.MaxKeyBytes) // fits alone, not with the prefix
	for name, keys := range map[string][]string{
		"bad key":                  {"a.png", "a/../b"},
		"too long with the prefix": {"a.png", long},
		"too many":                 slices.Repeat([]string{"a.png"}, storage.MaxAbortKeys+1),
	} {
		if _, err := p.AbortUploads(ctx, keys); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("%s: %v (code %v), want InvalidArgument", name, err, storage.Code(err))
		}
	}
	if got := srv.MultipartUploads(t, bucket); !slices.Equal(got, []string{"magicads/a.png"}) {
		t.Fatalf("a refused call aborted uploads: left %q", got)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.AbortUploads(cancelled, []string{"a.png"}); storage.Code(err) != storage.Canceled {
		t.Errorf("cancelled: %v (code %v), want Canceled", err, storage.Code(err))
	}
	wrong := newProvider(t, with(s, "secret_access_key", strings.Repeat("x", len(srv.SecretKey))), nil, nil)
	if _, err := wrong.AbortUploads(ctx, []string{"a.png"}); storage.Code(err) != storage.PermissionDenied {
		t.Errorf("wrong secret: %v (code %v), want PermissionDenied", err, storage.Code(err))
	}
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := closed.Addr().String()
	closed.Close()
	gone := newProvider(t, with(s, "endpoint", "http://"+addr), nil, nil)
	if _, err := gone.AbortUploads(ctx, []string{"a.png"}); storage.Code(err) != storage.Unavailable {
		t.Errorf("unreachable endpoint: %v (code %v), want Unavailable", err, storage.Code(err))
	}
	unconfigured, _ := NewFromBundle(nil)
	if _, err := unconfigured.AbortUploads(ctx, []string{"a.png"}); storage.Code(err) != storage.FailedPrecondition {
		t.Errorf("not configured: %v (code %v), want FailedPrecondition", err, storage.Code(err))
	}
	if got := srv.MultipartUploads(t, bucket); !slices.Equal(got, []string{"magicads/a.png"}) {
		t.Fatalf("uploads left %q after the failed calls, want the one", got)
	}
}
