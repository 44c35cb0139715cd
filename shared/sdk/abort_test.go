package sdk

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/storage"
	"github.com/magicads/r2storage/shared/storagepb"
)

// aborter is a provider with AbortUploads: it records the keys it was given
// and answers with n and err.
type aborter struct {
	storage.Provider
	mu    sync.Mutex
	calls [][]string
	n     int
	err   error
}

func (a *aborter) AbortUploads(_ context.Context, keys []string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, slices.Clone(keys))
	return a.n, a.err
}

func (a *aborter) recorded() [][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

// plain hides every method but storage.Provider's: a provider without AbortUploads.
type plain struct{ storage.Provider }

// flakyDescribe fails its first Describe with Unavailable.
type flakyDescribe struct {
	*aborter
	mu    sync.Mutex
	calls int
}

func (f *flakyDescribe) Describe(ctx context.Context) (storage.Info, error) {
	f.mu.Lock()
	f.calls++
	first := f.calls == 1
	f.mu.Unlock()
	if first {
		return storage.Info{}, &storage.Error{Code: storage.Unavailable, Message: "describe: not ready"}
	}
	return f.aborter.Describe(ctx)
}

// rpcLog records the gRPC methods a server was called with.
type rpcLog struct {
	mu      sync.Mutex
	methods []string
}

func (l *rpcLog) count(method string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.methods {
		if strings.HasSuffix(m, "/"+method) {
			n++
		}
	}
	return n
}

// optionalMethods are the optional calls of the service.
var optionalMethods = []string{"AbortUploads", "GetAt", "StatAt", "DeleteAt", "List", "ListUploads"}

// legacyServiceDesc is the service as a plugin built with the SDK before
// the optional calls knows it: the methods do not exist, so gRPC itself
// answers codes.Unimplemented ("unknown method").
func legacyServiceDesc() *grpc.ServiceDesc {
	d := storagepb.StorageProvider_ServiceDesc
	d.Methods = slices.DeleteFunc(slices.Clone(d.Methods), func(m grpc.MethodDesc) bool { return slices.Contains(optionalMethods, m.MethodName) })
	d.Streams = slices.DeleteFunc(slices.Clone(d.Streams), func(s grpc.StreamDesc) bool { return slices.Contains(optionalMethods, s.StreamName) })
	return &d
}

func (l *rpcLog) add(method string) {
	l.mu.Lock()
	l.methods = append(l.methods, method)
	l.mu.Unlock()
}

// serveOver serves impl on an in-memory gRPC connection, with the service
// as desc declares it, and returns the host-side client and a log of the
// methods the server received (known or not, unary or streaming).
func serveOver(t *testing.T, impl storage.Provider, desc *grpc.ServiceDesc) (*rpcClient, *rpcLog) {
	t.Helper()
	log := &rpcLog{}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		log.add(info.FullMethod)
		return h(ctx, req)
	}), grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		// Unknown methods come here too, on their way to the handler below.
		log.add(info.FullMethod)
		return h(srv, ss)
	}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		m, _ := grpc.MethodFromServerStream(stream)
		return status.Errorf(codes.Unimplemented, "unknown method %s", m)
	}))
	srv.RegisterService(desc, newServer(impl))
	go srv.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); srv.Stop() })
	return &rpcClient{c: storagepb.NewStorageProviderClient(conn)}, log
}

func TestAbortUploadsIsDeclaredAndServed(t *testing.T) {
	a := &aborter{Provider: memstore.New(""), n: 2}
	c, log := serveOver(t, a, &storagepb.StorageProvider_ServiceDesc)
	ctx := context.Background()
	info, err := c.Describe(ctx)
	if err != nil || !info.Capabilities.AbortUploads {
		t.Fatalf("describe of a provider with AbortUploads: %+v, %v; want Capabilities.AbortUploads", info, err)
	}
	var ua storage.UploadAborter = c
	keys := []string{"images/a/b.png", "ünï cødé/日本.png"}
	for range 2 {
		n, err := ua.AbortUploads(ctx, keys)
		if err != nil || n != 2 {
			t.Fatalf("abort uploads: %d, %v; want 2, nil", n, err)
		}
	}
	if got := a.recorded(); len(got) != 2 || !slices.Equal(got[0], keys) {
		t.Fatalf("the provider got %q, want %q twice", got, keys)
	}
	if n := log.count("Describe"); n != 1 {
		t.Errorf("Describe was called %d times; want once, by the host (its answer is cached)", n)
	}
}

func TestAbortUploadsWithoutTheCapability(t *testing.T) {
	p := &plain{Provider: memstore.New("")}
	for _, tc := range []struct {
		name string
		desc *grpc.ServiceDesc
	}{
		{"plugin built with the previous SDK", legacyServiceDesc()},
		{"provider without UploadAborter", &storagepb.StorageProvider_ServiceDesc},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, log := serveOver(t, p, tc.desc)
			ctx := context.Background()
			info, err := c.Describe(ctx)
			if err != nil || info.Capabilities.AbortUploads {
				t.Fatalf("describe: %+v, %v; want no AbortUploads", info, err)
			}
			n, err := c.AbortUploads(ctx, []string{"a/b.png"})
			var se *storage.Error
			if n != 0 || storage.Code(err) != storage.Unimplemented || !errors.As(err, &se) {
				t.Fatalf("abort uploads: %d, %v (code %v); want 0 and an Unimplemented *storage.Error", n, err, storage.Code(err))
			}
			if m := log.count("AbortUploads"); m != 0 {
				t.Errorf("the client called AbortUploads %d times on a plugin that did not declare it", m)
			}
			// Everything else still works.
			if _, err := c.Put(ctx, "a/b.png", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
				t.Fatalf("put: %v", err)
			}
			if st, err := c.Stat(ctx, "a/b.png"); err != nil || st.Size != 1 {
				t.Fatalf("stat: %+v, %v", st, err)
			}
		})
	}
}

func TestAbortUploadsUnknownToThePluginIsUnimplemented(t *testing.T) {
	// A plugin that declares the call but does not serve it: the gRPC
	// answer codes.Unimplemented maps to the contract's Unimplemented.
	c, log := serveOver(t, &aborter{Provider: memstore.New("")}, legacyServiceDesc())
	n, err := c.AbortUploads(context.Background(), []string{"a/b.png"})
	if n != 0 || storage.Code(err) != storage.Unimplemented {
		t.Fatalf("abort uploads: %d, %v (code %v); want Unimplemented", n, err, storage.Code(err))
	}
	if m := log.count("AbortUploads"); m != 1 {
		t.Fatalf("AbortUploads reached the server %d times, want 1", m)
	}
	if storage.IsRetryable(err) {
		t.Fatal("Unimplemented is retryable")
	}
}

func TestAbortUploadsAsksDescribeAgainAfterAFailure(t *testing.T) {
	f := &flakyDescribe{aborter: &aborter{Provider: memstore.New(""), n: 1}}
	c, _ := serveOver(t, f, &storagepb.StorageProvider_ServiceDesc)
	ctx := context.Background()
	_, err := c.AbortUploads(ctx, []string{"k"})
	if storage.Code(err) != storage.Unavailable {
		t.Fatalf("abort uploads while Describe fails: %v (code %v); want Unavailable", err, storage.Code(err))
	}
	if n, err := c.AbortUploads(ctx, []string{"k"}); err != nil || n != 1 {
		t.Fatalf("abort uploads once Describe answers: %d, %v; want 1, nil (a failed Describe is not cached)", n, err)
	}
}

func TestAbortUploadsChecksKeys(t *testing.T) {
	a := &aborter{Provider: memstore.New("")}
	c, log := serveOver(t, a, &storagepb.StorageProvider_ServiceDesc)
	ctx := context.Background()
	tooMany := make([]string, storage.MaxAbortKeys+1)
	for i := range tooMany {
		tooMany[i] = "k"
	}
	for name, keys := range map[string][]string{
		"bad key":  {"fine.png", "a/../b"},
		"empty":    {""},
		"too many": tooMany,
	} {
		if _, err := c.AbortUploads(ctx, keys); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("%s: %v (code %v), want InvalidArgument", name, err, storage.Code(err))
		}
	}
	if m := log.count("AbortUploads"); m != 0 {
		t.Errorf("refused key lists reached the plugin %d times", m)
	}
	// The server checks too, whatever the client sent.
	for name, keys := range map[string][]string{"bad key": {"a//b"}, "too many": tooMany} {
		_, err := c.c.AbortUploads(ctx, &storagepb.AbortUploadsRequest{Keys: keys})
		if err := fromStatus(ctx, "abort uploads", err); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("raw call, %s: %v, want InvalidArgument", name, err)
		}
	}
	if got := a.recorded(); len(got) != 0 {
		t.Errorf("the provider was called with refused keys: %q", got)
	}
	if n, err := c.AbortUploads(ctx, nil); err != nil || n != 0 {
		t.Errorf("no keys: %d, %v; want 0, nil", n, err)
	}
	if n, err := c.AbortUploads(ctx, slices.Repeat([]string{"k"}, storage.MaxAbortKeys)); err != nil || n != 0 {
		t.Errorf("%d keys: %d, %v; want 0, nil", storage.MaxAbortKeys, n, err)
	}
}

func TestAbortUploadsErrorsKeepTheirCode(t *testing.T) {
	for _, code := range []storage.ErrorCode{storage.PermissionDenied, storage.Unavailable, storage.FailedPrecondition, storage.Unimplemented} {
		a := &aborter{Provider: memstore.New(""), err: &storage.Error{Code: code, Message: "boom " + code.String()}}
		c, _ := serveOver(t, a, &storagepb.StorageProvider_ServiceDesc)
		_, err := c.AbortUploads(context.Background(), []string{"k"})
		if storage.Code(err) != code || !strings.Contains(err.Error(), "boom "+code.String()) {
			t.Errorf("code %v came back as %v: %v", code, storage.Code(err), err)
		}
	}
	if got := status.Code(toStatus(&storage.Error{Code: storage.Unimplemented})); got != codes.Unimplemented {
		t.Errorf("Unimplemented travels as gRPC %v, want %v", got, codes.Unimplemented)
	}
}

func TestUnmappedCodeStaysAnError(t *testing.T) {
	err := toStatus(&storage.Error{Code: storage.ErrorCode(42), Message: "from a newer contract"})
	if err == nil || status.Code(err) != codes.Unknown {
		t.Fatalf("an error with an unmapped code became %v (gRPC %v), want a codes.Unknown error", err, status.Code(err))
	}
}
