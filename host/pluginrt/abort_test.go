package pluginrt

import (
	"context"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/storage"
)

// TestHandleForwardsAbortUploads: the stable handle forwards AbortUploads to
// the running process, says Unimplemented when the plugin lacks it, and
// Unavailable while no process runs.
func TestHandleForwardsAbortUploads(t *testing.T) {
	r, logs := newRuntime(t, Options{})
	ctx := context.Background()
	if err := r.Start(ctx, selfSpec(t, "counts", modeAbortCount)); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, selfSpec(t, "lacks", modeNoAbort)); err != nil {
		t.Fatal(err)
	}
	a, ok := r.Provider("counts").(storage.UploadAborter)
	if !ok {
		t.Fatal("the handle does not implement storage.UploadAborter")
	}
	if n, err := a.AbortUploads(ctx, []string{"images/a.png", "images/b.png", "c"}); n != 3 || err != nil {
		t.Fatalf("abort uploads via the handle: %d, %v; want 3 (the plugin's answer), nil", n, err)
	}
	if _, err := a.AbortUploads(ctx, []string{"a/../b"}); storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("abort uploads of a bad key: %v, want InvalidArgument", err)
	}

	lacks := r.Provider("lacks").(storage.UploadAborter)
	n, err := lacks.AbortUploads(ctx, []string{"images/a.png"})
	if n != 0 || storage.Code(err) != storage.Unimplemented {
		t.Fatalf("abort uploads on a plugin without it: %d, %v (code %v); want Unimplemented", n, err, storage.Code(err))
	}
	if st, _ := r.Status("lacks"); st.State != StateRunning || st.Restarts != 0 || st.LastError != "" {
		t.Fatalf("after an Unimplemented answer the plugin is %+v; want it running untouched", st)
	}
	if info, err := r.Provider("lacks").Describe(ctx); err != nil || info.Capabilities.AbortUploads {
		t.Fatalf("describe of the plugin without it: %+v, %v", info, err)
	}

	// No error noise: neither the host nor a plugin warned about the calls.
	if l := logs.String(); strings.Contains(l, "[WARN]") || strings.Contains(l, "[ERROR]") {
		t.Errorf("the host log has warnings or errors after the abort calls:\n%s", l)
	}
	if err := r.Stop(ctx, "counts"); err != nil {
		t.Fatal(err)
	}
	_, err = a.AbortUploads(ctx, []string{"images/a.png"})
	wantUnavailable(t, err, "plugin counts is stopped")
	_, err = r.Provider("nope").(storage.UploadAborter).AbortUploads(ctx, []string{"images/a.png"})
	wantUnavailable(t, err, "plugin nope is unknown")
}
