package conformance

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/magicads/r2storage/shared/storage"
)

// caseListing: a provider declaring Capabilities.Listing implements
// storage.Lister. Objects written under a prefix are listed with their
// sizes, each exactly once, in ascending stored-key order, Key and
// StoredKey = KeyPrefix + Key (checked against Configured when the run
// has it) and Bucket as Put reported them; paging with Limit 2 gives
// pages of at most 2 and the same objects; a Prefix keeps only the keys
// starting with it; a first page of the whole key prefix lists nothing
// outside it; bad options give InvalidArgument; ListUploads answers a
// page. A provider that does not declare it (such as a plugin built with
// an SDK that predates it, through the host's client) answers both calls
// with Unimplemented.
func caseListing(ctx context.Context, p storage.Provider, ns string) (err error) {
	info, err := describe(ctx, p)
	if err != nil {
		return err
	}
	l, isLister := p.(storage.Lister)
	if !info.Capabilities.Listing {
		if !isLister {
			return nil // neither declared nor implemented: nothing to call
		}
		const why = " while Describe does not declare Capabilities.Listing"
		_, err := l.List(ctx, storage.ListOptions{Prefix: ns + "/"})
		if err := expectCode("list"+why, err, storage.Unimplemented); err != nil {
			return err
		}
		_, err = l.ListUploads(ctx, "")
		return expectCode("list uploads"+why, err, storage.Unimplemented)
	}
	if !isLister {
		return fmt.Errorf("Describe declares Capabilities.Listing, but the provider (%T) does not implement storage.Lister", p)
	}
	sizes := map[string]int{
		ns + "/a/one.png":     10,
		ns + "/a/two.png":     0,
		ns + "/a/twø ü+&.png": 300,
		ns + "/b/three.png":   1,
		ns + "/b/four.png":    2000,
	}
	keys := make([]string, 0, len(sizes))
	for k := range sizes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	defer cleanup(ctx, p, &err, keys...)
	puts := map[string]storage.ObjectInfo{}
	for i, k := range keys {
		pi, err := put(ctx, p, k, genBytes(uint64(90+i), sizes[k]), "image/png")
		if err != nil {
			return err
		}
		puts[k] = pi
	}
	// The key prefix, as Configure reported it, else as Put showed it.
	keyPrefix, knownPrefix := "", false
	if cfg := configuredResult(ctx); cfg != nil {
		keyPrefix, knownPrefix = cfg.KeyPrefix, true
	} else if pi := puts[keys[0]]; pi.StoredKey != "" && strings.HasSuffix(pi.StoredKey, keys[0]) {
		keyPrefix, knownPrefix = strings.TrimSuffix(pi.StoredKey, keys[0]), true
	}
	ctx = context.WithValue(ctx, keyPrefixKey{}, prefixInfo{keyPrefix, knownPrefix})

	// Every object, once, with its size: one page, then pages of 2.
	for _, limit := range []int{0, 2, 1} {
		got, pages, err := listAll(ctx, l, storage.ListOptions{Prefix: ns + "/", Limit: limit})
		if err != nil {
			return err
		}
		if err := checkListed(ctx, fmt.Sprintf("list of prefix %q with limit %d", ns+"/", limit), got, keys, sizes, puts); err != nil {
			return err
		}
		if limit > 0 && pages < len(keys)/limit {
			return fmt.Errorf("list of prefix %q with limit %d: %d objects came in %d pages; a page holds at most the limit", ns+"/", limit, len(keys), pages)
		}
	}
	// A prefix keeps only its keys, even in the middle of a segment.
	for _, pre := range []string{ns + "/a/", ns + "/a/tw", ns + "/b/", ns + "/c/"} {
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k, pre) {
				want = append(want, k)
			}
		}
		got, _, err := listAll(ctx, l, storage.ListOptions{Prefix: pre, Limit: 2})
		if err != nil {
			return err
		}
		if err := checkListed(ctx, fmt.Sprintf("list of prefix %q", pre), got, want, sizes, puts); err != nil {
			return err
		}
	}
	// The first page of everything under the key prefix: nothing outside it.
	page, err := l.List(ctx, storage.ListOptions{Limit: 50})
	if err != nil {
		return fmt.Errorf("list of the whole key prefix: %w", err)
	}
	if len(page.Objects) > 50 {
		return fmt.Errorf("list of the whole key prefix with limit 50: %d objects", len(page.Objects))
	}
	for _, o := range page.Objects {
		if err := checkUnderPrefix(ctx, "list of the whole key prefix", o); err != nil {
			return err
		}
	}
	// Bad options are refused.
	for _, bad := range []struct {
		what string
		opts storage.ListOptions
	}{
		{"a negative limit", storage.ListOptions{Prefix: ns + "/", Limit: -1}},
		{"a prefix with a control character", storage.ListOptions{Prefix: ns + "/\x00"}},
		{"a prefix starting with /", storage.ListOptions{Prefix: "/" + ns}},
	} {
		_, err := l.List(ctx, bad.opts)
		if err := expectCode("list with "+bad.what, err, storage.InvalidArgument); err != nil {
			return err
		}
	}
	// Incomplete uploads: a page (a put leaves none of its own keys).
	up, err := l.ListUploads(ctx, "")
	if err != nil {
		return fmt.Errorf("list uploads: %w", err)
	}
	if len(up.Uploads) > storage.MaxListLimit {
		return fmt.Errorf("list uploads: %d uploads in one page, over the limit of %d", len(up.Uploads), storage.MaxListLimit)
	}
	for _, u := range up.Uploads {
		if _, ours := sizes[u.Key]; ours {
			return fmt.Errorf("list uploads: lists an upload of %s, which Put completed", display(u.Key))
		}
		if err := checkUnderPrefix(ctx, "list uploads", storage.ObjectInfo{Key: u.Key, StoredKey: u.StoredKey}); err != nil {
			return err
		}
	}
	return nil
}

// listAll pages through List from opts and returns every object and how
// many pages it took; it fails on a page over the limit or a cursor that
// repeats.
func listAll(ctx context.Context, l storage.Lister, opts storage.ListOptions) ([]storage.ObjectInfo, int, error) {
	var all []storage.ObjectInfo
	seen := map[string]bool{}
	limit := opts.Limit
	if limit == 0 {
		limit = storage.MaxListLimit
	}
	for pages := 1; ; pages++ {
		page, err := l.List(ctx, opts)
		if err != nil {
			return nil, pages, fmt.Errorf("list of prefix %q (limit %d, page %d): %w", opts.Prefix, opts.Limit, pages, err)
		}
		if len(page.Objects) > limit {
			return nil, pages, fmt.Errorf("list of prefix %q (limit %d, page %d): %d objects, over the limit", opts.Prefix, opts.Limit, pages, len(page.Objects))
		}
		all = append(all, page.Objects...)
		if page.Next == "" {
			return all, pages, nil
		}
		if seen[page.Next] || pages > 1000 {
			return nil, pages, fmt.Errorf("list of prefix %q (limit %d): page %d gives a cursor already given; the listing would never end", opts.Prefix, opts.Limit, pages)
		}
		seen[page.Next] = true
		opts.Cursor = page.Next
	}
}

// checkListed checks that got are exactly the objects want (sorted), once
// each and in order, with the sizes put and where Put said they went.
func checkListed(ctx context.Context, op string, got []storage.ObjectInfo, want []string, sizes map[string]int, puts map[string]storage.ObjectInfo) error {
	names := make([]string, len(got))
	for i, o := range got {
		names[i] = o.Key
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		return fmt.Errorf("%s: listed %q, want %q (each object once, in ascending order)", op, names, want)
	}
	for _, o := range got {
		if o.Size != int64(sizes[o.Key]) {
			return fmt.Errorf("%s: %s has Size %d, want %d", op, display(o.Key), o.Size, sizes[o.Key])
		}
		pi := puts[o.Key]
		if o.StoredKey != pi.StoredKey && pi.StoredKey != "" {
			return fmt.Errorf("%s: %s has StoredKey %s, but Put reported %s", op, display(o.Key), display(o.StoredKey), display(pi.StoredKey))
		}
		if o.Bucket != pi.Bucket && pi.Bucket != "" {
			return fmt.Errorf("%s: %s has Bucket %q, but Put reported %q", op, display(o.Key), o.Bucket, pi.Bucket)
		}
		if o.ModTime.IsZero() {
			return fmt.Errorf("%s: %s has no ModTime", op, display(o.Key))
		}
		if err := checkUnderPrefix(ctx, op, o); err != nil {
			return err
		}
	}
	return nil
}

// checkUnderPrefix checks that a listed object is under the key prefix:
// StoredKey = KeyPrefix + Key, with the KeyPrefix Configure reported (when
// the run has it) or Put showed.
func checkUnderPrefix(ctx context.Context, op string, o storage.ObjectInfo) error {
	if o.StoredKey == "" || o.Key == "" || !strings.HasSuffix(o.StoredKey, o.Key) {
		return fmt.Errorf("%s: listed Key %s and StoredKey %s; want StoredKey = KeyPrefix + Key", op, display(o.Key), display(o.StoredKey))
	}
	if pi, ok := ctx.Value(keyPrefixKey{}).(prefixInfo); ok && pi.known && o.StoredKey != pi.prefix+o.Key {
		return fmt.Errorf("%s: listed %s, which is not under the key prefix %q (Key %s): an object outside the key prefix is never listed", op, display(o.StoredKey), pi.prefix, display(o.Key))
	}
	return nil
}

// keyPrefixKey is the context key of the listing case's prefixInfo.
type keyPrefixKey struct{}

// prefixInfo is the key prefix the listing case found, if it found one.
type prefixInfo struct {
	prefix string
	known  bool
}
