package sdk

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/storage"
	"github.com/magicads/r2storage/shared/storagepb"
)

// seekSpy records whether Put's reader was the plugin-side file reader.
type seekSpy struct {
	storage.Provider
	seekable bool
}

func (s *seekSpy) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	_, s.seekable = r.(io.Seeker)
	return s.Provider.Put(ctx, key, r, opts)
}

func tempFile(t *testing.T, data []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "result.bin")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestLocalFilePutSendsThePathNotTheBytes(t *testing.T) {
	mem := memstore.New("")
	s := &seekSpy{Provider: mem}
	p := connect(t, s)
	data := make([]byte, 6<<20+7)
	rand.Read(data)
	f := tempFile(t, data)
	if _, err := f.Seek(100, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	info, err := p.Put(context.Background(), "images/a.png", f, storage.PutOptions{ContentType: "image/png", Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if !s.seekable {
		t.Fatal("the provider got a stream, not the local file: bytes crossed the plugin boundary")
	}
	if info.Size != int64(len(data)-100) {
		t.Fatalf("size %d, want %d", info.Size, len(data)-100)
	}
	rc, _, _ := mem.Get(context.Background(), "images/a.png", storage.GetOptions{Length: -1})
	got, _ := io.ReadAll(rc)
	if !bytes.Equal(got, data[100:]) {
		t.Fatal("stored content differs from the file range")
	}
	if off, _ := f.Seek(0, io.SeekCurrent); off != int64(len(data)) {
		t.Fatalf("file offset %d after put, want %d (as if read)", off, len(data))
	}
	// A declared digest is checked against the file.
	good := sha256.Sum256(data)
	f.Seek(0, io.SeekStart)
	if _, err := p.Put(context.Background(), "images/b.png", f, storage.PutOptions{Size: int64(len(data)), SHA256: good[:]}); err != nil {
		t.Fatalf("right digest: %v", err)
	}
	f.Seek(0, io.SeekStart)
	_, err = p.Put(context.Background(), "images/c.png", f, storage.PutOptions{Size: int64(len(data)), SHA256: make([]byte, 32)})
	if storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("wrong digest: %v", err)
	}
	if _, err := mem.Stat(context.Background(), "images/c.png"); !storage.IsNotFound(err) {
		t.Fatal("a file put with a wrong digest was written")
	}
}

func TestReplacedFileFallsBackToStreaming(t *testing.T) {
	mem := memstore.New("")
	s := &seekSpy{Provider: mem}
	p := connect(t, s)
	f := tempFile(t, []byte("original"))
	// The name now leads to another file: the plugin must not read it.
	if err := os.Rename(f.Name(), f.Name()+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Name(), []byte("impostor"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Put(context.Background(), "k", f, storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	if s.seekable {
		t.Fatal("the path was sent although it names another file")
	}
	rc, _, _ := mem.Get(context.Background(), "k", storage.GetOptions{Length: -1})
	got, _ := io.ReadAll(rc)
	if string(got) != "original" {
		t.Fatalf("stored %q, want the open file's content", got)
	}
}

func TestServerChecksLocalFileHeaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("0123456789"), 0o600)
	src := func(p string, off int64) *storagepb.PutRequest_Header {
		return &storagepb.PutRequest_Header{Header: &storagepb.PutHeader{Key: "k", Size: 5, Source: &storagepb.LocalFile{Path: p, Offset: off}}}
	}
	hdr := func(h *storagepb.PutRequest_Header, size int64) *storagepb.PutRequest {
		h.Header.Size = size
		return &storagepb.PutRequest{Msg: h}
	}
	cases := []struct {
		name string
		msgs []*storagepb.PutRequest
		code storage.ErrorCode
	}{
		{"missing file", []*storagepb.PutRequest{hdr(src(path+".nope", 0), 5), commit(5)}, storage.InvalidArgument},
		{"range past the end", []*storagepb.PutRequest{hdr(src(path, 8), 5), commit(5)}, storage.InvalidArgument},
		{"unknown size", []*storagepb.PutRequest{hdr(src(path, 0), -1), commit(10)}, storage.InvalidArgument},
		{"a directory", []*storagepb.PutRequest{hdr(src(filepath.Dir(path), 0), 1), commit(1)}, storage.InvalidArgument},
		{"chunks after a file header", []*storagepb.PutRequest{hdr(src(path, 0), 5), chunk("abcde"), commit(5)}, storage.InvalidArgument},
		{"commit of another size", []*storagepb.PutRequest{hdr(src(path, 0), 5), commit(4)}, storage.InvalidArgument},
		{"no commit", []*storagepb.PutRequest{hdr(src(path, 0), 5)}, storage.Canceled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := memstore.New("")
			err := rawPut(t, mem, c.msgs...)
			if storage.Code(err) != c.code {
				t.Fatalf("got %v (code %v), want %v", err, storage.Code(err), c.code)
			}
			if keys := mem.Keys(); len(keys) != 0 {
				t.Fatalf("refused header left %v", keys)
			}
		})
	}
}

func TestExactReaderRefusesAShrunkFile(t *testing.T) {
	// Past smallFile the range is streamed from the file.
	path := filepath.Join(t.TempDir(), "f")
	size := int64(smallFile + 10)
	os.WriteFile(path, bytes.Repeat([]byte("x"), int(size)), 0o600)
	r, closeFile, err := openSource(&storagepb.LocalFile{Path: path}, size, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFile()
	os.Truncate(path, 4)
	if _, err := io.ReadAll(r); err == nil || storage.Code(err) != storage.Unavailable {
		t.Fatalf("reading a file that shrank: %v, want an error, not a short object", err)
	}
}

// TestSmallLocalFileIsReadOnce: a range of at most smallFile bytes is
// read and checked when opened, so a change to the file afterwards cannot
// reach the object, and a wrong sha256 is refused before anything is read
// by the provider.
func TestSmallLocalFileIsReadOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	data := []byte("0123456789")
	os.WriteFile(path, data, 0o600)
	sum := sha256.Sum256(data)
	r, release, err := openSource(&storagepb.LocalFile{Path: path}, 10, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte("abcdefghij"), 0o600)
	got, err := io.ReadAll(r)
	release()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %q, %v; want the bytes checked when opened", got, err)
	}
	if _, _, err := openSource(&storagepb.LocalFile{Path: path}, 10, sum[:]); storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("a range whose sha256 differs: %v, want InvalidArgument", err)
	}
	os.Truncate(path, 4)
	if _, _, err := openSource(&storagepb.LocalFile{Path: path}, 10, nil); storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("a range past the end: %v, want InvalidArgument", err)
	}
}
