package sdk

import (
	"context"
	"io"
	"testing"

	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/storage"
)

// discard is a provider whose Put reads and drops the content.
type discard struct{ memstore.Store }

func (*discard) Put(_ context.Context, key string, r io.Reader, _ storage.PutOptions) (storage.ObjectInfo, error) {
	n, err := io.Copy(io.Discard, r)
	return storage.ObjectInfo{Key: key, Size: n}, err
}

type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n == 0 {
		return 0, io.EOF
	}
	k := int64(len(p))
	if k > z.n {
		k = z.n
	}
	clear(p[:k])
	z.n -= k
	return int(k), nil
}

// BenchmarkTransportPut measures the put stream alone (no TLS, no storage):
// the ceiling the plugin boundary puts on upload throughput.
func BenchmarkTransportPut(b *testing.B) {
	const size = 256 << 20
	p := connect(b, &discard{})
	b.SetBytes(size)
	for i := 0; i < b.N; i++ {
		if _, err := p.Put(context.Background(), "k", &zeros{n: size}, storage.PutOptions{Size: size}); err != nil {
			b.Fatal(err)
		}
	}
}
