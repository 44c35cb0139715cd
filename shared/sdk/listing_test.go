package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/shared/memstore"
	"github.com/magicads/r2storage/shared/storage"
	"github.com/magicads/r2storage/shared/storagepb"
)

// TestListingIsDeclaredAndServed: a provider implementing storage.Lister
// gets Capabilities.Listing declared; List pages cross the boundary with
// Key, StoredKey, Bucket, Size and ModTime (and no URL), only under the
// key prefix; ListUploads carries keys and initiated times.
func TestListingIsDeclaredAndServed(t *testing.T) {
	mem := memstore.New("https://cdn.example.com")
	c, log := serveOver(t, mem, &storagepb.StorageProvider_ServiceDesc)
	ctx := context.Background()
	if _, err := mem.Put(ctx, "outside.png", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Configure(ctx, storage.Settings{"key_prefix": "tenant", "public_url": "https://cdn.example.com"}); err != nil {
		t.Fatal(err)
	}
	info, err := c.Describe(ctx)
	if err != nil || !info.Capabilities.Listing {
		t.Fatalf("describe of a provider with Lister: %+v, %v; want Capabilities.Listing", info, err)
	}
	for i := range 5 {
		body := strings.Repeat("b", i)
		if _, err := c.Put(ctx, fmt.Sprintf("img/%d.png", i), strings.NewReader(body), storage.PutOptions{Size: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	opts := storage.ListOptions{Limit: 2}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("the listing does not end")
		}
		page, err := c.List(ctx, opts)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		if len(page.Objects) > 2 {
			t.Fatalf("a page of limit 2 holds %d objects", len(page.Objects))
		}
		for _, o := range page.Objects {
			if o.StoredKey != "tenant/"+o.Key || o.Bucket != "memory:default" || o.ModTime.IsZero() || o.URL != "" || o.Size != int64(o.Key[4]-'0') {
				t.Errorf("listed %+v", o)
			}
			got = append(got, o.Key)
		}
		if page.Next == "" {
			break
		}
		opts.Cursor = page.Next
	}
	if want := "img/0.png img/1.png img/2.png img/3.png img/4.png"; strings.Join(got, " ") != want {
		t.Fatalf("listed %q, want %q (nothing outside the key prefix)", got, want)
	}
	page, err := c.List(ctx, storage.ListOptions{Prefix: "img/3"})
	if err != nil || len(page.Objects) != 1 || page.Objects[0].Key != "img/3.png" || page.Next != "" {
		t.Fatalf("list of prefix img/3: %+v, %v", page, err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := mem.StartUpload("img/9.png", at); err != nil {
		t.Fatal(err)
	}
	up, err := c.ListUploads(ctx, "")
	if err != nil || len(up.Uploads) != 1 || up.Next != "" {
		t.Fatalf("list uploads: %+v, %v", up, err)
	}
	if u := up.Uploads[0]; u.Key != "img/9.png" || u.StoredKey != "tenant/img/9.png" || u.Bucket != "memory:default" || !u.Initiated.Equal(at) {
		t.Fatalf("listed upload %+v", u)
	}
	if n := log.count("List") + log.count("ListUploads"); n < 5 {
		t.Errorf("the plugin served %d listing calls", n)
	}
	// Bad options are refused before anything is sent.
	before := log.count("List")
	if _, err := c.List(ctx, storage.ListOptions{Limit: -1}); storage.Code(err) != storage.InvalidArgument {
		t.Errorf("list with a negative limit: %v, want InvalidArgument", err)
	}
	if _, err := c.ListUploads(ctx, strings.Repeat("c", storage.MaxCursorBytes+1)); storage.Code(err) != storage.InvalidArgument {
		t.Errorf("list uploads with a huge cursor: %v, want InvalidArgument", err)
	}
	if log.count("List") != before {
		t.Error("refused options reached the plugin")
	}
	// The server checks too.
	_, err = c.c.List(ctx, &storagepb.ListRequest{Prefix: "/x"})
	if err := fromStatus(ctx, "list", err); storage.Code(err) != storage.InvalidArgument {
		t.Errorf("raw list with a bad prefix: %v, want InvalidArgument", err)
	}
}

// TestListingWithoutTheCapability: a plugin built with the previous SDK
// (the calls do not exist) or whose provider lacks storage.Lister does not
// declare Capabilities.Listing; the client answers both calls with an
// Unimplemented *storage.Error without asking it.
func TestListingWithoutTheCapability(t *testing.T) {
	for name, legacy := range map[string]bool{"plugin built with the previous SDK": true, "provider without Lister": false} {
		t.Run(name, func(t *testing.T) {
			d := &storagepb.StorageProvider_ServiceDesc
			if legacy {
				d = legacyServiceDesc()
			}
			c, log := serveOver(t, plain{memstore.New("")}, d)
			ctx := context.Background()
			info, err := c.Describe(ctx)
			if err != nil || info.Capabilities.Listing {
				t.Fatalf("describe: %+v, %v; want no Listing", info, err)
			}
			_, lerr := c.List(ctx, storage.ListOptions{})
			_, uerr := c.ListUploads(ctx, "")
			for name, err := range map[string]error{"list": lerr, "list uploads": uerr} {
				var se *storage.Error
				if storage.Code(err) != storage.Unimplemented || !errors.As(err, &se) || !strings.Contains(err.Error(), "Capabilities.Listing") {
					t.Errorf("%s: %v (code %v); want an Unimplemented *storage.Error naming the capability", name, err, storage.Code(err))
				}
			}
			if n := log.count("List") + log.count("ListUploads"); n != 0 {
				t.Errorf("the client made %d listing calls to a plugin that did not declare them", n)
			}
		})
	}
	// A server whose provider lacks Lister answers Unimplemented to a
	// client that calls anyway.
	pc, _ := serveOver(t, plain{memstore.New("")}, &storagepb.StorageProvider_ServiceDesc)
	ctx := context.Background()
	_, err := pc.c.List(ctx, &storagepb.ListRequest{})
	if err := fromStatus(ctx, "list", err); storage.Code(err) != storage.Unimplemented {
		t.Errorf("raw list on a provider without Lister: %v, want Unimplemented", err)
	}
	// The launched Client is a storage.Lister whatever its provider.
	var l storage.Lister = &Client{Provider: plain{memstore.New("")}}
	if _, err := l.List(ctx, storage.ListOptions{}); storage.Code(err) != storage.Unimplemented {
		t.Errorf("list through a client without Lister: %v, want Unimplemented", err)
	}
}
