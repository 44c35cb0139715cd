package pluginrt

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/magicads/r2storage/shared/storage"
)

// TestHandleForwardsLocator: the stable handle forwards GetAt, StatAt and
// DeleteAt to the running process, says Unimplemented when the plugin
// lacks them, and Unavailable while no process runs.
func TestHandleForwardsLocator(t *testing.T) {
	r, _ := newRuntime(t, Options{})
	ctx := context.Background()
	if err := r.Start(ctx, selfSpec(t, "locates", modeOK)); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, selfSpec(t, "lacks", modeNoAbort)); err != nil {
		t.Fatal(err)
	}
	p := r.Provider("locates")
	l, ok := p.(storage.Locator)
	if !ok {
		t.Fatal("the handle does not implement storage.Locator")
	}
	data := []byte("where it is")
	info, err := p.Put(ctx, "images/a.png", bytes.NewReader(data), storage.PutOptions{Size: int64(len(data))})
	if err != nil || info.Bucket == "" || info.StoredKey == "" {
		t.Fatalf("put: %+v, %v; want its bucket and stored key", info, err)
	}
	loc := storage.Location{Bucket: info.Bucket, Key: info.StoredKey}
	if st, err := l.StatAt(ctx, loc); err != nil || st.Size != int64(len(data)) {
		t.Fatalf("stat at %+v: %+v, %v", loc, st, err)
	}
	rc, _, err := l.GetAt(ctx, loc, storage.GetOptions{Length: -1})
	if err != nil {
		t.Fatalf("get at %+v: %v", loc, err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("get at: %q", got)
	}
	if err := l.DeleteAt(ctx, storage.Location{Bucket: "memory:elsewhere", Key: info.StoredKey}); storage.Code(err) != storage.FailedPrecondition {
		t.Fatalf("delete at another bucket: %v, want FailedPrecondition", err)
	}
	if err := l.DeleteAt(ctx, loc); err != nil {
		t.Fatalf("delete at: %v", err)
	}
	if _, err := l.StatAt(ctx, loc); !storage.IsNotFound(err) {
		t.Fatalf("stat after delete: %v, want NotFound", err)
	}

	lacks := r.Provider("lacks").(storage.Locator)
	if err := lacks.DeleteAt(ctx, loc); storage.Code(err) != storage.Unimplemented {
		t.Fatalf("delete at on a plugin without it: %v (code %v); want Unimplemented", err, storage.Code(err))
	}
	if err := r.Stop(ctx, "locates"); err != nil {
		t.Fatal(err)
	}
	_, err = l.StatAt(ctx, loc)
	wantUnavailable(t, err, "plugin locates is stopped")
}
