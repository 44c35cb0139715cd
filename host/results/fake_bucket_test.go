package results

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/magicads/r2storage/shared/storage"
)

// bucketStore is an in-process provider over several buckets, with the
// settings an admin changes (bucket, key prefix, public base URL): Put
// stores key at prefix+key in the current bucket, as the R2 plugin does.
// With locations set it reports where objects went (ObjectInfo.Bucket and
// StoredKey, ConfigureResult.Bucket and KeyPrefix) and serves the
// storage.Locator calls; without, it behaves as a plugin built before them.
type bucketStore struct {
	mu      sync.Mutex
	buckets map[string]map[string][]byte
	bucket  string
	prefix  string
	base    string
	maxSize int64
	// locations is what Capabilities.Locations says.
	locations bool
	// putErr and deleteErr, when set, fail the calls (nil lets them run).
	putErr    func(key string) error
	deleteErr func(key string) error
	// puts and deletes count the calls, per relative key or location.
	puts    map[string]int
	deletes int
}

var (
	_ storage.Provider = (*bucketStore)(nil)
	_ storage.Locator  = (*bucketStore)(nil)
)

func newBucketStore(bucket, prefix, base string) *bucketStore {
	return &bucketStore{buckets: map[string]map[string][]byte{}, bucket: bucket, prefix: prefix, base: base, locations: true, puts: map[string]int{}}
}

// set changes the settings, as a save of the provider's settings would.
func (b *bucketStore) set(bucket, prefix, base string) {
	b.mu.Lock()
	b.bucket, b.prefix, b.base = bucket, prefix, base
	b.mu.Unlock()
}

func (b *bucketStore) setMax(n int64) {
	b.mu.Lock()
	b.maxSize = n
	b.mu.Unlock()
}

func (b *bucketStore) setPutErr(f func(string) error) {
	b.mu.Lock()
	b.putErr = f
	b.mu.Unlock()
}

func (b *bucketStore) setDeleteErr(f func(string) error) {
	b.mu.Lock()
	b.deleteErr = f
	b.mu.Unlock()
}

// placement is what the host's Router would say after the last Configure.
func (b *bucketStore) placement() (Placement, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := Placement{PublicBaseURL: b.base, MaxObjectSize: b.maxSize, Locations: b.locations}
	if b.locations {
		p.Bucket, p.KeyPrefix = b.bucket, b.prefix
	}
	return p, true
}

// has reports whether bucket holds the full key.
func (b *bucketStore) has(bucket, key string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.buckets[bucket][key]
	return ok
}

// keys lists a bucket's full keys.
func (b *bucketStore) keys(bucket string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for k := range b.buckets[bucket] {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (b *bucketStore) putCount(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.puts[key]
}

func (b *bucketStore) deleteCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.deletes
}

func (b *bucketStore) Describe(context.Context) (storage.Info, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return storage.Info{ID: remoteID, Name: "Buckets", Version: "1.0.0",
		Capabilities: storage.Capabilities{PublicURLs: b.base != "", MaxObjectSize: b.maxSize, Locations: b.locations}}, nil
}

func (b *bucketStore) ValidateSettings(context.Context, storage.Settings) ([]storage.FieldError, error) {
	return nil, nil
}

func (b *bucketStore) Configure(context.Context, storage.Settings) (storage.ConfigureResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := storage.ConfigureResult{PublicBaseURL: b.base}
	if b.locations {
		r.Bucket, r.KeyPrefix = b.bucket, b.prefix
	}
	return r, nil
}

func (b *bucketStore) TestConnection(context.Context) (storage.TestResult, error) {
	return storage.TestResult{OK: true, Step: storage.StepDelete}, nil
}

func (b *bucketStore) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	b.mu.Lock()
	b.puts[key]++
	fail := b.putErr
	b.mu.Unlock()
	if fail != nil {
		if err := fail(key); err != nil {
			return storage.ObjectInfo{}, err
		}
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return storage.ObjectInfo{}, storage.Errorf(storage.Unavailable, "reading: %v", err)
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, &storage.Error{Code: storage.Canceled, Message: err.Error(), Err: err}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.maxSize > 0 && int64(len(data)) > b.maxSize {
		return storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "put %s: %d bytes, over the limit of %d", key, len(data), b.maxSize)
	}
	full := b.prefix + key
	if b.buckets[b.bucket] == nil {
		b.buckets[b.bucket] = map[string][]byte{}
	}
	b.buckets[b.bucket][full] = data
	info := storage.ObjectInfo{Key: key, Size: int64(len(data)), ContentType: opts.ContentType, ModTime: time.Now(), URL: storage.PublicURL(b.base, full)}
	if b.locations {
		info.StoredKey, info.Bucket = full, b.bucket
	}
	return info, nil
}

// at returns the object at (bucket, full key); b.mu is held.
func (b *bucketStore) at(bucket, full string) ([]byte, error) {
	data, ok := b.buckets[bucket][full]
	if !ok {
		return nil, storage.Errorf(storage.NotFound, "%s: no object %s", bucket, full)
	}
	return data, nil
}

// reach refuses a location outside the current bucket; b.mu is held.
func (b *bucketStore) reach(loc storage.Location) error {
	if !b.locations {
		return storage.Errorf(storage.Unimplemented, "the plugin predates locations")
	}
	if loc.Bucket != b.bucket {
		return storage.Errorf(storage.FailedPrecondition, "the object is in bucket %s; the provider is configured for %s", loc.Bucket, b.bucket)
	}
	return nil
}

func (b *bucketStore) Get(_ context.Context, key string, _ storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	data, err := b.at(b.bucket, b.prefix+key)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return io.NopCloser(bytes.NewReader(data)), storage.ObjectInfo{Key: key, Size: int64(len(data))}, nil
}

func (b *bucketStore) Stat(_ context.Context, key string) (storage.ObjectInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	data, err := b.at(b.bucket, b.prefix+key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return storage.ObjectInfo{Key: key, Size: int64(len(data))}, nil
}

func (b *bucketStore) Delete(_ context.Context, key string) error {
	b.mu.Lock()
	b.deletes++
	fail := b.deleteErr
	b.mu.Unlock()
	if fail != nil {
		if err := fail(key); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.buckets[b.bucket], b.prefix+key)
	return nil
}

func (b *bucketStore) Health(context.Context) (storage.Health, error) {
	return storage.Health{OK: true, Configured: true}, nil
}

func (b *bucketStore) GetAt(_ context.Context, loc storage.Location, _ storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.reach(loc); err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	data, err := b.at(loc.Bucket, loc.Key)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return io.NopCloser(bytes.NewReader(data)), storage.ObjectInfo{StoredKey: loc.Key, Bucket: loc.Bucket, Size: int64(len(data))}, nil
}

func (b *bucketStore) StatAt(_ context.Context, loc storage.Location) (storage.ObjectInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.reach(loc); err != nil {
		return storage.ObjectInfo{}, err
	}
	data, err := b.at(loc.Bucket, loc.Key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return storage.ObjectInfo{StoredKey: loc.Key, Bucket: loc.Bucket, Size: int64(len(data))}, nil
}

func (b *bucketStore) DeleteAt(_ context.Context, loc storage.Location) error {
	b.mu.Lock()
	b.deletes++
	fail := b.deleteErr
	b.mu.Unlock()
	if fail != nil {
		if err := fail(loc.Key); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.reach(loc); err != nil {
		return err
	}
	delete(b.buckets[loc.Bucket], loc.Key)
	return nil
}

// oldPlugin is a provider reached through a plugin built before Locator:
// only storage.Provider's methods.
type oldPlugin struct{ storage.Provider }

// placement forwards to the wrapped store (what the host learns from its
// Configure and Describe).
func (o oldPlugin) placement() (Placement, bool) {
	if p, ok := o.Provider.(interface{ placement() (Placement, bool) }); ok {
		return p.placement()
	}
	return Placement{}, false
}

// errPlain is an error without a contract code.
var errPlain = errors.New("something odd happened")
