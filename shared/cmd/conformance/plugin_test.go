package main

import (
	"context"
	"io"
	"sync"

	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/storage"
)

// testProvider is the reference memstore provider, served by the test binary
// when go-plugin launches it. Its settings need a "bucket" and may have a
// "key_prefix"; a "mode" of "ignore-content-type" or "misreport-bucket"
// (Configure reports another bucket than the one Put goes to) breaks it on
// purpose.
type testProvider struct {
	*memstore.Store
	mu   sync.Mutex
	mode string
}

func newTestProvider() *testProvider {
	return &testProvider{Store: memstore.New("https://cdn.example.test")}
}

// Describe names the test provider.
func (p *testProvider) Describe(ctx context.Context) (storage.Info, error) {
	info, err := p.Store.Describe(ctx)
	info.ID, info.Name, info.Version = "test-memory", "Test memory provider", "0.0.1"
	return info, err
}

// ValidateSettings requires a bucket; other keys are accepted.
func (p *testProvider) ValidateSettings(_ context.Context, s storage.Settings) ([]storage.FieldError, error) {
	if b, ok := s["bucket"].(string); !ok || b == "" {
		return []storage.FieldError{{Field: "bucket", Message: "required"}}, nil
	}
	return []storage.FieldError{}, nil
}

// Configure records the mode and configures the store's bucket and key prefix.
func (p *testProvider) Configure(ctx context.Context, s storage.Settings) (storage.ConfigureResult, error) {
	if fields, _ := p.ValidateSettings(ctx, s); len(fields) > 0 {
		return storage.ConfigureResult{}, storage.SettingsError(fields)
	}
	mem := storage.Settings{"bucket": s["bucket"], "public_url": "https://cdn.example.test"}
	if prefix, ok := s["key_prefix"]; ok {
		mem["key_prefix"] = prefix
	}
	res, err := p.Store.Configure(ctx, mem)
	if err != nil {
		return res, err
	}
	p.mu.Lock()
	p.mode, _ = s["mode"].(string)
	if p.mode == "misreport-bucket" {
		res.Bucket = memstore.BucketID("elsewhere")
	}
	p.mu.Unlock()
	return res, nil
}

// Put drops the content type in ignore-content-type mode.
func (p *testProvider) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	p.mu.Lock()
	if p.mode == "ignore-content-type" {
		opts.ContentType = ""
	}
	p.mu.Unlock()
	return p.Store.Put(ctx, key, r, opts)
}
