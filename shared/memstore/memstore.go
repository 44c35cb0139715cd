// Package memstore is an in-memory storage.Provider: the reference
// implementation of the contract. It passes the conformance suite, serves
// tests that need a provider without a network, and is the in-process
// baseline plugin overhead is measured against.
//
// It keeps one set of objects per bucket name and stores each key under
// its key prefix, as a bucket-backed provider does, so tests can change
// the bucket or the prefix between calls (storage.Locator). A store made
// by New has every bucket (one named for the first time starts empty); a
// store made by NewWithBuckets has only the buckets it was given, and
// answers the calls on any other as the contract says for a bucket that
// does not exist.
package memstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/magicads/r2storage/shared/storage"
)

// ID is the provider id memstore describes itself with.
const ID = "memory"

// DefaultBucket is the bucket name a store uses when its settings name none.
const DefaultBucket = "default"

// BucketID is the bucket identity memstore reports for the bucket name
// (ConfigureResult.Bucket, ObjectInfo.Bucket): "memory:<name>".
func BucketID(name string) string { return ID + ":" + name }

type object struct {
	data        []byte
	contentType string
	etag        string
	modTime     time.Time
}

// Store is an in-memory storage provider. The zero value is not usable; call New.
type Store struct {
	mu         sync.RWMutex
	buckets    map[string]map[string]object // bucket name -> stored key -> object
	configured bool
	cfg        config
	// fixed: Configure does not make the bucket it names (NewWithBuckets).
	fixed bool
}

// config is one applied configuration.
type config struct {
	publicURL string // without a trailing slash; "" for none
	bucket    string // the bucket name
	prefix    string // ConfigureResult.KeyPrefix: "" or "<key_prefix>/"
}

// bucketID is the identity of the configured bucket.
func (c config) bucketID() string { return BucketID(c.bucket) }

var (
	_ storage.Provider      = (*Store)(nil)
	_ storage.UploadAborter = (*Store)(nil)
	_ storage.Locator       = (*Store)(nil)
)

// New returns an empty, configured store whose objects are served from
// publicBaseURL ("" for none), in bucket DefaultBucket with no key prefix.
func New(publicBaseURL string) *Store {
	return &Store{
		buckets:    map[string]map[string]object{DefaultBucket: {}},
		configured: true,
		cfg:        config{publicURL: strings.TrimRight(publicBaseURL, "/"), bucket: DefaultBucket},
	}
}

// NewWithBuckets returns a store as New does, whose buckets are
// DefaultBucket and the named ones (CreateBucket adds one). Configuring
// another bucket name succeeds, but every call on its objects then fails
// with FailedPrecondition naming the bucket, and TestConnection reports
// it, as the contract says for a bucket that does not exist.
func NewWithBuckets(publicBaseURL string, buckets ...string) *Store {
	s := New(publicBaseURL)
	s.fixed = true
	for _, b := range buckets {
		s.bucket(b)
	}
	return s
}

// CreateBucket makes the named bucket, empty, if the store does not have
// it yet.
func (s *Store) CreateBucket(name string) {
	s.mu.Lock()
	s.bucket(name)
	s.mu.Unlock()
}

// bucket returns the objects of the named bucket, making the bucket when
// it is new; the caller holds s.mu for writing.
func (s *Store) bucket(name string) map[string]object {
	if s.buckets == nil {
		s.buckets = map[string]map[string]object{}
	}
	if s.buckets[name] == nil {
		s.buckets[name] = map[string]object{}
	}
	return s.buckets[name]
}

// current returns the applied configuration and its bucket's objects,
// or, when that bucket does not exist, a FailedPrecondition error naming
// it (op names the call); the caller holds s.mu.
func (s *Store) current(op string) (config, map[string]object, error) {
	c := s.cfg
	objects, ok := s.buckets[c.bucket]
	if !ok {
		return c, nil, missingBucket(op, c.bucket)
	}
	return c, objects, nil
}

// missingBucket is the error of op in the named bucket, which does not
// exist.
func missingBucket(op, bucket string) error {
	return storage.Errorf(storage.FailedPrecondition, "%s: bucket %s does not exist in the memory store; create it or configure an existing bucket", op, bucket)
}

// Describe names the store.
func (s *Store) Describe(context.Context) (storage.Info, error) {
	s.mu.RLock()
	public := s.cfg.publicURL != ""
	s.mu.RUnlock()
	return storage.Info{ID: ID, Name: "In-memory storage", Version: "1.0.0",
		Capabilities: storage.Capabilities{PublicURLs: public, RangeReads: true, AbortUploads: true, Locations: true}}, nil
}

// ValidateSettings accepts "public_url" (an http(s) URL or ""), "bucket"
// (a bucket name: non-empty, no "/" or control characters; DefaultBucket
// when absent) and "key_prefix" (a folder path such as "media/prod", or
// ""), and nothing else.
func (s *Store) ValidateSettings(_ context.Context, m storage.Settings) ([]storage.FieldError, error) {
	_, fe := parseSettings(m)
	return fe, nil
}

// parseSettings checks settings and returns the configuration they give.
func parseSettings(m storage.Settings) (config, []storage.FieldError) {
	c := config{bucket: DefaultBucket}
	var fe []storage.FieldError
	for k, v := range m {
		str, isString := v.(string)
		switch k {
		case "public_url":
			if u, err := url.Parse(str); !isString || (str != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https"))) {
				fe = append(fe, storage.FieldError{Field: k, Message: "must be an http(s) URL"})
				continue
			}
			c.publicURL = strings.TrimRight(str, "/")
		case "bucket":
			if !isString || str == "" || strings.Contains(str, "/") || storage.ValidateKey(str) != nil {
				fe = append(fe, storage.FieldError{Field: k, Message: "must be a bucket name such as media: not empty, without / or control characters"})
				continue
			}
			c.bucket = str
		case "key_prefix":
			p := strings.Trim(str, "/")
			if !isString || (p != "" && storage.ValidateKey(p) != nil) {
				fe = append(fe, storage.FieldError{Field: k, Message: "must be a folder path such as media or media/prod (no .., //, or control characters)"})
				continue
			}
			if p != "" {
				c.prefix = p + "/"
			}
		default:
			fe = append(fe, storage.FieldError{Field: k, Message: "is not a known setting"})
		}
	}
	return c, fe
}

// Configure applies settings validated by ValidateSettings. A bucket
// named for the first time starts empty (in a store made by
// NewWithBuckets, it does not exist, and the calls on its objects fail);
// the objects of the previous bucket stay, out of reach until it is
// configured again.
func (s *Store) Configure(_ context.Context, m storage.Settings) (storage.ConfigureResult, error) {
	c, fe := parseSettings(m)
	if len(fe) > 0 {
		return storage.ConfigureResult{}, storage.SettingsError(fe)
	}
	s.mu.Lock()
	s.cfg = c
	if !s.fixed {
		s.bucket(c.bucket)
	}
	s.configured = true
	s.mu.Unlock()
	return storage.ConfigureResult{PublicBaseURL: c.publicURL, Bucket: c.bucketID(), KeyPrefix: c.prefix}, nil
}

// TestConnection writes, reads back and deletes a probe object.
func (s *Store) TestConnection(ctx context.Context) (storage.TestResult, error) {
	key := fmt.Sprintf(".probe/%d", time.Now().UnixNano())
	res := storage.TestResult{ProbeKey: key, Step: storage.StepUpload}
	if _, err := s.Put(ctx, key, strings.NewReader("probe"), storage.PutOptions{Size: 5}); err != nil {
		res.Message = "Connection failed: " + err.Error()
		return res, nil
	}
	defer s.Delete(context.WithoutCancel(ctx), key)
	res.Step = storage.StepRead
	if _, err := s.Stat(ctx, key); err != nil {
		res.Message = "Upload succeeded but the object could not be read back"
		return res, nil
	}
	res.Step, res.OK, res.Message = storage.StepDelete, true, "Connection successful"
	return res, nil
}

// storedKey returns the key under the prefix of c, refusing a bad key or
// one too long with the prefix.
func (c config) storedKey(key string) (string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", err
	}
	full := c.prefix + key
	if len(full) > storage.MaxKeyBytes {
		return "", storage.Errorf(storage.InvalidArgument, "invalid key: with the key prefix it is %d bytes, over the %d-byte limit", len(full), storage.MaxKeyBytes)
	}
	return full, nil
}

// Put reads r completely, then stores the object in the bucket configured
// when Put started, under its key prefix: a failed read stores nothing.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	s.mu.RLock()
	c := s.cfg
	s.mu.RUnlock()
	stored, err := c.storedKey(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	var buf bytes.Buffer
	if opts.Size > 0 {
		buf.Grow(int(min(opts.Size, 64<<20)))
	}
	if _, err := io.Copy(&buf, ctxReader{ctx, r}); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("put %s: reading the content: %w", key, err)
	}
	// A cancel during the last read must not commit.
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, &storage.Error{Code: storage.Canceled, Message: fmt.Sprintf("put %s: %v", key, err), Err: err}
	}
	if opts.SHA256 != nil {
		if sum := sha256.Sum256(buf.Bytes()); !bytes.Equal(sum[:], opts.SHA256) {
			return storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "put %s: content does not match the declared sha256", key)
		}
	}
	if opts.Size >= 0 && int64(buf.Len()) != opts.Size {
		return storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "put %s: got %d bytes, %d declared", key, buf.Len(), opts.Size)
	}
	ct := opts.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	sum := md5.Sum(buf.Bytes())
	o := object{data: buf.Bytes(), contentType: ct, etag: hex.EncodeToString(sum[:]), modTime: time.Now().UTC()}
	s.mu.Lock()
	objects, ok := s.buckets[c.bucket]
	if ok {
		objects[stored] = o
	}
	s.mu.Unlock()
	if !ok {
		return storage.ObjectInfo{}, missingBucket("put "+key, c.bucket)
	}
	return c.info(key, stored, o), nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, &storage.Error{Code: storage.Canceled, Message: err.Error(), Err: err}
	}
	return c.r.Read(p)
}

// info describes the object stored at stored under c, asked for as key.
func (c config) info(key, stored string, o object) storage.ObjectInfo {
	return storage.ObjectInfo{
		Key: key, Size: int64(len(o.data)), ContentType: o.contentType, ETag: o.etag, ModTime: o.modTime,
		URL: storage.PublicURL(c.publicURL, stored), StoredKey: stored, Bucket: c.bucketID(),
	}
}

// callerKey is the key Get would take for the stored key: without the
// current prefix when it has it.
func (c config) callerKey(stored string) string {
	if k, ok := strings.CutPrefix(stored, c.prefix); ok && k != "" {
		return k
	}
	return stored
}

// lookup returns the object at key under the current prefix and bucket,
// with the configuration it was found under and its stored key.
func (s *Store) lookup(op, key string) (object, config, string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, objects, err := s.current(op + " " + key)
	if err != nil {
		return object{}, c, "", err
	}
	stored, err := c.storedKey(key)
	if err != nil {
		return object{}, c, "", err
	}
	o, ok := objects[stored]
	if !ok {
		return object{}, c, stored, storage.Errorf(storage.NotFound, "%s: object %s not found in bucket %s", op, stored, c.bucketID())
	}
	return o, c, stored, nil
}

// Get returns the object's bytes, or the range opts selects.
func (s *Store) Get(_ context.Context, key string, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	o, c, stored, err := s.lookup("get", key)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return rangeOf(o, c.info(key, stored, o), opts)
}

// rangeOf returns a reader of the part of o that opts selects.
func rangeOf(o object, info storage.ObjectInfo, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	size := int64(len(o.data))
	if opts.Offset < 0 || opts.Offset > size {
		return nil, storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "get %s: offset %d outside 0..%d", info.Key, opts.Offset, size)
	}
	end := size
	if opts.Length >= 0 && opts.Offset+opts.Length < size {
		end = opts.Offset + opts.Length
	}
	return io.NopCloser(bytes.NewReader(o.data[opts.Offset:end])), info, nil
}

// Stat returns the object's attributes.
func (s *Store) Stat(_ context.Context, key string) (storage.ObjectInfo, error) {
	o, c, stored, err := s.lookup("stat", key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return c.info(key, stored, o), nil
}

// Delete removes the object; a missing object is not an error.
func (s *Store) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, objects, err := s.current("delete " + key)
	if err != nil {
		return err
	}
	stored, err := c.storedKey(key)
	if err != nil {
		return err
	}
	delete(objects, stored)
	return nil
}

// checkLocation refuses a bad Location (InvalidArgument) and one in a
// bucket other than the configured one (FailedPrecondition, naming both).
func checkLocation(op string, c config, loc storage.Location) error {
	if err := storage.ValidateLocation(loc); err != nil {
		return err
	}
	if loc.Bucket != c.bucketID() {
		return storage.Errorf(storage.FailedPrecondition, "%s %s: the object is in bucket %s, but the store is configured for bucket %s; nothing was done (configure bucket %s to reach it)",
			op, loc.Key, loc.Bucket, c.bucketID(), loc.Bucket)
	}
	return nil
}

// locate returns the object at loc in the configured bucket.
func (s *Store) locate(op string, loc storage.Location) (object, storage.ObjectInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.cfg
	if err := checkLocation(op, c, loc); err != nil {
		return object{}, storage.ObjectInfo{}, err
	}
	_, objects, err := s.current(op + " " + loc.Key)
	if err != nil {
		return object{}, storage.ObjectInfo{}, err
	}
	o, ok := objects[loc.Key]
	if !ok {
		return object{}, storage.ObjectInfo{}, storage.Errorf(storage.NotFound, "%s: object %s not found in bucket %s", op, loc.Key, loc.Bucket)
	}
	return o, c.info(c.callerKey(loc.Key), loc.Key, o), nil
}

// GetAt returns the bytes of the object stored at loc.Key (no prefix
// added), or the range opts selects. A Location in another bucket gives
// FailedPrecondition.
func (s *Store) GetAt(_ context.Context, loc storage.Location, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	o, info, err := s.locate("get", loc)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return rangeOf(o, info, opts)
}

// StatAt returns the attributes of the object stored at loc.Key. A
// Location in another bucket gives FailedPrecondition.
func (s *Store) StatAt(_ context.Context, loc storage.Location) (storage.ObjectInfo, error) {
	_, info, err := s.locate("stat", loc)
	return info, err
}

// DeleteAt removes the object stored at loc.Key; a missing object is not
// an error. A Location in another bucket gives FailedPrecondition and
// nothing is deleted.
func (s *Store) DeleteAt(_ context.Context, loc storage.Location) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := checkLocation("delete", s.cfg, loc); err != nil {
		return err
	}
	_, objects, err := s.current("delete " + loc.Key)
	if err != nil {
		return err
	}
	delete(objects, loc.Key)
	return nil
}

// AbortUploads checks the keys and returns 0: a memstore put is whole or
// nothing in memory, so no incomplete upload ever exists. It shows the
// shape of the optional storage.UploadAborter. A bucket that does not
// exist gives FailedPrecondition.
func (s *Store) AbortUploads(_ context.Context, keys []string) (int, error) {
	if err := storage.ValidateAbortKeys(keys); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, _, err := s.current("abort uploads"); err != nil {
		return 0, err
	}
	return 0, nil
}

// Health is always OK.
func (s *Store) Health(context.Context) (storage.Health, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return storage.Health{OK: true, Configured: s.configured, Message: "in memory"}, nil
}

// Keys returns the stored keys (key prefix included) of the configured
// bucket, for tests.
func (s *Store) Keys() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, objects, _ := s.current("keys")
	keys := make([]string, 0, len(objects))
	for k := range objects {
		keys = append(keys, k)
	}
	return keys
}
