// Package localstore is a storage.Provider over a directory: the host's local
// results disk.
//
// An object is a plain file at root/<key>, so the host can serve it straight
// from disk (Path, Open). Put writes a temporary file in the target's folder,
// fsyncs it and renames it over the target, so a failed or cancelled Put
// leaves nothing behind and a reader never sees a partial file. The content
// type and SHA-256 of each object live in a small sidecar file under
// root/.magicads-meta/; a sidecar that does not describe the file next to it
// (same size and modification time) is ignored and the content type falls
// back to the one the file extension implies.
//
// Keys follow storage.ValidateKey. Segments starting with ".magicads-" are
// reserved for the store's own files and refused.
package localstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/magicads/r2storage/shared/storage"
)

// ID is the storage id of the local results disk, as recorded in the results
// table's storage column.
const ID = "local"

const (
	// reservedPrefix starts every name the store uses for itself.
	reservedPrefix = ".magicads-"
	// metaDir is the root folder of the sidecar metadata files.
	metaDir = reservedPrefix + "meta"
	// tmpPattern names temporary files (os.CreateTemp pattern).
	tmpPattern = reservedPrefix + "tmp-*"
	// defaultContentType is reported when nothing better is known.
	defaultContentType = "application/octet-stream"
	// keyLocks is the number of striped locks that order the two renames of
	// concurrent puts to one key.
	keyLocks = 64
)

// Store is a storage.Provider over a directory. Create it with New.
type Store struct {
	root  string
	locks [keyLocks]sync.Mutex
}

var _ storage.Provider = (*Store)(nil)

// New returns a store over the directory root, creating it if needed.
func New(root string) (*Store, error) {
	if root == "" {
		return nil, errors.New("localstore: empty root directory")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("localstore: resolving %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("localstore: creating %s: %w", abs, err)
	}
	return &Store{root: filepath.Clean(abs)}, nil
}

// Root returns the absolute directory the store keeps its objects in.
func (s *Store) Root() string { return s.root }

// meta is the sidecar record of one object.
type meta struct {
	ContentType string `json:"content_type"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	ModTimeNS   int64  `json:"mod_time_ns"`
}

// resolve validates key and returns the object's path and its sidecar's path.
func (s *Store) resolve(key string) (string, string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", "", err
	}
	for _, seg := range strings.Split(key, "/") {
		if strings.HasPrefix(seg, reservedPrefix) {
			return "", "", storage.Errorf(storage.InvalidArgument, "invalid key %q: segments starting with %q are reserved", key, reservedPrefix)
		}
	}
	p, err := s.within(filepath.FromSlash(key))
	if err != nil {
		return "", "", err
	}
	m, err := s.within(filepath.Join(metaDir, filepath.FromSlash(key)+".json"))
	if err != nil {
		return "", "", err
	}
	return p, m, nil
}

// within joins rel to the root and checks the cleaned result stays strictly
// inside it.
func (s *Store) within(rel string) (string, error) {
	p := filepath.Join(s.root, rel)
	r, err := filepath.Rel(s.root, p)
	if err != nil || r == "." || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) || filepath.IsAbs(r) || filepath.VolumeName(r) != "" {
		return "", storage.Errorf(storage.InvalidArgument, "invalid key: %q leads outside the store", filepath.ToSlash(rel))
	}
	return p, nil
}

// lock returns the striped lock of key.
func (s *Store) lock(key string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(key))
	return &s.locks[h.Sum32()%keyLocks]
}

// Describe names the store.
func (s *Store) Describe(context.Context) (storage.Info, error) {
	return storage.Info{ID: ID, Name: "Local server (this machine)", Version: "1.0.0",
		Capabilities: storage.Capabilities{RangeReads: true}}, nil
}

// ValidateSettings accepts only empty settings: the store has none.
func (s *Store) ValidateSettings(_ context.Context, m storage.Settings) ([]storage.FieldError, error) {
	fe := []storage.FieldError{}
	for k := range m {
		fe = append(fe, storage.FieldError{Field: k, Message: "is not a known setting"})
	}
	return fe, nil
}

// Configure accepts only empty settings; there is no public base URL.
func (s *Store) Configure(ctx context.Context, m storage.Settings) (storage.ConfigureResult, error) {
	if fe, _ := s.ValidateSettings(ctx, m); len(fe) > 0 {
		return storage.ConfigureResult{}, storage.SettingsError(fe)
	}
	return storage.ConfigureResult{}, nil
}

// TestConnection writes, reads back and deletes a probe object.
func (s *Store) TestConnection(ctx context.Context) (storage.TestResult, error) {
	key := fmt.Sprintf(".probe/%d", time.Now().UnixNano())
	res := storage.TestResult{ProbeKey: key, Step: storage.StepUpload}
	const probe = "probe"
	if _, err := s.Put(ctx, key, strings.NewReader(probe), storage.PutOptions{ContentType: "text/plain", Size: int64(len(probe))}); err != nil {
		res.Message = "Connection failed: " + err.Error()
		return res, nil
	}
	res.Step = storage.StepRead
	rc, _, err := s.Get(ctx, key, storage.GetOptions{Length: -1})
	if err != nil {
		_ = s.Delete(context.WithoutCancel(ctx), key)
		res.Message = "Upload succeeded but the object could not be read back"
		return res, nil
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != probe {
		_ = s.Delete(context.WithoutCancel(ctx), key)
		res.Message = "The probe read back differs from what was written"
		return res, nil
	}
	res.Step = storage.StepDelete
	if err := s.Delete(ctx, key); err != nil {
		res.Message = "Deleting the probe failed: " + err.Error()
		return res, nil
	}
	res.OK, res.Message = true, "Connection successful"
	return res, nil
}

// Put writes the object at key atomically: whole, or nothing at all.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	info, _, err := s.Write(ctx, key, r, opts)
	return info, err
}

// Write is Put that also returns the SHA-256 of the content it wrote.
func (s *Store) Write(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, []byte, error) {
	p, mp, err := s.resolve(key)
	if err != nil {
		return storage.ObjectInfo{}, nil, err
	}
	if err := ctxErr(ctx, "put "+key); err != nil {
		return storage.ObjectInfo{}, nil, err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		if isNotDir(err) || errors.Is(err, fs.ErrExist) {
			return storage.ObjectInfo{}, nil, storage.Errorf(storage.FailedPrecondition, "put %s: a file has the name of one of its folders", key)
		}
		return storage.ObjectInfo{}, nil, fsError("put "+key, err)
	}
	tmp, err := os.CreateTemp(dir, tmpPattern)
	if err != nil {
		return storage.ObjectInfo{}, nil, fsError("put "+key, err)
	}
	tmpName := tmp.Name()
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	h := sha256.New()
	src := &ctxReader{ctx: ctx, r: r}
	var n int64
	if opts.Size >= 0 {
		// Read one byte past the declared size to catch a longer stream.
		n, err = io.Copy(io.MultiWriter(tmp, h), io.LimitReader(src, opts.Size+1))
	} else {
		n, err = io.Copy(io.MultiWriter(tmp, h), src)
	}
	if err != nil {
		if c := ctxErr(ctx, "put "+key); c != nil {
			return storage.ObjectInfo{}, nil, c
		}
		if storage.Code(err) != storage.Unknown {
			return storage.ObjectInfo{}, nil, fmt.Errorf("put %s: %w", key, err)
		}
		return storage.ObjectInfo{}, nil, &storage.Error{Code: storage.Unavailable, Message: fmt.Sprintf("put %s: after %d bytes: %v", key, n, err), Err: err}
	}
	if opts.Size >= 0 && n != opts.Size {
		return storage.ObjectInfo{}, nil, storage.Errorf(storage.InvalidArgument, "put %s: got %d bytes or more, %d declared", key, n, opts.Size)
	}
	sum := h.Sum(nil)
	if opts.SHA256 != nil && string(sum) != string(opts.SHA256) {
		return storage.ObjectInfo{}, nil, storage.Errorf(storage.InvalidArgument, "put %s: content does not match the declared sha256", key)
	}
	if err := tmp.Sync(); err != nil {
		return storage.ObjectInfo{}, nil, fsError("put "+key+": sync", err)
	}
	if err := tmp.Close(); err != nil {
		return storage.ObjectInfo{}, nil, fsError("put "+key+": close", err)
	}
	fi, err := os.Stat(tmpName)
	if err != nil {
		return storage.ObjectInfo{}, nil, fsError("put "+key, err)
	}
	// A cancel that arrived during the last read must not commit.
	if err := ctxErr(ctx, "put "+key); err != nil {
		return storage.ObjectInfo{}, nil, err
	}
	ct := opts.ContentType
	if ct == "" {
		ct = defaultContentType
	}
	m := meta{ContentType: ct, SHA256: hex.EncodeToString(sum), Size: n, ModTimeNS: fi.ModTime().UnixNano()}
	l := s.lock(key)
	l.Lock()
	defer l.Unlock()
	// The sidecar goes first: if the data rename below never happens, the
	// new sidecar does not match the old file and is ignored. When the key's
	// extension already implies the content type (every finalized result:
	// its extension comes from its type), no sidecar is needed, which saves
	// a file create and fsync per object; a stale one is removed.
	if mime.TypeByExtension(path.Ext(key)) == ct {
		if err := os.Remove(mp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return storage.ObjectInfo{}, nil, fsError("put "+key+": metadata", err)
		}
	} else if err := writeMeta(mp, m); err != nil {
		return storage.ObjectInfo{}, nil, fsError("put "+key+": metadata", err)
	}
	if err := os.Rename(tmpName, p); err != nil {
		if st, serr := os.Stat(p); serr == nil && st.IsDir() {
			return storage.ObjectInfo{}, nil, storage.Errorf(storage.FailedPrecondition, "put %s: a folder already has this name", key)
		}
		return storage.ObjectInfo{}, nil, fsError("put "+key, err)
	}
	committed = true
	syncDir(dir)
	return storage.ObjectInfo{Key: key, Size: n, ContentType: ct, ETag: m.SHA256, ModTime: fi.ModTime().UTC()}, sum, nil
}

// writeMeta writes the sidecar at mp atomically.
func writeMeta(mp string, m meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	dir := filepath.Dir(mp)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, tmpPattern)
	if err != nil {
		return err
	}
	name := f.Name()
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(name)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(name)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return err
	}
	if err := os.Rename(name, mp); err != nil {
		os.Remove(name)
		return err
	}
	return nil
}

// syncDir fsyncs a directory so a rename in it is durable; best effort (not
// every platform can open a directory for syncing).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// info builds the ObjectInfo of the regular file fi at key, using the
// sidecar at mp when it describes this very file.
func (s *Store) info(key, mp string, fi fs.FileInfo) storage.ObjectInfo {
	i := storage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime().UTC()}
	if b, err := os.ReadFile(mp); err == nil {
		var m meta
		if json.Unmarshal(b, &m) == nil && m.Size == fi.Size() && m.ModTimeNS == fi.ModTime().UnixNano() {
			i.ContentType, i.ETag = m.ContentType, m.SHA256
		}
	}
	if i.ContentType == "" {
		i.ContentType = mime.TypeByExtension(path.Ext(key))
		if i.ContentType == "" {
			i.ContentType = defaultContentType
		}
	}
	if i.ETag == "" {
		i.ETag = fmt.Sprintf("%x-%x", fi.Size(), fi.ModTime().UnixNano())
	}
	return i
}

// openRegular opens the regular file of key.
func (s *Store) openRegular(op, key string) (*os.File, fs.FileInfo, string, error) {
	p, mp, err := s.resolve(key)
	if err != nil {
		return nil, nil, "", err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, "", fsError(op+" "+key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, "", fsError(op+" "+key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, "", storage.Errorf(storage.NotFound, "%s %s: object not found", op, key)
	}
	return f, fi, mp, nil
}

// Get opens the object at key, or the range opts selects.
func (s *Store) Get(ctx context.Context, key string, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	if err := ctxErr(ctx, "get "+key); err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	f, fi, mp, err := s.openRegular("get", key)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	size := fi.Size()
	if opts.Offset < 0 || opts.Offset > size {
		f.Close()
		return nil, storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "get %s: offset %d outside 0..%d", key, opts.Offset, size)
	}
	n := size - opts.Offset
	if opts.Length >= 0 && opts.Length < n {
		n = opts.Length
	}
	return &sectionFile{SectionReader: io.NewSectionReader(f, opts.Offset, n), f: f}, s.info(key, mp, fi), nil
}

// sectionFile reads a section of a file and closes the file.
type sectionFile struct {
	*io.SectionReader
	f *os.File
}

// Close closes the underlying file.
func (s *sectionFile) Close() error { return s.f.Close() }

// Stat returns the attributes of the object at key.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	p, mp, err := s.resolve(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	if err := ctxErr(ctx, "stat "+key); err != nil {
		return storage.ObjectInfo{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return storage.ObjectInfo{}, fsError("stat "+key, err)
	}
	if !fi.Mode().IsRegular() {
		return storage.ObjectInfo{}, storage.Errorf(storage.NotFound, "stat %s: object not found", key)
	}
	return s.info(key, mp, fi), nil
}

// Delete removes the object at key and its sidecar; a missing object is not
// an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, mp, err := s.resolve(key)
	if err != nil {
		return err
	}
	if err := ctxErr(ctx, "delete "+key); err != nil {
		return err
	}
	l := s.lock(key)
	l.Lock()
	defer l.Unlock()
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		// A folder is not an object: nothing to delete at this key.
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fsError("delete "+key, err)
	}
	if err := os.Remove(mp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fsError("delete "+key+": metadata", err)
	}
	return nil
}

// Health reports whether the root is a writable-looking directory.
func (s *Store) Health(context.Context) (storage.Health, error) {
	fi, err := os.Stat(s.root)
	if err != nil {
		return storage.Health{Configured: true, Message: "results folder: " + err.Error()}, nil
	}
	if !fi.IsDir() {
		return storage.Health{Configured: true, Message: s.root + " is not a folder"}, nil
	}
	return storage.Health{OK: true, Configured: true, Message: "local disk at " + s.root}, nil
}

// Path returns the absolute path of the object at key, for serving it. The
// object must exist as a regular file.
func (s *Store) Path(key string) (string, error) {
	p, _, err := s.resolve(key)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fsError("path "+key, err)
	}
	if !fi.Mode().IsRegular() {
		return "", storage.Errorf(storage.NotFound, "path %s: object not found", key)
	}
	return p, nil
}

// Open opens the object at key for reading. The caller closes the file.
func (s *Store) Open(key string) (*os.File, error) {
	f, _, _, err := s.openRegular("open", key)
	return f, err
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// Read reads from the underlying reader unless the context is done.
func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, &storage.Error{Code: storage.Canceled, Message: err.Error(), Err: err}
	}
	return c.r.Read(p)
}

// ctxErr returns a Canceled error when ctx is done.
func ctxErr(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return &storage.Error{Code: storage.Canceled, Message: op + ": " + err.Error(), Err: err}
	}
	return nil
}

// fsError maps a filesystem error to a contract error.
func fsError(op string, err error) error {
	code := storage.Unavailable
	switch {
	case errors.Is(err, fs.ErrNotExist):
		code = storage.NotFound
	case errors.Is(err, fs.ErrPermission):
		code = storage.PermissionDenied
	case isNotDir(err):
		// A path segment is a file, so nothing can exist below it.
		code = storage.NotFound
	case errors.Is(err, syscall.ENAMETOOLONG):
		code = storage.InvalidArgument
	}
	msg := op + ": " + err.Error()
	if code == storage.NotFound {
		msg = op + ": object not found"
	}
	return &storage.Error{Code: code, Message: msg, Err: err}
}

// isNotDir reports whether err says a path segment is not a directory.
func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }
