package pluginrt

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/magicads/r2storage/shared/sdk"
	"github.com/magicads/r2storage/shared/storage"
)

// handle is the stable storage.Provider of one plugin id: each call looks up
// the client running at that moment.
type handle struct {
	rt *Runtime
	id string
}

var (
	_ storage.Provider      = (*handle)(nil)
	_ storage.UploadAborter = (*handle)(nil)
	_ storage.Locator       = (*handle)(nil)
	_ storage.Lister        = (*handle)(nil)
)

// ReturnsOnCancel reports that every call returns once its context ends:
// each is an RPC bound to that context.
func (h *handle) ReturnsOnCancel() bool { return true }

// unavailable is the error of a call that cannot reach the plugin.
func unavailable(id string, state State, lastErr string, cause error) *storage.Error {
	msg := fmt.Sprintf("plugin %s is %s", id, state)
	if lastErr != "" {
		msg += ": " + lastErr
	}
	return &storage.Error{Code: storage.Unavailable, Message: msg, Err: cause}
}

// call runs f on the current client of h's plugin. A call that fails because
// the plugin went away (it exited, or was detached for a restart or stop)
// returns Unavailable, unless the caller's own ctx ended.
func call[T any](ctx context.Context, h *handle, method string, f func(c *sdk.Client) (T, error)) (T, error) {
	var zero T
	s := h.rt.lookup(h.id)
	if s == nil {
		return zero, unavailable(h.id, "unknown", "it was never started", nil)
	}
	c, err := s.current()
	if err != nil {
		return zero, err
	}
	start := time.Now()
	v, err := f(c)
	if h.rt.opts.OnCall != nil {
		h.rt.opts.OnCall(h.id, method, time.Since(start))
	}
	if err == nil {
		return v, nil
	}
	if ctx.Err() != nil {
		return v, err
	}
	gone := c.Exited() || !s.isCurrent(c)
	if gone || storage.IsRetryable(err) {
		s.poke()
	}
	if !gone {
		return v, err
	}
	if _, cerr := s.current(); cerr != nil {
		return zero, unavailable(h.id, s.snapshot().State, s.redact(fmt.Sprintf("the call failed: %v", err)), err)
	}
	return zero, &storage.Error{Code: storage.Unavailable, Message: s.redact(fmt.Sprintf("plugin %s stopped responding: %v", h.id, err)), Err: err}
}

// Describe calls Describe on the running plugin.
func (h *handle) Describe(ctx context.Context) (storage.Info, error) {
	return call(ctx, h, "describe", func(c *sdk.Client) (storage.Info, error) { return c.Describe(ctx) })
}

// ValidateSettings calls ValidateSettings on the running plugin.
func (h *handle) ValidateSettings(ctx context.Context, st storage.Settings) ([]storage.FieldError, error) {
	return call(ctx, h, "validate_settings", func(c *sdk.Client) ([]storage.FieldError, error) { return c.ValidateSettings(ctx, st) })
}

// Configure calls Configure on the running plugin.
func (h *handle) Configure(ctx context.Context, st storage.Settings) (storage.ConfigureResult, error) {
	return call(ctx, h, "configure", func(c *sdk.Client) (storage.ConfigureResult, error) { return c.Configure(ctx, st) })
}

// TestConnection calls TestConnection on the running plugin.
func (h *handle) TestConnection(ctx context.Context) (storage.TestResult, error) {
	return call(ctx, h, "test_connection", func(c *sdk.Client) (storage.TestResult, error) { return c.TestConnection(ctx) })
}

// Put calls Put on the running plugin.
func (h *handle) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	return call(ctx, h, "put", func(c *sdk.Client) (storage.ObjectInfo, error) { return c.Put(ctx, key, r, opts) })
}

// getResult carries Get's two values through call.
type getResult struct {
	rc   io.ReadCloser
	info storage.ObjectInfo
}

// Get calls Get on the running plugin; the reader stays bound to that process.
func (h *handle) Get(ctx context.Context, key string, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	res, err := call(ctx, h, "get", func(c *sdk.Client) (getResult, error) {
		rc, info, err := c.Get(ctx, key, opts)
		return getResult{rc: rc, info: info}, err
	})
	return res.rc, res.info, err
}

// Stat calls Stat on the running plugin.
func (h *handle) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	return call(ctx, h, "stat", func(c *sdk.Client) (storage.ObjectInfo, error) { return c.Stat(ctx, key) })
}

// Delete calls Delete on the running plugin.
func (h *handle) Delete(ctx context.Context, key string) error {
	_, err := call(ctx, h, "delete", func(c *sdk.Client) (struct{}, error) { return struct{}{}, c.Delete(ctx, key) })
	return err
}

// Health calls Health on the running plugin.
func (h *handle) Health(ctx context.Context) (storage.Health, error) {
	return call(ctx, h, "health", func(c *sdk.Client) (storage.Health, error) { return c.Health(ctx) })
}

// AbortUploads calls AbortUploads on the running plugin: Unavailable while
// it is not running, Unimplemented when the plugin does not declare the
// call (as a plugin built with an older SDK does).
func (h *handle) AbortUploads(ctx context.Context, keys []string) (int, error) {
	return call(ctx, h, "abort_uploads", func(c *sdk.Client) (int, error) { return c.AbortUploads(ctx, keys) })
}

// GetAt calls GetAt on the running plugin (Unimplemented when the plugin
// lacks it); the reader stays bound to that process.
func (h *handle) GetAt(ctx context.Context, loc storage.Location, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	res, err := call(ctx, h, "get_at", func(c *sdk.Client) (getResult, error) {
		rc, info, err := c.GetAt(ctx, loc, opts)
		return getResult{rc: rc, info: info}, err
	})
	return res.rc, res.info, err
}

// StatAt calls StatAt on the running plugin (Unimplemented when the plugin
// lacks it).
func (h *handle) StatAt(ctx context.Context, loc storage.Location) (storage.ObjectInfo, error) {
	return call(ctx, h, "stat_at", func(c *sdk.Client) (storage.ObjectInfo, error) { return c.StatAt(ctx, loc) })
}

// DeleteAt calls DeleteAt on the running plugin (Unimplemented when the
// plugin lacks it).
func (h *handle) DeleteAt(ctx context.Context, loc storage.Location) error {
	_, err := call(ctx, h, "delete_at", func(c *sdk.Client) (struct{}, error) { return struct{}{}, c.DeleteAt(ctx, loc) })
	return err
}

// List calls List on the running plugin (Unimplemented when the plugin
// does not declare Capabilities.Listing).
func (h *handle) List(ctx context.Context, opts storage.ListOptions) (storage.ListPage, error) {
	return call(ctx, h, "list", func(c *sdk.Client) (storage.ListPage, error) { return c.List(ctx, opts) })
}

// ListUploads calls ListUploads on the running plugin (Unimplemented when
// the plugin does not declare Capabilities.Listing).
func (h *handle) ListUploads(ctx context.Context, cursor string) (storage.UploadPage, error) {
	return call(ctx, h, "list_uploads", func(c *sdk.Client) (storage.UploadPage, error) { return c.ListUploads(ctx, cursor) })
}
