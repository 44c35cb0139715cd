package sdk

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/storage"
	"github.com/magicads/r2storage/shared/storagepb"
)

// connect serves p over a real gRPC connection with go-plugin's default
// server options (4 MiB receive limit) and returns the host-side client.
func connect(t testing.TB, p storage.Provider) storage.Provider {
	t.Helper()
	client, server := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{PluginName: &GRPCPlugin{Impl: p}})
	t.Cleanup(func() { server.Stop(); client.Close() }) // this order: Close would stop the server from a handler while Stop runs
	raw, err := client.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(storage.Provider)
}

// spy wraps a provider and records how Put's reader ended.
type spy struct {
	storage.Provider
	mu      sync.Mutex
	readErr error
	reads   int
	started chan struct{}
}

func (s *spy) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	info, err := s.Provider.Put(ctx, key, &spyReader{s: s, r: r}, opts)
	return info, err
}

type spyReader struct {
	s *spy
	r io.Reader
}

func (sr *spyReader) Read(p []byte) (int, error) {
	n, err := sr.r.Read(p)
	sr.s.mu.Lock()
	defer sr.s.mu.Unlock()
	sr.s.reads++
	if sr.s.reads == 1 && sr.s.started != nil {
		close(sr.s.started)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		sr.s.readErr = err
	}
	return n, err
}

func TestLargeObjectsCrossInChunks(t *testing.T) {
	mem := memstore.New("")
	p := connect(t, mem)
	ctx := context.Background()
	data := make([]byte, 9<<20+1) // over gRPC's 4 MiB default on both sides
	rand.Read(data)
	info, err := p.Put(ctx, "big/object.bin", bytes.NewReader(data), storage.PutOptions{ContentType: "video/mp4", Size: int64(len(data))})
	if err != nil {
		t.Fatalf("put 9 MiB + 1: %v", err)
	}
	if info.Size != int64(len(data)) || info.Key != "big/object.bin" {
		t.Fatalf("put info = %+v", info)
	}
	rc, ginfo, err := p.Get(ctx, "big/object.bin", storage.GetOptions{Length: -1})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get returned %d bytes (err %v), want the %d put", len(got), err, len(data))
	}
	if ginfo.ContentType != "video/mp4" || ginfo.Size != int64(len(data)) {
		t.Fatalf("get info = %+v", ginfo)
	}
}

func TestDeclaredDigestIsChecked(t *testing.T) {
	mem := memstore.New("")
	p := connect(t, mem)
	good := sha256.Sum256([]byte("content"))
	if _, err := p.Put(context.Background(), "ok.txt", strings.NewReader("content"), storage.PutOptions{Size: 7, SHA256: good[:]}); err != nil {
		t.Fatalf("put with the right digest: %v", err)
	}
	bad := sha256.Sum256([]byte("other"))
	_, err := p.Put(context.Background(), "bad.txt", strings.NewReader("content"), storage.PutOptions{Size: 7, SHA256: bad[:]})
	if storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("put with a wrong digest: %v", err)
	}
	if _, err := mem.Stat(context.Background(), "bad.txt"); !storage.IsNotFound(err) {
		t.Fatalf("a put with a wrong digest was written: %v", err)
	}
}

func TestUnknownSizePut(t *testing.T) {
	p := connect(t, memstore.New(""))
	r := io.MultiReader(strings.NewReader("hello "), strings.NewReader("world"))
	info, err := p.Put(context.Background(), "a.txt", r, storage.PutOptions{Size: -1})
	if err != nil || info.Size != 11 {
		t.Fatalf("put of unknown size: %+v, %v", info, err)
	}
}

// blockingReader yields n bytes, then blocks until ctx is done.
type blockingReader struct {
	ctx context.Context
	n   int
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if b.n == 0 {
		<-b.ctx.Done()
		return 0, b.ctx.Err()
	}
	k := min(len(p), b.n)
	b.n -= k
	return k, nil
}

func TestCancelledPutWritesNothing(t *testing.T) {
	mem := memstore.New("")
	s := &spy{Provider: mem, started: make(chan struct{})}
	p := connect(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-s.started
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	_, err := p.Put(ctx, "cancelled.bin", &blockingReader{ctx: ctx, n: 3 << 20}, storage.PutOptions{Size: 10 << 20})
	if storage.Code(err) != storage.Canceled {
		t.Fatalf("cancelled put returned %v (code %v), want Canceled", err, storage.Code(err))
	}
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.readErr != nil })
	if keys := mem.Keys(); len(keys) != 0 {
		t.Fatalf("a cancelled put left %v behind", keys)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if storage.Code(s.readErr) != storage.Canceled {
		t.Fatalf("the provider's reader ended with %v, want a Canceled error", s.readErr)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("disk read error")
	}
	k := min(len(p), f.n)
	f.n -= k
	return k, nil
}

func TestFailedReaderWritesNothing(t *testing.T) {
	mem := memstore.New("")
	p := connect(t, mem)
	_, err := p.Put(context.Background(), "broken.bin", &failingReader{n: 2 << 20}, storage.PutOptions{Size: -1})
	if err == nil || !strings.Contains(err.Error(), "disk read error") {
		t.Fatalf("put with a failing reader returned %v", err)
	}
	waitFor(t, func() bool { return len(mem.Keys()) == 0 })
}

func TestShortContentWritesNothing(t *testing.T) {
	mem := memstore.New("")
	p := connect(t, mem)
	_, err := p.Put(context.Background(), "short.bin", strings.NewReader("abc"), storage.PutOptions{Size: 10})
	if storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("short content: %v, want InvalidArgument", err)
	}
	if keys := mem.Keys(); len(keys) != 0 {
		t.Fatalf("short put left %v", keys)
	}
}

// rawPut drives the wire protocol by hand, as a misbehaving host would.
func rawPut(t *testing.T, p storage.Provider, msgs ...*storagepb.PutRequest) error {
	t.Helper()
	client, server := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{PluginName: &GRPCPlugin{Impl: p}})
	t.Cleanup(func() { server.Stop(); client.Close() }) // this order: Close would stop the server from a handler while Stop runs
	stream, err := storagepb.NewStorageProviderClient(client.Conn).Put(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break
		}
	}
	_, err = stream.CloseAndRecv()
	return fromStatus(context.Background(), "put", err)
}

func header(key string, size int64, sum ...byte) *storagepb.PutRequest {
	return &storagepb.PutRequest{Msg: &storagepb.PutRequest_Header{Header: &storagepb.PutHeader{Key: key, Size: size, Sha256: sum}}}
}

func chunk(b string) *storagepb.PutRequest {
	return &storagepb.PutRequest{Msg: &storagepb.PutRequest_Chunk{Chunk: []byte(b)}}
}

func commit(size int64) *storagepb.PutRequest {
	return &storagepb.PutRequest{Msg: &storagepb.PutRequest_Commit{Commit: &storagepb.PutCommit{Size: size}}}
}

func TestServerChecksTheStream(t *testing.T) {
	cases := []struct {
		name string
		msgs []*storagepb.PutRequest
		code storage.ErrorCode
	}{
		{"no commit", []*storagepb.PutRequest{header("k", -1), chunk("abc")}, storage.Canceled},
		{"chunk first", []*storagepb.PutRequest{chunk("abc")}, storage.InvalidArgument},
		{"bad key", []*storagepb.PutRequest{header("../etc/passwd", -1), commit(0)}, storage.InvalidArgument},
		{"commit size wrong", []*storagepb.PutRequest{header("k", -1), chunk("abc"), commit(4)}, storage.InvalidArgument},
		{"more than declared", []*storagepb.PutRequest{header("k", 2), chunk("abc"), commit(3)}, storage.InvalidArgument},
		{"sha256 wrong", []*storagepb.PutRequest{header("k", 3, make([]byte, 32)...), chunk("abc"), commit(3)}, storage.InvalidArgument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := memstore.New("")
			err := rawPut(t, mem, c.msgs...)
			if storage.Code(err) != c.code {
				t.Fatalf("got %v (code %v), want code %v", err, storage.Code(err), c.code)
			}
			if keys := mem.Keys(); len(keys) != 0 {
				t.Fatalf("refused stream left %v", keys)
			}
		})
	}
}

// erring returns a fixed error from every call.
type erring struct {
	memstore.Store
	err error
}

func (e *erring) Stat(context.Context, string) (storage.ObjectInfo, error) {
	return storage.ObjectInfo{}, e.err
}

func (e *erring) Configure(context.Context, storage.Settings) (storage.ConfigureResult, error) {
	return storage.ConfigureResult{}, e.err
}

func TestErrorsKeepTheirCode(t *testing.T) {
	for _, code := range []storage.ErrorCode{storage.NotFound, storage.InvalidArgument, storage.PermissionDenied, storage.Unavailable, storage.FailedPrecondition, storage.Unknown} {
		p := connect(t, &erring{err: fmtWrap(&storage.Error{Code: code, Message: "boom " + code.String()})})
		_, err := p.Stat(context.Background(), "k")
		if storage.Code(err) != code || !strings.Contains(err.Error(), "boom "+code.String()) {
			t.Errorf("code %v came back as %v: %v", code, storage.Code(err), err)
		}
		if storage.IsRetryable(err) != (code == storage.Unavailable) {
			t.Errorf("code %v: IsRetryable = %v", code, storage.IsRetryable(err))
		}
	}
	fields := []storage.FieldError{{Field: "bucket", Message: "must be lowercase"}, {Field: "endpoint", Message: "must be a URL"}}
	p := connect(t, &erring{err: storage.SettingsError(fields)})
	_, err := p.Configure(context.Background(), storage.Settings{"bucket": "X"})
	if storage.Code(err) != storage.InvalidSettings {
		t.Fatalf("settings error came back as %v", err)
	}
	got := storage.FieldsOf(err)
	if len(got) != 2 || got[0] != fields[0] || got[1] != fields[1] {
		t.Fatalf("fields = %v, want %v", got, fields)
	}
	if strings.Count(err.Error(), "must be lowercase") != 1 {
		t.Fatalf("field message repeated or lost: %q", err.Error())
	}
	// A plain error is Unknown: permanent, never retried.
	p = connect(t, &erring{err: errors.New("plain")})
	if _, err := p.Stat(context.Background(), "k"); storage.Code(err) != storage.Unknown {
		t.Fatalf("plain error: code %v", storage.Code(err))
	}
}

func fmtWrap(err error) error { return errors.Join(errors.New("context"), err) }

func TestClientRefusesBadKeysBeforeSending(t *testing.T) {
	mem := memstore.New("")
	p := connect(t, mem)
	for _, key := range []string{"", "/a", "a/../b", "a\x00b", strings.Repeat("k", 1025)} {
		if _, err := p.Put(context.Background(), key, strings.NewReader("x"), storage.PutOptions{Size: 1}); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("put %q: %v", key, err)
		}
		if _, err := p.Stat(context.Background(), key); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("stat %q: %v", key, err)
		}
	}
}
