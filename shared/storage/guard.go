package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
)

// Guarded is implemented by a Provider that already enforces, on its own
// side, everything Guard enforces: Guard returns such a provider as it is.
// The sdk's plugin client implements it, since the plugin's server runs
// Guard in the plugin process; guarding the client too would stop a bad
// upload before the plugin saw it, and hide a plugin that mishandles one.
type Guarded interface {
	// GuardedByContract marks the provider; it does nothing.
	GuardedByContract()
}

// Guard returns p wrapped in the checks of the contract that are the same
// for every provider, so a provider author writes none of them:
//
//   - every key (Put, Get, Stat, Delete, AbortUploads) is checked with
//     ValidateKey, every Location with ValidateLocation, and the keys of
//     AbortUploads with ValidateAbortKeys; a refused one gives
//     InvalidArgument and p is not called;
//
//   - the reader Put gives p yields at most PutOptions.Size bytes when the
//     size is declared, and ends with io.EOF only when it yielded exactly
//     the declared size and, when PutOptions.SHA256 is set, content with
//     that digest. Otherwise the read that would have ended it returns an
//     InvalidArgument error instead, and p, which commits only after
//     io.EOF, writes nothing;
//
//   - a Put that p reports as done before its reader reached io.EOF fails
//     (with Unknown): a provider that trusts the declared size and stops
//     reading there has skipped the checks above;
//
//   - a Get or GetAt with a negative GetOptions.Offset gives
//     InvalidArgument and p is not called (an Offset past the object's
//     size needs the size, so p refuses that one itself); one at exactly
//     the object's size that p refuses with InvalidArgument (as S3 does)
//     becomes the empty read the contract specifies (ReadAtEnd).
//
//   - List's ListOptions are checked with ValidateListOptions (a refused
//     one gives InvalidArgument and p is not called) and p gets the Limit
//     it sets; a page over that limit fails with Unknown. ListUploads'
//     cursor is checked with ValidateCursor.
//
// PutOptions reach p unchanged, SHA256 included, so a provider may also
// hand the digest to its store. The wrapper implements UploadAborter,
// Locator and Lister exactly when p does. sdk.Serve and the conformance suite both
// run every provider through Guard, so a provider behaves the same in the
// host's process and over the plugin. Guard of a guarded provider (or of
// a Guarded one) is that provider.
func Guard(p Provider) Provider {
	switch p.(type) {
	case nil, Guarded, *guard, *guardAborter, *guardLocator, *guardBoth,
		*guardLister, *guardAborterLister, *guardLocatorLister, *guardAll:
		return p
	}
	g := &guard{p: p}
	a, aborts := p.(UploadAborter)
	l, locates := p.(Locator)
	s, lists := p.(Lister)
	switch {
	case aborts && locates && lists:
		return &guardAll{guard: g, aborter: aborter{a}, locator: locator{l}, lister: lister{s}}
	case aborts && locates:
		return &guardBoth{guard: g, aborter: aborter{a}, locator: locator{l}}
	case aborts && lists:
		return &guardAborterLister{guard: g, aborter: aborter{a}, lister: lister{s}}
	case locates && lists:
		return &guardLocatorLister{guard: g, locator: locator{l}, lister: lister{s}}
	case aborts:
		return &guardAborter{guard: g, aborter: aborter{a}}
	case locates:
		return &guardLocator{guard: g, locator: locator{l}}
	case lists:
		return &guardLister{guard: g, lister: lister{s}}
	}
	return g
}

// guard is the wrapper Guard returns for a provider with no optional calls.
type guard struct{ p Provider }

type guardAborter struct {
	*guard
	aborter
}

type guardLocator struct {
	*guard
	locator
}

type guardBoth struct {
	*guard
	aborter
	locator
}

type guardLister struct {
	*guard
	lister
}

type guardAborterLister struct {
	*guard
	aborter
	lister
}

type guardLocatorLister struct {
	*guard
	locator
	lister
}

type guardAll struct {
	*guard
	aborter
	locator
	lister
}

// Describe asks p, and reports ContractRevision when p leaves Contract 0:
// a provider guarded by this package is built against its rules.
func (g *guard) Describe(ctx context.Context) (Info, error) {
	info, err := g.p.Describe(ctx)
	if err == nil && info.Contract == 0 {
		info.Contract = ContractRevision
	}
	return info, err
}

// ValidateSettings asks p.
func (g *guard) ValidateSettings(ctx context.Context, s Settings) ([]FieldError, error) {
	return g.p.ValidateSettings(ctx, s)
}

// Configure asks p.
func (g *guard) Configure(ctx context.Context, s Settings) (ConfigureResult, error) {
	return g.p.Configure(ctx, s)
}

// TestConnection asks p.
func (g *guard) TestConnection(ctx context.Context) (TestResult, error) {
	return g.p.TestConnection(ctx)
}

// Health asks p.
func (g *guard) Health(ctx context.Context) (Health, error) { return g.p.Health(ctx) }

// Put checks the key, then gives p a reader that enforces the declared
// size and sha256 (see Guard).
func (g *guard) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error) {
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, err
	}
	if opts.Size < 0 {
		opts.Size = -1
	}
	if r == nil {
		r = bytes.NewReader(nil)
	}
	body := &checkedReader{r: r, key: key, declared: opts.Size, want: opts.SHA256}
	if opts.SHA256 != nil {
		body.sum = sha256.New()
	}
	info, err := g.p.Put(ctx, key, body, opts)
	if err != nil {
		return ObjectInfo{}, err
	}
	if !body.done {
		return ObjectInfo{}, &Error{Code: Unknown, Message: fmt.Sprintf("put %s: the provider reported success before reading the content to the end, so the declared size and sha256 were never checked; a provider must read Put's reader until io.EOF before it commits", quoteKey(key))}
	}
	return info, nil
}

// Get checks the key and the offset, then asks p.
func (g *guard) Get(ctx context.Context, key string, opts GetOptions) (io.ReadCloser, ObjectInfo, error) {
	if err := ValidateKey(key); err != nil {
		return nil, ObjectInfo{}, err
	}
	if err := checkOffset(key, opts); err != nil {
		return nil, ObjectInfo{}, err
	}
	rc, info, err := g.p.Get(ctx, key, opts)
	return ReadAtEnd(ctx, opts, rc, info, err, func(ctx context.Context) (ObjectInfo, error) { return g.p.Stat(ctx, key) })
}

// checkOffset refuses a negative GetOptions.Offset with InvalidArgument.
func checkOffset(key string, opts GetOptions) error {
	if opts.Offset < 0 {
		return &Error{Code: InvalidArgument, Message: fmt.Sprintf("get %s: negative offset %d; an offset is 0 or more", quoteKey(key), opts.Offset)}
	}
	return nil
}

// Stat checks the key, then asks p.
func (g *guard) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, err
	}
	return g.p.Stat(ctx, key)
}

// Delete checks the key, then asks p.
func (g *guard) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	return g.p.Delete(ctx, key)
}

// aborter checks the keys of AbortUploads.
type aborter struct{ a UploadAborter }

// AbortUploads checks the keys (ValidateAbortKeys), then asks the provider.
func (a aborter) AbortUploads(ctx context.Context, keys []string) (int, error) {
	if err := ValidateAbortKeys(keys); err != nil {
		return 0, err
	}
	return a.a.AbortUploads(ctx, keys)
}

// locator checks the Location of each call.
type locator struct{ l Locator }

// GetAt checks loc (ValidateLocation) and the offset, then asks the
// provider.
func (l locator) GetAt(ctx context.Context, loc Location, opts GetOptions) (io.ReadCloser, ObjectInfo, error) {
	if err := ValidateLocation(loc); err != nil {
		return nil, ObjectInfo{}, err
	}
	if err := checkOffset(loc.Key, opts); err != nil {
		return nil, ObjectInfo{}, err
	}
	rc, info, err := l.l.GetAt(ctx, loc, opts)
	return ReadAtEnd(ctx, opts, rc, info, err, func(ctx context.Context) (ObjectInfo, error) { return l.l.StatAt(ctx, loc) })
}

// StatAt checks loc (ValidateLocation), then asks the provider.
func (l locator) StatAt(ctx context.Context, loc Location) (ObjectInfo, error) {
	if err := ValidateLocation(loc); err != nil {
		return ObjectInfo{}, err
	}
	return l.l.StatAt(ctx, loc)
}

// DeleteAt checks loc (ValidateLocation), then asks the provider.
func (l locator) DeleteAt(ctx context.Context, loc Location) error {
	if err := ValidateLocation(loc); err != nil {
		return err
	}
	return l.l.DeleteAt(ctx, loc)
}

// lister checks the options and cursors of the listing calls.
type lister struct{ l Lister }

// List checks opts (ValidateListOptions), asks the provider with the
// Limit it sets, and refuses a page over that limit with Unknown.
func (l lister) List(ctx context.Context, opts ListOptions) (ListPage, error) {
	opts, err := ValidateListOptions(opts)
	if err != nil {
		return ListPage{}, err
	}
	page, err := l.l.List(ctx, opts)
	if err != nil {
		return ListPage{}, err
	}
	if len(page.Objects) > opts.Limit {
		return ListPage{}, &Error{Code: Unknown, Message: fmt.Sprintf("list: the provider returned %d objects in a page limited to %d; a page holds at most ListOptions.Limit", len(page.Objects), opts.Limit)}
	}
	return page, nil
}

// ListUploads checks the cursor (ValidateCursor), asks the provider, and
// refuses a page over MaxListLimit with Unknown.
func (l lister) ListUploads(ctx context.Context, cursor string) (UploadPage, error) {
	if err := ValidateCursor("list uploads", cursor); err != nil {
		return UploadPage{}, err
	}
	page, err := l.l.ListUploads(ctx, cursor)
	if err != nil {
		return UploadPage{}, err
	}
	if len(page.Uploads) > MaxListLimit {
		return UploadPage{}, &Error{Code: Unknown, Message: fmt.Sprintf("list uploads: the provider returned %d uploads in one page, over the limit of %d", len(page.Uploads), MaxListLimit)}
	}
	return page, nil
}

// checkedReader is the reader a guarded Put gives the provider.
type checkedReader struct {
	r        io.Reader
	key      string
	declared int64 // -1 when not declared
	read     int64
	want     []byte
	sum      hash.Hash // nil unless want is set
	done     bool      // io.EOF was returned after every check passed
	err      error     // the error that ended the content, returned again
}

// Read yields the content, and io.EOF only once it passed the checks.
func (c *checkedReader) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.declared >= 0 && int64(len(p)) > c.declared-c.read+1 {
		// Never read more than one byte past the declared size, so an
		// over-long body is caught without pulling it all in.
		p = p[:c.declared-c.read+1]
	}
	n, err := c.r.Read(p)
	c.read += int64(n)
	if c.declared >= 0 && c.read > c.declared {
		c.err = &Error{Code: InvalidArgument, Message: fmt.Sprintf("put %s: the content has more than the declared %d bytes; nothing was written", quoteKey(c.key), c.declared)}
		return 0, c.err
	}
	if c.sum != nil {
		c.sum.Write(p[:n])
	}
	switch {
	case err == io.EOF:
		if c.declared >= 0 && c.read != c.declared {
			c.err = &Error{Code: InvalidArgument, Message: fmt.Sprintf("put %s: the content has %d bytes but %d were declared; nothing was written", quoteKey(c.key), c.read, c.declared)}
			return n, c.err
		}
		if c.sum != nil && !bytes.Equal(c.sum.Sum(nil), c.want) {
			c.err = &Error{Code: InvalidArgument, Message: fmt.Sprintf("put %s: the sha256 of the content does not match the one declared; nothing was written", quoteKey(c.key))}
			return n, c.err
		}
		c.done = true
		return n, io.EOF
	case err != nil:
		c.err = err
		return n, err
	}
	return n, nil
}
