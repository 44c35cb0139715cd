// Package memstore is an in-memory storage.Provider: the reference
// implementation of the contract. It passes the conformance suite, serves
// tests that need a provider without a network, and is the in-process
// baseline plugin overhead is measured against.
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

type object struct {
	data        []byte
	contentType string
	etag        string
	modTime     time.Time
}

// Store is an in-memory storage provider. The zero value is not usable; call New.
type Store struct {
	mu         sync.RWMutex
	objects    map[string]object
	configured bool
	publicURL  string
}

var (
	_ storage.Provider      = (*Store)(nil)
	_ storage.UploadAborter = (*Store)(nil)
)

// New returns an empty, configured store whose objects are served from
// publicBaseURL ("" for none).
func New(publicBaseURL string) *Store {
	return &Store{objects: map[string]object{}, configured: true, publicURL: strings.TrimRight(publicBaseURL, "/")}
}

// Describe names the store.
func (s *Store) Describe(context.Context) (storage.Info, error) {
	return storage.Info{ID: ID, Name: "In-memory storage", Version: "1.0.0",
		Capabilities: storage.Capabilities{PublicURLs: s.publicURL != "", RangeReads: true, AbortUploads: true}}, nil
}

// ValidateSettings accepts {"public_url": "http(s)://…"} and nothing else.
func (s *Store) ValidateSettings(_ context.Context, m storage.Settings) ([]storage.FieldError, error) {
	var fe []storage.FieldError
	for k, v := range m {
		if k != "public_url" {
			fe = append(fe, storage.FieldError{Field: k, Message: "is not a known setting"})
			continue
		}
		str, ok := v.(string)
		if u, err := url.Parse(str); !ok || (str != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https"))) {
			fe = append(fe, storage.FieldError{Field: k, Message: "must be an http(s) URL"})
		}
	}
	return fe, nil
}

// Configure applies settings validated by ValidateSettings.
func (s *Store) Configure(ctx context.Context, m storage.Settings) (storage.ConfigureResult, error) {
	fe, _ := s.ValidateSettings(ctx, m)
	if len(fe) > 0 {
		return storage.ConfigureResult{}, storage.SettingsError(fe)
	}
	u, _ := m["public_url"].(string)
	s.mu.Lock()
	s.publicURL = strings.TrimRight(u, "/")
	s.configured = true
	s.mu.Unlock()
	return storage.ConfigureResult{PublicBaseURL: s.publicURL}, nil
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

// Put reads r completely, then stores the object: a failed read stores nothing.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	if err := storage.ValidateKey(key); err != nil {
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
	s.objects[key] = o
	s.mu.Unlock()
	return s.info(key, o), nil
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

func (s *Store) info(key string, o object) storage.ObjectInfo {
	i := storage.ObjectInfo{Key: key, Size: int64(len(o.data)), ContentType: o.contentType, ETag: o.etag, ModTime: o.modTime}
	if s.publicURL != "" {
		i.URL = s.publicURL + "/" + (&url.URL{Path: key}).EscapedPath()
	}
	return i
}

func (s *Store) lookup(key string) (object, error) {
	if err := storage.ValidateKey(key); err != nil {
		return object{}, err
	}
	s.mu.RLock()
	o, ok := s.objects[key]
	s.mu.RUnlock()
	if !ok {
		return object{}, storage.Errorf(storage.NotFound, "object %s not found", key)
	}
	return o, nil
}

// Get returns the object's bytes, or the range opts selects.
func (s *Store) Get(_ context.Context, key string, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	o, err := s.lookup(key)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	size := int64(len(o.data))
	if opts.Offset < 0 || opts.Offset > size {
		return nil, storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "get %s: offset %d outside 0..%d", key, opts.Offset, size)
	}
	end := size
	if opts.Length >= 0 && opts.Offset+opts.Length < size {
		end = opts.Offset + opts.Length
	}
	return io.NopCloser(bytes.NewReader(o.data[opts.Offset:end])), s.info(key, o), nil
}

// Stat returns the object's attributes.
func (s *Store) Stat(_ context.Context, key string) (storage.ObjectInfo, error) {
	o, err := s.lookup(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return s.info(key, o), nil
}

// Delete removes the object; a missing object is not an error.
func (s *Store) Delete(_ context.Context, key string) error {
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.objects, key)
	s.mu.Unlock()
	return nil
}

// AbortUploads checks the keys and returns 0: a memstore put is whole or
// nothing in memory, so no incomplete upload ever exists. It shows the
// shape of the optional storage.UploadAborter.
func (s *Store) AbortUploads(_ context.Context, keys []string) (int, error) {
	if err := storage.ValidateAbortKeys(keys); err != nil {
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

// Keys returns the stored keys, for tests.
func (s *Store) Keys() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys := make([]string, 0, len(s.objects))
	for k := range s.objects {
		keys = append(keys, k)
	}
	return keys
}
