package sdk

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/storage"
	"github.com/magicads/r2storage/shared/storagepb"
)

// readAll reads and closes rc.
func readAll(t *testing.T, rc io.ReadCloser) string {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	return string(b)
}

// TestLocationsAreDeclaredAndServed: a provider implementing
// storage.Locator gets Capabilities.Locations declared; Configure's Bucket
// and KeyPrefix and ObjectInfo's StoredKey and Bucket cross the boundary;
// GetAt (with its range), StatAt and DeleteAt reach the object where Put
// stored it after the key prefix changed, and refuse another bucket.
func TestLocationsAreDeclaredAndServed(t *testing.T) {
	mem := memstore.New("")
	c, log := serveOver(t, mem, &storagepb.StorageProvider_ServiceDesc)
	ctx := context.Background()
	info, err := c.Describe(ctx)
	if err != nil || !info.Capabilities.Locations {
		t.Fatalf("describe of a provider with Locator: %+v, %v; want Capabilities.Locations", info, err)
	}
	res, err := c.Configure(ctx, storage.Settings{"bucket": "media", "key_prefix": "tenant", "public_url": "https://cdn.example.com/m/"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (storage.ConfigureResult{PublicBaseURL: "https://cdn.example.com/m", Bucket: "memory:media", KeyPrefix: "tenant/"}); res != want {
		t.Fatalf("configure = %+v, want %+v", res, want)
	}
	const key, body = "a/b c+d.png", "located object"
	pi, err := c.Put(ctx, key, strings.NewReader(body), storage.PutOptions{ContentType: "image/png", Size: int64(len(body))})
	if err != nil {
		t.Fatal(err)
	}
	if pi.Key != key || pi.StoredKey != "tenant/"+key || pi.Bucket != "memory:media" || pi.URL != "https://cdn.example.com/m/tenant/a/b%20c%2Bd.png" {
		t.Fatalf("put = %+v; want StoredKey tenant/%s, Bucket memory:media and the URL of the stored key", pi, key)
	}
	if st, err := c.Stat(ctx, key); err != nil || st.StoredKey != pi.StoredKey || st.Bucket != pi.Bucket {
		t.Fatalf("stat = %+v, %v; want the StoredKey and Bucket put reported", st, err)
	}

	// The admin changes the prefix: the key no longer reaches the object,
	// its location does.
	if _, err := c.Configure(ctx, storage.Settings{"bucket": "media", "key_prefix": "other"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, key); !storage.IsNotFound(err) {
		t.Fatalf("stat by key under the new prefix: %v, want NotFound", err)
	}
	var l storage.Locator = c
	loc := storage.Location{Bucket: pi.Bucket, Key: pi.StoredKey}
	st, err := l.StatAt(ctx, loc)
	if err != nil || st.Size != int64(len(body)) || st.ContentType != "image/png" || st.StoredKey != loc.Key || st.Bucket != loc.Bucket || st.Key != loc.Key {
		t.Fatalf("stat at %+v = %+v, %v", loc, st, err)
	}
	rc, gi, err := l.GetAt(ctx, loc, storage.GetOptions{Length: -1})
	if err != nil {
		t.Fatalf("get at: %v", err)
	}
	if got := readAll(t, rc); got != body || gi.StoredKey != loc.Key || gi.Bucket != loc.Bucket {
		t.Fatalf("get at = %q, %+v", got, gi)
	}
	rc, gi, err = l.GetAt(ctx, loc, storage.GetOptions{Offset: 2, Length: 6})
	if err != nil {
		t.Fatalf("get at a range: %v", err)
	}
	if got := readAll(t, rc); got != body[2:8] || gi.Size != int64(len(body)) {
		t.Fatalf("get at offset 2, length 6 = %q (size %d), want %q (size %d)", got, gi.Size, body[2:8], len(body))
	}

	other := storage.Location{Bucket: "memory:elsewhere", Key: loc.Key}
	_, _, gerr := l.GetAt(ctx, other, storage.GetOptions{Length: -1})
	_, serr := l.StatAt(ctx, other)
	derr := l.DeleteAt(ctx, other)
	for name, err := range map[string]error{"get at": gerr, "stat at": serr, "delete at": derr} {
		if storage.Code(err) != storage.FailedPrecondition || !strings.Contains(err.Error(), "memory:elsewhere") || !strings.Contains(err.Error(), "memory:media") {
			t.Errorf("%s another bucket: %v (code %v); want FailedPrecondition naming both buckets", name, err, storage.Code(err))
		}
	}
	if got := mem.Keys(); len(got) != 1 || got[0] != loc.Key {
		t.Fatalf("after the refused calls the bucket holds %q, want %q", got, loc.Key)
	}

	if err := l.DeleteAt(ctx, loc); err != nil {
		t.Fatalf("delete at: %v", err)
	}
	if got := mem.Keys(); len(got) != 0 {
		t.Fatalf("after DeleteAt the bucket holds %q", got)
	}
	if err := l.DeleteAt(ctx, loc); err != nil {
		t.Fatalf("delete at a missing object: %v, want nil", err)
	}
	if _, err := l.StatAt(ctx, loc); !storage.IsNotFound(err) {
		t.Fatalf("stat at after delete: %v, want NotFound", err)
	}
	if _, _, err := l.GetAt(ctx, loc, storage.GetOptions{Length: -1}); !storage.IsNotFound(err) {
		t.Fatalf("get at after delete: %v, want NotFound", err)
	}
	if n := log.count("Describe"); n != 1 {
		t.Errorf("Describe was called %d times; want once, by the host (its answer is cached)", n)
	}
	if n := log.count("GetAt") + log.count("StatAt") + log.count("DeleteAt"); n != 10 {
		t.Errorf("the plugin served %d location calls, want 10", n)
	}
}

// TestLocationsWithoutTheCapability: a plugin built with the previous SDK
// (the calls do not exist) or whose provider lacks storage.Locator does
// not declare Capabilities.Locations; the client answers the three calls
// with an Unimplemented *storage.Error without asking it, and reads "" for
// the fields it does not send.
func TestLocationsWithoutTheCapability(t *testing.T) {
	mem := memstore.New("https://cdn.example.com")
	for name, legacy := range map[string]bool{"plugin built with the previous SDK": true, "provider without Locator": false} {
		t.Run(name, func(t *testing.T) {
			d := &storagepb.StorageProvider_ServiceDesc
			if legacy {
				d = legacyServiceDesc()
			}
			c, log := serveOver(t, &legacyProvider{plain{mem}}, d)
			ctx := context.Background()
			info, err := c.Describe(ctx)
			if err != nil || info.Capabilities.Locations {
				t.Fatalf("describe: %+v, %v; want no Locations", info, err)
			}
			res, err := c.Configure(ctx, storage.Settings{"public_url": "https://cdn.example.com"})
			if err != nil || res.Bucket != "" || res.KeyPrefix != "" {
				t.Fatalf("configure = %+v, %v; want no Bucket or KeyPrefix", res, err)
			}
			pi, err := c.Put(ctx, "a/b.png", strings.NewReader("x"), storage.PutOptions{Size: 1})
			if err != nil || pi.StoredKey != "" || pi.Bucket != "" || pi.URL != "https://cdn.example.com/a/b.png" {
				t.Fatalf("put = %+v, %v; want no StoredKey or Bucket", pi, err)
			}
			loc := storage.Location{Bucket: "memory:default", Key: "a/b.png"}
			rc, _, gerr := c.GetAt(ctx, loc, storage.GetOptions{Length: -1})
			if rc != nil {
				t.Error("get at returned a reader with its error")
			}
			_, serr := c.StatAt(ctx, loc)
			derr := c.DeleteAt(ctx, loc)
			for name, err := range map[string]error{"get at": gerr, "stat at": serr, "delete at": derr} {
				var se *storage.Error
				if storage.Code(err) != storage.Unimplemented || !errors.As(err, &se) || !strings.Contains(err.Error(), "Capabilities.Locations") {
					t.Errorf("%s: %v (code %v); want an Unimplemented *storage.Error naming the capability", name, err, storage.Code(err))
				}
			}
			for _, m := range []string{"GetAt", "StatAt", "DeleteAt"} {
				if n := log.count(m); n != 0 {
					t.Errorf("the client called %s %d times on a plugin that did not declare it", m, n)
				}
			}
			// Everything else still works by key.
			if st, err := c.Stat(ctx, "a/b.png"); err != nil || st.Size != 1 {
				t.Fatalf("stat: %+v, %v", st, err)
			}
			if err := c.Delete(ctx, "a/b.png"); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if keys := mem.Keys(); len(keys) != 0 {
				t.Fatalf("delete by key left %q", keys)
			}
		})
	}
}

// legacyProvider answers as a provider built before Locations: no
// StoredKey or Bucket in ObjectInfo, none in ConfigureResult.
type legacyProvider struct{ plain }

func (p *legacyProvider) Configure(ctx context.Context, s storage.Settings) (storage.ConfigureResult, error) {
	res, err := p.plain.Configure(ctx, s)
	return storage.ConfigureResult{PublicBaseURL: res.PublicBaseURL}, err
}

func (p *legacyProvider) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	info, err := p.plain.Put(ctx, key, r, opts)
	info.StoredKey, info.Bucket = "", ""
	return info, err
}

// TestLocationsUnknownToThePluginIsUnimplemented: a plugin that declares
// the capability but does not serve the calls gets them, and gRPC's
// codes.Unimplemented maps to the contract's Unimplemented.
func TestLocationsUnknownToThePluginIsUnimplemented(t *testing.T) {
	c, log := serveOver(t, memstore.New(""), legacyServiceDesc())
	ctx := context.Background()
	loc := storage.Location{Bucket: memstore.BucketID(memstore.DefaultBucket), Key: "a/b.png"}
	_, _, gerr := c.GetAt(ctx, loc, storage.GetOptions{Length: -1})
	_, serr := c.StatAt(ctx, loc)
	derr := c.DeleteAt(ctx, loc)
	for name, err := range map[string]error{"get at": gerr, "stat at": serr, "delete at": derr} {
		if storage.Code(err) != storage.Unimplemented || storage.IsRetryable(err) {
			t.Errorf("%s: %v (code %v); want Unimplemented", name, err, storage.Code(err))
		}
	}
	for _, m := range []string{"GetAt", "StatAt", "DeleteAt"} {
		if n := log.count(m); n != 1 {
			t.Errorf("%s reached the server %d times, want 1", m, n)
		}
	}
}

// TestLocationsAreChecked: a bad Location is refused by the client before
// anything is sent, and by the server whatever a client sends; a server
// whose provider lacks storage.Locator answers Unimplemented.
func TestLocationsAreChecked(t *testing.T) {
	mem := memstore.New("")
	c, log := serveOver(t, mem, &storagepb.StorageProvider_ServiceDesc)
	ctx := context.Background()
	if _, err := mem.Put(ctx, "a/b.png", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	bucket := memstore.BucketID(memstore.DefaultBucket)
	bad := map[string]storage.Location{
		"empty bucket":  {Bucket: "", Key: "a/b.png"},
		"control chars": {Bucket: "memory:\x00", Key: "a/b.png"},
		"empty key":     {Bucket: bucket, Key: ""},
		".. segment":    {Bucket: bucket, Key: "a/../a/b.png"},
		"leading slash": {Bucket: bucket, Key: "/a/b.png"},
		"too long":      {Bucket: bucket, Key: strings.Repeat("k", storage.MaxKeyBytes+1)},
	}
	for name, loc := range bad {
		_, _, gerr := c.GetAt(ctx, loc, storage.GetOptions{Length: -1})
		_, serr := c.StatAt(ctx, loc)
		derr := c.DeleteAt(ctx, loc)
		for op, err := range map[string]error{"get at": gerr, "stat at": serr, "delete at": derr} {
			if storage.Code(err) != storage.InvalidArgument {
				t.Errorf("%s, %s: %v (code %v), want InvalidArgument", op, name, err, storage.Code(err))
			}
		}
	}
	if n := log.count("GetAt") + log.count("StatAt") + log.count("DeleteAt"); n != 0 {
		t.Errorf("refused locations reached the plugin %d times", n)
	}
	// The server checks too.
	for name, loc := range bad {
		pbLoc := locationToPB(loc)
		_, err := c.c.StatAt(ctx, &storagepb.StatAtRequest{Location: pbLoc})
		if err := fromStatus(ctx, "stat at", err); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("raw stat at, %s: %v, want InvalidArgument", name, err)
		}
		_, err = c.c.DeleteAt(ctx, &storagepb.DeleteAtRequest{Location: pbLoc})
		if err := fromStatus(ctx, "delete at", err); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("raw delete at, %s: %v, want InvalidArgument", name, err)
		}
		stream, err := c.c.GetAt(ctx, &storagepb.GetAtRequest{Location: pbLoc, Length: -1})
		if err == nil {
			_, err = stream.Recv()
		}
		if err := fromStatus(ctx, "get at", err); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("raw get at, %s: %v, want InvalidArgument", name, err)
		}
	}
	if _, err := c.c.StatAt(ctx, &storagepb.StatAtRequest{}); storage.Code(fromStatus(ctx, "stat at", err)) != storage.InvalidArgument {
		t.Errorf("raw stat at without a location: %v, want InvalidArgument", err)
	}
	if keys := mem.Keys(); len(keys) != 1 {
		t.Fatalf("refused calls changed the bucket: %q", keys)
	}

	// A server whose provider lacks Locator answers Unimplemented to a
	// client that calls anyway.
	pc, _ := serveOver(t, plain{mem}, &storagepb.StorageProvider_ServiceDesc)
	_, err := pc.c.StatAt(ctx, &storagepb.StatAtRequest{Location: &storagepb.Location{Bucket: bucket, Key: "a/b.png"}})
	if err := fromStatus(ctx, "stat at", err); storage.Code(err) != storage.Unimplemented {
		t.Errorf("raw stat at a provider without Locator: %v, want Unimplemented", err)
	}
}

// TestLocatorThroughLaunchClient: the launched Client is a storage.Locator
// whatever its provider, and answers Unimplemented when it has none.
func TestLocatorThroughLaunchClient(t *testing.T) {
	var l storage.Locator = &Client{Provider: plain{memstore.New("")}}
	if _, err := l.StatAt(context.Background(), storage.Location{Bucket: "b", Key: "k"}); storage.Code(err) != storage.Unimplemented {
		t.Fatalf("stat at through a client without Locator: %v, want Unimplemented", err)
	}
	c, _ := serveOver(t, memstore.New(""), &storagepb.StorageProvider_ServiceDesc)
	l = &Client{Provider: c}
	if err := l.DeleteAt(context.Background(), storage.Location{Bucket: memstore.BucketID(memstore.DefaultBucket), Key: "k"}); err != nil {
		t.Fatalf("delete at through the client: %v", err)
	}
}

// TestDescribeReportsTheContractRevision: over the plugin, Describe
// reports the revision of the plugin-side SDK, whatever the provider says.
func TestDescribeReportsTheContractRevision(t *testing.T) {
	c, _ := serveOver(t, memstore.New(""), &storagepb.StorageProvider_ServiceDesc)
	info, err := c.Describe(context.Background())
	if err != nil || info.Contract != storage.ContractRevision {
		t.Fatalf("describe = %+v, %v; want Contract %d", info, err, storage.ContractRevision)
	}
	if g, err := storage.Guard(memstore.New("")).Describe(context.Background()); err != nil || g.Contract != storage.ContractRevision {
		t.Fatalf("guarded describe = %+v, %v; want Contract %d", g, err, storage.ContractRevision)
	}
}
