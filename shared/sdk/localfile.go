package sdk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/magicads/r2storage/shared/storage"
	"github.com/magicads/r2storage/shared/storagepb"
)

// localSource describes r as a local file range the plugin can read itself,
// or returns nil when r is not a regular *os.File whose path still names it.
// The plugin is a child process on the same machine, so it shares the
// host's filesystem; sending the path instead of the bytes saves the copy,
// encryption and decryption of every byte across the plugin boundary.
func localSource(r io.Reader, size int64) (*storagepb.LocalFile, int64) {
	f, ok := r.(*os.File)
	if !ok {
		return nil, 0
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil, 0
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, 0
	}
	if size < 0 {
		size = fi.Size() - off
	}
	if off+size > fi.Size() {
		return nil, 0
	}
	path, err := filepath.Abs(f.Name())
	if err != nil {
		return nil, 0
	}
	// The name must still lead to this very file (not renamed or replaced).
	if byName, err := os.Stat(path); err != nil || !os.SameFile(fi, byName) {
		return nil, 0
	}
	return &storagepb.LocalFile{Path: path, Offset: off}, size
}

// smallFile is the largest local file range openSource reads into memory
// once (hashing it there), instead of reading the file twice.
const smallFile = 1 << 20

// smallBufs holds the buffers of small local file ranges between puts.
var smallBufs = sync.Pool{New: func() any { return new([]byte) }}

// openSource opens a local file range for a provider's Put: a seekable
// reader of exactly size bytes, failing (never a short EOF) if the file
// holds fewer. With want set, the range is hashed first and refused on a
// mismatch, before anything is written. A range of at most smallFile
// bytes is read once into a buffer, hashed there, and served from it;
// release returns the buffer and closes the file.
func openSource(src *storagepb.LocalFile, size int64, want []byte) (*exactReader, func(), error) {
	if size < 0 {
		return nil, nil, &storage.Error{Code: storage.InvalidArgument, Message: "put: a local-file put must declare its size"}
	}
	f, err := os.Open(src.GetPath())
	if err != nil {
		return nil, nil, &storage.Error{Code: storage.InvalidArgument, Message: "put: opening the local file: " + err.Error(), Err: err}
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || src.GetOffset() < 0 || src.GetOffset()+size > fi.Size() {
		f.Close()
		return nil, nil, &storage.Error{Code: storage.InvalidArgument, Message: fmt.Sprintf("put: %s is not a regular file holding bytes %d..%d", src.GetPath(), src.GetOffset(), src.GetOffset()+size)}
	}
	mismatch := &storage.Error{Code: storage.InvalidArgument, Message: "put: the sha256 of the local file does not match the one declared; nothing was written"}
	if size <= smallFile {
		defer f.Close()
		bp := smallBufs.Get().(*[]byte)
		if int64(cap(*bp)) < size {
			*bp = make([]byte, size)
		}
		buf := (*bp)[:size]
		release := func() { smallBufs.Put(bp) }
		if n, err := f.ReadAt(buf, src.GetOffset()); int64(n) < size {
			release()
			return nil, nil, &storage.Error{Code: storage.Unavailable, Message: fmt.Sprintf("put: the local file ended after %d of %d bytes", n, size), Err: err}
		}
		if len(want) > 0 {
			if sum := sha256.Sum256(buf); string(sum[:]) != string(want) {
				release()
				return nil, nil, mismatch
			}
		}
		return &exactReader{sec: io.NewSectionReader(bytes.NewReader(buf), 0, size), size: size}, release, nil
	}
	sec := io.NewSectionReader(f, src.GetOffset(), size)
	if len(want) > 0 {
		h := sha256.New()
		if _, err := io.Copy(h, sec); err != nil {
			f.Close()
			return nil, nil, &storage.Error{Code: storage.Unavailable, Message: "put: reading the local file: " + err.Error(), Err: err}
		}
		if string(h.Sum(nil)) != string(want) {
			f.Close()
			return nil, nil, mismatch
		}
		if _, err := sec.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	return &exactReader{sec: sec, size: size}, func() { f.Close() }, nil
}

// exactReader is a seekable reader of exactly size bytes: if the file
// shrinks under it, Read fails instead of ending early, so a truncated file
// never becomes a complete-looking object.
type exactReader struct {
	sec  *io.SectionReader
	size int64
	pos  int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	n, err := e.sec.Read(p)
	e.pos += int64(n)
	if errors.Is(err, io.EOF) && e.pos < e.size {
		return n, &storage.Error{Code: storage.Unavailable, Message: fmt.Sprintf("put: the local file ended after %d of %d bytes", e.pos, e.size)}
	}
	return n, err
}

func (e *exactReader) Seek(offset int64, whence int) (int64, error) {
	pos, err := e.sec.Seek(offset, whence)
	if err == nil {
		e.pos = pos
	}
	return pos, err
}

// supportsLocalFiles reports whether the plugin's SDK accepts local-file
// puts, from its kept Describe answer (asking once if there is none yet).
// When Describe fails the put streams its bytes, and a later put asks again.
func (c *rpcClient) supportsLocalFiles(ctx context.Context) bool {
	f, err := c.pluginFeatures(ctx)
	return err == nil && f.localFiles
}
