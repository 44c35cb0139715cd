package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/magicads/r2storage/shared/storage"
)

// bug is a deliberate defect a memProvider can be built with, to show that
// the suite catches it.
type bug string

const (
	bugIgnoreContentType   bug = "ignores-content-type"
	bugNoDefaultType       bug = "no-default-content-type"
	bugIgnoreCancel        bug = "keeps-cancelled-put"
	bugCancelPlainError    bug = "cancel-gives-plain-error"
	bugPlainNotFound       bug = "plain-not-found-error"
	bugNoKeyValidation     bug = "no-key-validation"
	bugPanicOnEmptyKey     bug = "panics-on-empty-key"
	bugKeepOnReaderError   bug = "keeps-put-on-reader-error"
	bugIgnoreDeclaredSize  bug = "ignores-declared-size"
	bugDeleteMissingFails  bug = "delete-missing-fails"
	bugUnescapeKeys        bug = "url-unescapes-keys"
	bugIgnoreRange         bug = "ignores-range"
	bugRangeSizeIsLength   bug = "range-size-is-length"
	bugRawURL              bug = "unescaped-url"
	bugProbeLeftBehind     bug = "probe-left-behind"
	bugCorruptLarge        bug = "corrupts-large-objects"
	bugDropConcurrent      bug = "drops-concurrent-puts"
	bugNotConfigured       bug = "health-not-configured"
	bugEmptyVersion        bug = "empty-version"
	bugKeepFirstWrite      bug = "ignores-overwrite"
	bugPrefixedInfoKey     bug = "info-key-has-prefix"
	bugNoCapabilities      bug = "no-capabilities" // not a bug: no ranges, no URLs
	bugPublicURLsButNoURL  bug = "public-urls-but-no-url"
	bugEmptyUnknownSizeErr bug = "empty-unknown-size-fails"
	bugDeleteBeforePut     bug = "deletes-old-before-put"
	bugIgnoreSHA256        bug = "ignores-sha256"
	bugAbortDeletes        bug = "abort-uploads-deletes-objects"
	bugAbortNoKeyCheck     bug = "abort-uploads-accepts-bad-keys"
	bugAbortCountsKeys     bug = "abort-uploads-counts-keys"
	bugNoStoredKey         bug = "no-stored-key"
	bugNoBucket            bug = "no-bucket"
	bugStoredKeyNoPrefix   bug = "stored-key-without-prefix"
	bugURLIgnoresPrefix    bug = "url-without-prefix"
	bugAtIgnoresBucket     bug = "at-ignores-bucket"
	bugAtAddsPrefix        bug = "at-adds-prefix"
	bugDeleteAtMissingFail bug = "delete-at-missing-fails"
	bugLocationsUndeclared bug = "locations-undeclared"
	bugWrongBucketSilent   bug = "wrong-bucket-message-names-one"
	// bugStopsAtSize reads exactly the declared size and commits without
	// reading Put's reader to io.EOF, so storage.Guard never gets to say
	// the content was longer or had another sha256.
	bugStopsAtSize bug = "stops-reading-at-declared-size"
	bugEmptyETag   bug = "empty-etag"
	bugFixedETag   bug = "etag-ignores-content"
	// bugPutETagDiffers reports from Put another tag than Stat and Get
	// give for the same version.
	bugPutETagDiffers bug = "put-etag-differs"
	// bugEndIsUnknown fails a Get at Offset == size with an error
	// without a code instead of answering an empty read. (Refusing it
	// with InvalidArgument, as S3's 416, is mended by storage.Guard.)
	bugEndIsUnknown bug = "offset-at-size-fails"
	// bugPastEndIsEmpty answers a Get at an Offset past the object's size
	// with an empty read instead of InvalidArgument. (Doing so only for
	// Length 0 is mended by storage.Guard.)
	bugPastEndIsEmpty bug = "past-end-reads-empty"
	// featPrefix is not a bug: keys are stored under a prefix that counts
	// toward the 1024-byte limit, as the contract allows.
	featPrefix bug = "stores-under-a-prefix"
)

// memPrefix is the prefix featPrefix stores keys under.
const memPrefix = "tenants/acme-corporation/media-library/"

// memBucket is the bucket identity a memProvider reports.
const memBucket = "memory-test:conformance"

// memObject is a stored object.
type memObject struct {
	data        []byte
	contentType string
	modTime     time.Time
	etag        string
}

// memProvider is a correct in-memory storage.Provider, unless built with bugs.
type memProvider struct {
	bugs    map[bug]bool
	baseURL string

	mu       sync.Mutex
	objects  map[string]memObject
	written  []string // every key a put stored, in order
	probes   int
	inflight atomic.Int32
}

var (
	_ storage.Provider      = (*memProvider)(nil)
	_ storage.UploadAborter = (*memProvider)(nil)
	_ storage.Locator       = (*memProvider)(nil)
)

// newMemProvider returns a configured in-memory provider with the given bugs.
func newMemProvider(bugs ...bug) *memProvider {
	m := &memProvider{bugs: map[bug]bool{}, baseURL: "https://cdn.example.test/media", objects: map[string]memObject{}}
	for _, b := range bugs {
		m.bugs[b] = true
	}
	return m
}

// has reports whether the provider was built with bug b.
func (m *memProvider) has(b bug) bool { return m.bugs[b] }

// keys returns the keys currently stored.
func (m *memProvider) keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ks []string
	for k := range m.objects {
		ks = append(ks, k)
	}
	return ks
}

// writtenKeys returns every key a put ever stored.
func (m *memProvider) writtenKeys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.written...)
}

// Describe returns the provider identity and capabilities.
func (m *memProvider) Describe(context.Context) (storage.Info, error) {
	info := storage.Info{
		ID: "memory", Name: "In-memory reference provider", Version: "1.0.0",
		Capabilities: storage.Capabilities{PublicURLs: true, RangeReads: true, AbortUploads: true, Locations: true},
	}
	if m.has(bugNoCapabilities) {
		info.Capabilities = storage.Capabilities{}
	}
	if m.has(bugLocationsUndeclared) {
		info.Capabilities.Locations = false
	}
	if m.has(bugEmptyVersion) {
		info.Version = ""
	}
	return info, nil
}

// ValidateSettings checks settings without applying them.
func (m *memProvider) ValidateSettings(context.Context, storage.Settings) ([]storage.FieldError, error) {
	return nil, nil
}

// Configure applies settings.
func (m *memProvider) Configure(context.Context, storage.Settings) (storage.ConfigureResult, error) {
	res := storage.ConfigureResult{PublicBaseURL: m.baseURL, Bucket: memBucket}
	if m.prefixed() {
		res.KeyPrefix = memPrefix
	}
	return res, nil
}

// prefixed reports whether keys are stored under memPrefix.
func (m *memProvider) prefixed() bool {
	return m.has(featPrefix) || m.has(bugStoredKeyNoPrefix) || m.has(bugURLIgnoresPrefix) || m.has(bugAtAddsPrefix)
}

// TestConnection puts, reads back and deletes a probe object.
func (m *memProvider) TestConnection(ctx context.Context) (storage.TestResult, error) {
	m.mu.Lock()
	m.probes++
	key := fmt.Sprintf(".magicads-probe/%d", m.probes)
	m.mu.Unlock()
	payload := []byte("probe " + key)
	res := storage.TestResult{ProbeKey: key}
	if _, err := m.Put(ctx, key, bytes.NewReader(payload), storage.PutOptions{ContentType: "text/plain", Size: int64(len(payload))}); err != nil {
		res.Step, res.Message = storage.StepUpload, err.Error()
		return res, nil
	}
	rc, _, err := m.Get(ctx, key, storage.GetOptions{Length: -1})
	if err != nil {
		res.Step, res.Message = storage.StepRead, err.Error()
		return res, nil
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, payload) {
		res.Step, res.Message = storage.StepRead, "the probe read back differs"
		return res, nil
	}
	if !m.has(bugProbeLeftBehind) {
		if err := m.Delete(ctx, key); err != nil {
			res.Step, res.Message = storage.StepDelete, err.Error()
			return res, nil
		}
	}
	res.OK, res.Step, res.Message = true, storage.StepDelete, "ok"
	return res, nil
}

// storeKey maps a caller key to where it is stored.
func (m *memProvider) storeKey(key string) string {
	if m.prefixed() {
		key = memPrefix + key
	}
	if m.has(bugUnescapeKeys) {
		if k, err := url.PathUnescape(key); err == nil {
			return k
		}
	}
	return key
}

// checkKey validates a caller key.
func (m *memProvider) checkKey(key string) error {
	if m.has(bugNoKeyValidation) {
		return nil
	}
	if key == "" && m.has(bugPanicOnEmptyKey) {
		panic("empty key")
	}
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	if m.prefixed() && len(memPrefix)+len(key) > storage.MaxKeyBytes {
		return storage.Errorf(storage.InvalidArgument, "key %q is too long with the prefix %q", key, memPrefix)
	}
	return nil
}

// notFound returns the error for a missing key.
func (m *memProvider) notFound(key string) error {
	if m.has(bugPlainNotFound) {
		return errors.New("no such object: " + key)
	}
	return storage.Errorf(storage.NotFound, "object %q not found", key)
}

// info describes a stored object.
func (m *memProvider) info(key string, o memObject) storage.ObjectInfo {
	stored := m.storeKey(key)
	info := storage.ObjectInfo{
		Key: key, Size: int64(len(o.data)), ContentType: o.contentType, ETag: o.etag, ModTime: o.modTime,
		StoredKey: stored, Bucket: memBucket,
	}
	if m.has(bugPrefixedInfoKey) {
		info.Key = "tenant/" + key
	}
	if m.has(bugNoStoredKey) {
		info.StoredKey = ""
	}
	if m.has(bugStoredKeyNoPrefix) {
		info.StoredKey = key
	}
	if m.has(bugNoBucket) {
		info.Bucket = ""
	}
	if !m.has(bugNoCapabilities) && !m.has(bugPublicURLsButNoURL) {
		switch {
		case m.has(bugRawURL):
			info.URL = m.baseURL + "/" + key
		case m.has(bugURLIgnoresPrefix):
			info.URL = storage.PublicURL(m.baseURL, key)
		default:
			info.URL = storage.PublicURL(m.baseURL, stored)
		}
	}
	return info
}

// Put stores the object only when the whole content arrived.
func (m *memProvider) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	if err := m.checkKey(key); err != nil {
		return storage.ObjectInfo{}, err
	}
	if m.has(bugDeleteBeforePut) {
		m.mu.Lock()
		delete(m.objects, m.storeKey(key))
		m.mu.Unlock()
	}
	concurrent := m.inflight.Add(1) > 1
	defer m.inflight.Add(-1)
	canceled := func() error {
		if m.has(bugCancelPlainError) {
			return errors.New("put stopped")
		}
		return storage.Errorf(storage.Canceled, "put %q: %w", key, ctx.Err())
	}
	var buf bytes.Buffer
	chunk := make([]byte, 64*1024)
	var readErr error
	if m.has(bugStopsAtSize) && opts.Size >= 0 {
		if _, err := io.CopyN(&buf, r, opts.Size); err != nil {
			return storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "put %q: reading the content: %w", key, err)
		}
	}
	for !(m.has(bugStopsAtSize) && opts.Size >= 0) {
		if ctx.Err() != nil && !m.has(bugIgnoreCancel) {
			return storage.ObjectInfo{}, canceled()
		}
		n, err := r.Read(chunk)
		buf.Write(chunk[:n])
		if opts.Size >= 0 && int64(buf.Len()) > opts.Size && !m.has(bugIgnoreDeclaredSize) {
			return storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "put %q: more than the declared %d bytes", key, opts.Size)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
	}
	if readErr != nil && !m.has(bugKeepOnReaderError) {
		return storage.ObjectInfo{}, storage.Errorf(storage.Unknown, "put %q: reading the content: %w", key, readErr)
	}
	if ctx.Err() != nil && !m.has(bugIgnoreCancel) {
		return storage.ObjectInfo{}, canceled()
	}
	if opts.Size >= 0 && int64(buf.Len()) != opts.Size && !m.has(bugIgnoreDeclaredSize) {
		return storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "put %q: %d bytes read, %d declared", key, buf.Len(), opts.Size)
	}
	if len(opts.SHA256) > 0 && !m.has(bugIgnoreSHA256) {
		if got := sha256.Sum256(buf.Bytes()); !bytes.Equal(got[:], opts.SHA256) {
			return storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "put %q: sha256 mismatch", key)
		}
	}
	if buf.Len() == 0 && opts.Size < 0 && m.has(bugEmptyUnknownSizeErr) {
		return storage.ObjectInfo{}, storage.Errorf(storage.Unknown, "put %q: multipart upload with no parts", key)
	}
	ct := opts.ContentType
	if ct == "" && !m.has(bugNoDefaultType) {
		ct = "application/octet-stream"
	}
	if m.has(bugIgnoreContentType) {
		ct = "application/octet-stream"
	}
	data := buf.Bytes()
	if m.has(bugCorruptLarge) && len(data) > 4*mib {
		data[len(data)/2] ^= 1
	}
	s := sha256.Sum256(data)
	o := memObject{data: data, contentType: ct, modTime: time.Now().UTC(), etag: hex.EncodeToString(s[:16])}
	switch {
	case m.has(bugEmptyETag):
		o.etag = ""
	case m.has(bugFixedETag):
		o.etag = "v1"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	sk := m.storeKey(key)
	_, exists := m.objects[sk]
	switch {
	case concurrent && m.has(bugDropConcurrent):
	case exists && m.has(bugKeepFirstWrite):
		o = m.objects[sk]
	default:
		m.objects[sk] = o
		m.written = append(m.written, sk)
	}
	if readErr != nil {
		return storage.ObjectInfo{}, storage.Errorf(storage.Unknown, "put %q: reading the content: %w", key, readErr)
	}
	info := m.info(key, o)
	if m.has(bugPutETagDiffers) {
		info.ETag = "upload-" + info.ETag
	}
	return info, nil
}

// lookup returns the stored object at key.
func (m *memProvider) lookup(key string) (memObject, error) {
	if err := m.checkKey(key); err != nil {
		return memObject{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[m.storeKey(key)]
	if !ok {
		return memObject{}, m.notFound(key)
	}
	return o, nil
}

// Get returns the object, or the requested range of it.
func (m *memProvider) Get(ctx context.Context, key string, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	o, err := m.lookup(key)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return m.read(key, o, m.info(key, o), opts)
}

// read returns the part of o that opts selects.
func (m *memProvider) read(key string, o memObject, info storage.ObjectInfo, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	size := int64(len(o.data))
	start, end := int64(0), size
	if !m.has(bugNoCapabilities) && !m.has(bugIgnoreRange) {
		if m.has(bugEndIsUnknown) && opts.Offset == size && size > 0 {
			return nil, storage.ObjectInfo{}, fmt.Errorf("get %q: range not satisfiable", key)
		}
		if m.has(bugPastEndIsEmpty) && opts.Offset > size {
			return io.NopCloser(bytes.NewReader(nil)), info, nil
		}
		if opts.Offset < 0 || opts.Offset > size {
			return nil, storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "get %q: offset %d outside the object's %d bytes", key, opts.Offset, size)
		}
		start = opts.Offset
		if opts.Length >= 0 && start+opts.Length < end {
			end = start + opts.Length
		}
	}
	if m.has(bugRangeSizeIsLength) {
		info.Size = end - start
	}
	return io.NopCloser(bytes.NewReader(o.data[start:end])), info, nil
}

// Stat returns the object attributes.
func (m *memProvider) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	o, err := m.lookup(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return m.info(key, o), nil
}

// Delete removes the object; a missing key is not an error.
func (m *memProvider) Delete(ctx context.Context, key string) error {
	if err := m.checkKey(key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	sk := m.storeKey(key)
	if _, ok := m.objects[sk]; !ok && m.has(bugDeleteMissingFails) {
		return m.notFound(key)
	}
	delete(m.objects, sk)
	return nil
}

// Health reports whether the provider is configured.
func (m *memProvider) Health(context.Context) (storage.Health, error) {
	if m.has(bugNotConfigured) {
		return storage.Health{OK: false, Configured: false, Message: "not configured"}, nil
	}
	return storage.Health{OK: true, Configured: true, Message: "ok"}, nil
}

// located returns the object at loc, as the Locator calls find it.
func (m *memProvider) located(op string, loc storage.Location) (memObject, string, error) {
	if m.has(bugNoCapabilities) {
		return memObject{}, "", storage.Errorf(storage.Unimplemented, "%s at: not supported", op)
	}
	if err := storage.ValidateLocation(loc); err != nil {
		return memObject{}, "", err
	}
	if loc.Bucket != memBucket && !m.has(bugAtIgnoresBucket) {
		if m.has(bugWrongBucketSilent) {
			return memObject{}, "", storage.Errorf(storage.FailedPrecondition, "%s at: wrong bucket", op)
		}
		return memObject{}, "", storage.Errorf(storage.FailedPrecondition, "%s at: the object is in bucket %s, configured for %s", op, loc.Bucket, memBucket)
	}
	stored := loc.Key
	if m.has(bugAtAddsPrefix) {
		stored = memPrefix + stored
	}
	key := loc.Key
	if m.prefixed() {
		if k, ok := strings.CutPrefix(loc.Key, memPrefix); ok {
			key = k
		}
	}
	if op == "delete" {
		return memObject{}, stored, nil
	}
	m.mu.Lock()
	o, ok := m.objects[stored]
	m.mu.Unlock()
	if !ok {
		return memObject{}, key, m.notFound(loc.Key)
	}
	return o, key, nil
}

// GetAt returns the object at loc, or a range of it.
func (m *memProvider) GetAt(ctx context.Context, loc storage.Location, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	o, key, err := m.located("get", loc)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return m.read(key, o, m.info(key, o), opts)
}

// StatAt returns the attributes of the object at loc.
func (m *memProvider) StatAt(ctx context.Context, loc storage.Location) (storage.ObjectInfo, error) {
	o, key, err := m.located("stat", loc)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return m.info(key, o), nil
}

// DeleteAt removes the object at loc; a missing object is not an error.
func (m *memProvider) DeleteAt(ctx context.Context, loc storage.Location) error {
	_, stored, err := m.located("delete", loc)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objects[stored]; !ok && m.has(bugDeleteAtMissingFail) {
		return m.notFound(loc.Key)
	}
	delete(m.objects, stored)
	return nil
}

// AbortUploads has nothing to abort: puts are whole or nothing in memory.
func (m *memProvider) AbortUploads(ctx context.Context, keys []string) (int, error) {
	if !m.has(bugAbortNoKeyCheck) {
		if err := storage.ValidateAbortKeys(keys); err != nil {
			return 0, err
		}
		for _, k := range keys {
			if err := m.checkKey(k); err != nil {
				return 0, err
			}
		}
	}
	if m.has(bugAbortDeletes) {
		m.mu.Lock()
		for _, k := range keys {
			delete(m.objects, m.storeKey(k))
		}
		m.mu.Unlock()
	}
	if m.has(bugAbortCountsKeys) {
		return len(keys), nil
	}
	return 0, nil
}
