package memstore_test

import (
	"context"
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
