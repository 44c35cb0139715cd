package storage_test

import (
	"context"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/storage"
)

// lister is a bare provider with a Lister that returns n objects whatever
// the limit, and counts its calls.
type lister struct {
	bare
	n     int
	limit int
}

func (l *lister) List(_ context.Context, opts storage.ListOptions) (storage.ListPage, error) {
	l.calls++
	l.limit = opts.Limit
	page := storage.ListPage{}
	for range l.n {
		page.Objects = append(page.Objects, storage.ObjectInfo{Key: "k", StoredKey: "k"})
	}
	return page, nil
}

func (l *lister) ListUploads(context.Context, string) (storage.UploadPage, error) {
	l.calls++
	return storage.UploadPage{}, nil
}

// TestGuardListing: Guard of a Lister is a Lister that refuses bad options
// before the provider sees them, hands it the limit (0 and too large ones
// become MaxListLimit) and refuses a page over it; Guard of a provider
// without it is no Lister.
func TestGuardListing(t *testing.T) {
	ctx := context.Background()
	if _, ok := storage.Guard(&bare{}).(storage.Lister); ok {
		t.Fatal("Guard of a provider without List is a Lister")
	}
	p := &lister{n: 2}
	g, ok := storage.Guard(p).(storage.Lister)
	if !ok {
		t.Fatal("Guard of a Lister is not a Lister")
	}
	for _, bad := range []storage.ListOptions{
		{Limit: -1}, {Prefix: "/a"}, {Prefix: "a\x00"}, {Prefix: `a\b`}, {Prefix: strings.Repeat("p", storage.MaxKeyBytes+1)},
		{Cursor: strings.Repeat("c", storage.MaxCursorBytes+1)},
	} {
		if _, err := g.List(ctx, bad); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("list %+v: %v, want InvalidArgument", bad, err)
		}
	}
	if _, err := g.ListUploads(ctx, strings.Repeat("c", storage.MaxCursorBytes+1)); storage.Code(err) != storage.InvalidArgument {
		t.Errorf("list uploads with a huge cursor: %v, want InvalidArgument", err)
	}
	if p.calls != 0 {
		t.Fatalf("refused options reached the provider %d times", p.calls)
	}
	for in, want := range map[int]int{0: storage.MaxListLimit, 2: 2, storage.MaxListLimit + 1: storage.MaxListLimit} {
		if _, err := g.List(ctx, storage.ListOptions{Limit: in, Prefix: "a/b-"}); err != nil || p.limit != want {
			t.Errorf("list with limit %d: provider got %d, %v; want %d", in, p.limit, err, want)
		}
	}
	if _, err := g.List(ctx, storage.ListOptions{Limit: 1}); storage.Code(err) != storage.Unknown || !strings.Contains(err.Error(), "2 objects in a page limited to 1") {
		t.Errorf("a page over the limit: %v, want Unknown naming both", err)
	}
	// Every combination of optional calls keeps Lister.
	type aborterLister struct {
		*lister
		storage.UploadAborter
	}
	if _, ok := storage.Guard(aborterLister{lister: p, UploadAborter: nil}).(storage.Lister); !ok {
		t.Error("Guard of an UploadAborter and Lister is no Lister")
	}
	if _, ok := storage.Guard(aborterLister{lister: p}).(storage.UploadAborter); !ok {
		t.Error("Guard of an UploadAborter and Lister is no UploadAborter")
	}
}
