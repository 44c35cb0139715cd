package main

import (
	"bytes"
	"context"
	"io"
	"sync"

	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/storage"
)

// testProvider is the reference memstore provider, served by the test binary
// when go-plugin launches it, with the one bucket "b" (another is missing,
// as the missing-bucket case needs). Its settings need a "bucket" and may have a
// "key_prefix"; a "mode" of "ignore-content-type" or "misreport-bucket"
// (Configure reports another bucket than the one Put goes to) breaks it on
// purpose. A "mode" of "skip-upload-checks" stores whatever its reader
// yields, checking neither the declared size nor the sha256 (as an author
// who relies on storage.Guard writes it); "stop-at-declared-size" reads
// exactly the declared size and stores it without reading to io.EOF;
// "makes-every-bucket" makes the bucket it is configured for, so no
// bucket is ever missing.
type testProvider struct {
	*memstore.Store
	mu   sync.Mutex
	mode string
}

func newTestProvider() *testProvider {
	return &testProvider{Store: memstore.NewWithBuckets("https://cdn.example.test", "b")}
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
	if s["mode"] == "makes-every-bucket" {
		p.Store.CreateBucket(s["bucket"].(string))
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

// Put drops the content type in ignore-content-type mode, and skips or
// defeats the upload checks in the modes that do.
func (p *testProvider) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	p.mu.Lock()
	mode := p.mode
	p.mu.Unlock()
	switch {
	case mode == "ignore-content-type":
		opts.ContentType = ""
	case mode == "skip-upload-checks":
		data, err := io.ReadAll(r)
		if err != nil {
			return storage.ObjectInfo{}, err
		}
		return p.Store.Put(ctx, key, bytes.NewReader(data), storage.PutOptions{ContentType: opts.ContentType, Size: -1})
	case mode == "stop-at-declared-size" && opts.Size >= 0:
		var buf bytes.Buffer
		if _, err := io.CopyN(&buf, r, opts.Size); err != nil {
			return storage.ObjectInfo{}, err
		}
		return p.Store.Put(ctx, key, &buf, storage.PutOptions{ContentType: opts.ContentType, Size: opts.Size})
	}
	return p.Store.Put(ctx, key, r, opts)
}
