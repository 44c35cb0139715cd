package pluginrt

import (
	"bytes"
	"context"
	"testing"

	"github.com/magicads/r2storage/shared/storage"
)

// TestHandleForwardsLister: the stable handle forwards List and
// ListUploads to the running process, says Unimplemented when the plugin
// lacks them, and Unavailable while no process runs.
func TestHandleForwardsLister(t *testing.T) {
	r, _ := newRuntime(t, Options{})
	ctx := context.Background()
	if err := r.Start(ctx, selfSpec(t, "lists", modeOK)); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, selfSpec(t, "lacks", modeNoAbort)); err != nil {
		t.Fatal(err)
	}
	p := r.Provider("lists")
	l, ok := p.(storage.Lister)
	if !ok {
		t.Fatal("the handle does not implement storage.Lister")
	}
	if _, err := p.Put(ctx, "images/a.png", bytes.NewReader([]byte("abc")), storage.PutOptions{Size: 3}); err != nil {
		t.Fatal(err)
	}
	page, err := l.List(ctx, storage.ListOptions{Prefix: "images/"})
	if err != nil || len(page.Objects) != 1 || page.Objects[0].Key != "images/a.png" || page.Objects[0].Size != 3 {
		t.Fatalf("list: %+v, %v", page, err)
	}
	if up, err := l.ListUploads(ctx, ""); err != nil || len(up.Uploads) != 0 {
		t.Fatalf("list uploads: %+v, %v", up, err)
	}
	if _, err := r.Provider("lacks").(storage.Lister).List(ctx, storage.ListOptions{}); storage.Code(err) != storage.Unimplemented {
		t.Fatalf("list on a plugin without it: %v (code %v); want Unimplemented", err, storage.Code(err))
	}
	if err := r.Stop(ctx, "lists"); err != nil {
		t.Fatal(err)
	}
	_, err = l.List(ctx, storage.ListOptions{})
	wantUnavailable(t, err, "plugin lists is stopped")
}
