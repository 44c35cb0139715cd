package sdk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"sync"
	"testing"

	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/storage"
	"github.com/magicads/r2storage/shared/storagepb"
)

// unchecked stores whatever its reader yields up to io.EOF, checking
// neither the declared size nor the sha256, and records the options it got.
type unchecked struct {
	*memstore.Store
	mu   sync.Mutex
	opts []storage.PutOptions
}

func (u *unchecked) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	u.mu.Lock()
	u.opts = append(u.opts, opts)
	u.mu.Unlock()
	data, err := io.ReadAll(r)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return u.Store.Put(ctx, key, bytes.NewReader(data), storage.PutOptions{ContentType: opts.ContentType, Size: -1})
}

// TestServerGuardsAProviderWithoutChecks: the plugin server runs the
// provider through storage.Guard, so a provider with no upload checks of
// its own refuses what the contract refuses, and gets the declared sha256.
func TestServerGuardsAProviderWithoutChecks(t *testing.T) {
	right := sha256.Sum256([]byte("abc"))
	cases := []struct {
		name string
		msgs []*storagepb.PutRequest
		code storage.ErrorCode // Unknown: succeeds
	}{
		{"right", []*storagepb.PutRequest{header("k", 3, right[:]...), chunk("abc"), commit(3)}, storage.Unknown},
		{"fewer than declared", []*storagepb.PutRequest{header("k", 4), chunk("abc"), commit(3)}, storage.InvalidArgument},
		{"more than declared", []*storagepb.PutRequest{header("k", 2), chunk("abc"), commit(3)}, storage.InvalidArgument},
		{"sha256 wrong", []*storagepb.PutRequest{header("k", 3, make([]byte, 32)...), chunk("abc"), commit(3)}, storage.InvalidArgument},
		{"sha256 wrong, size unknown", []*storagepb.PutRequest{header("k", -1, make([]byte, 32)...), chunk("abc"), commit(3)}, storage.InvalidArgument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := &unchecked{Store: memstore.New("")}
			err := rawPut(t, u, c.msgs...)
			if c.code == storage.Unknown {
				if err != nil {
					t.Fatalf("put: %v, want success", err)
				}
				u.mu.Lock()
				defer u.mu.Unlock()
				if len(u.opts) != 1 || !bytes.Equal(u.opts[0].SHA256, right[:]) {
					t.Errorf("the provider got %+v, want the declared sha256", u.opts)
				}
				return
			}
			if storage.Code(err) != c.code {
				t.Fatalf("got %v (code %v), want code %v", err, storage.Code(err), c.code)
			}
			if keys := u.Keys(); len(keys) != 0 {
				t.Fatalf("refused stream left %v", keys)
			}
		})
	}
}
