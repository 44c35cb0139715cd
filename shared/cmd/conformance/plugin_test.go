package main

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"strings"
	"sync"

	"github.com/magicads/r2storage/shared/storage"
)

// testProvider is a small correct in-memory provider served by the test
// binary when go-plugin launches it. Its settings need a "bucket"; a "mode"
// of "ignore-content-type" breaks it on purpose.
type testProvider struct {
	mu         sync.Mutex
	configured bool
	mode       string
	objects    map[string]testObject
}

type testObject struct {
	data []byte
	ct   string
}

var _ storage.Provider = (*testProvider)(nil)

// Describe returns the provider identity and capabilities.
func (p *testProvider) Describe(context.Context) (storage.Info, error) {
	return storage.Info{ID: "test-memory", Name: "Test memory provider", Version: "0.0.1",
		Capabilities: storage.Capabilities{PublicURLs: true, RangeReads: true}}, nil
}

// ValidateSettings checks settings without applying them.
func (p *testProvider) ValidateSettings(_ context.Context, s storage.Settings) ([]storage.FieldError, error) {
	if b, ok := s["bucket"].(string); !ok || b == "" {
		return []storage.FieldError{{Field: "bucket", Message: "required"}}, nil
	}
	return []storage.FieldError{}, nil
}

// Configure applies settings.
func (p *testProvider) Configure(ctx context.Context, s storage.Settings) (storage.ConfigureResult, error) {
	fields, _ := p.ValidateSettings(ctx, s)
	if len(fields) > 0 {
		return storage.ConfigureResult{}, storage.SettingsError(fields)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.configured = true
	p.mode, _ = s["mode"].(string)
	p.objects = map[string]testObject{}
	return storage.ConfigureResult{PublicBaseURL: "https://cdn.example.test"}, nil
}

// TestConnection puts, reads back and deletes a probe object.
func (p *testProvider) TestConnection(ctx context.Context) (storage.TestResult, error) {
	const key = "probe/magicads"
	res := storage.TestResult{ProbeKey: key, Step: storage.StepUpload}
	if _, err := p.Put(ctx, key, strings.NewReader("probe"), storage.PutOptions{Size: 5}); err != nil {
		res.Message = err.Error()
		return res, nil
	}
	res.Step = storage.StepDelete
	if err := p.Delete(ctx, key); err != nil {
		res.Message = err.Error()
		return res, nil
	}
	res.OK = true
	return res, nil
}

// info describes a stored object.
func (p *testProvider) info(key string, o testObject) storage.ObjectInfo {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return storage.ObjectInfo{Key: key, Size: int64(len(o.data)), ContentType: o.ct,
		URL: "https://cdn.example.test/" + strings.Join(segs, "/")}
}

// Put stores the object only when the whole content arrived.
func (p *testProvider) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	if err := storage.ValidateKey(key); err != nil {
		return storage.ObjectInfo{}, err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return storage.ObjectInfo{}, storage.Errorf(storage.Code(err), "put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, storage.Errorf(storage.Canceled, "put %s: %w", key, err)
	}
	if opts.Size >= 0 && int64(len(data)) != opts.Size {
		return storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "put %s: size mismatch", key)
	}
	ct := opts.ContentType
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.configured {
		return storage.ObjectInfo{}, storage.Errorf(storage.FailedPrecondition, "not configured")
	}
	if ct == "" || p.mode == "ignore-content-type" {
		ct = "application/octet-stream"
	}
	o := testObject{data: data, ct: ct}
	p.objects[key] = o
	return p.info(key, o), nil
}

// lookup returns the stored object at key.
func (p *testProvider) lookup(key string) (testObject, error) {
	if err := storage.ValidateKey(key); err != nil {
		return testObject{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	o, ok := p.objects[key]
	if !ok {
		return o, storage.Errorf(storage.NotFound, "%s not found", key)
	}
	return o, nil
}

// Get returns the object, or the requested range of it.
func (p *testProvider) Get(_ context.Context, key string, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	o, err := p.lookup(key)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	n := int64(len(o.data))
	if opts.Offset < 0 || opts.Offset > n {
		return nil, storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "bad range")
	}
	end := n
	if opts.Length >= 0 && opts.Offset+opts.Length < n {
		end = opts.Offset + opts.Length
	}
	return io.NopCloser(bytes.NewReader(o.data[opts.Offset:end])), p.info(key, o), nil
}

// Stat returns the object attributes.
func (p *testProvider) Stat(_ context.Context, key string) (storage.ObjectInfo, error) {
	o, err := p.lookup(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return p.info(key, o), nil
}

// Delete removes the object; a missing key is not an error.
func (p *testProvider) Delete(_ context.Context, key string) error {
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.objects, key)
	return nil
}

// Health reports whether the provider is configured.
func (p *testProvider) Health(context.Context) (storage.Health, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.configured {
		return storage.Health{Message: "not configured"}, nil
	}
	return storage.Health{OK: true, Configured: true}, nil
}
