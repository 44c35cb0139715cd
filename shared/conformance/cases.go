package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/magicads/r2storage/shared/storage"
)

// caseDescribe: Describe returns a non-empty ID, Name and Version.
func caseDescribe(ctx context.Context, p storage.Provider, _ string) error {
	info, err := describe(ctx, p)
	if err != nil {
		return err
	}
	var empty []string
	for _, f := range []struct{ name, value string }{{"ID", info.ID}, {"Name", info.Name}, {"Version", info.Version}} {
		if strings.TrimSpace(f.value) == "" {
			empty = append(empty, f.name)
		}
	}
	if len(empty) > 0 {
		return fmt.Errorf("describe: %s empty, want a non-empty ID, Name and Version (got ID %q, Name %q, Version %q)",
			strings.Join(empty, ", "), info.ID, info.Name, info.Version)
	}
	if info.Capabilities.MaxObjectSize < 0 {
		return fmt.Errorf("describe: Capabilities.MaxObjectSize = %d, want 0 (no limit) or a positive size", info.Capabilities.MaxObjectSize)
	}
	return nil
}

// caseHealth: a configured provider reports OK and Configured.
func caseHealth(ctx context.Context, p storage.Provider, _ string) error {
	h, err := p.Health(ctx)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	if !h.OK || !h.Configured {
		return fmt.Errorf("health of a configured provider: OK = %v, Configured = %v (message %q), want both true", h.OK, h.Configured, h.Message)
	}
	return nil
}

// caseTestConnection: the probe succeeds through its last step and leaves
// nothing behind.
func caseTestConnection(ctx context.Context, p storage.Provider, _ string) (err error) {
	res, err := p.TestConnection(ctx)
	if err != nil {
		return fmt.Errorf("test connection: %w", err)
	}
	if !res.OK {
		return fmt.Errorf("test connection: OK = false, failed at step %q: %s", res.Step, res.Message)
	}
	if res.Step != storage.StepDelete {
		return fmt.Errorf("test connection: OK but Step = %q, want %q (the last step)", res.Step, storage.StepDelete)
	}
	if res.ProbeKey == "" {
		return errors.New("test connection: ProbeKey is empty, want the key the probe used")
	}
	if kerr := storage.ValidateKey(res.ProbeKey); kerr != nil {
		return fmt.Errorf("test connection: ProbeKey %q is not a valid caller key: %w", res.ProbeKey, kerr)
	}
	defer cleanup(ctx, p, &err, res.ProbeKey)
	return expectNotFound(ctx, p, res.ProbeKey, "after a successful test connection")
}

// caseEmptyObject: a 0-byte object, with its size declared and not.
func caseEmptyObject(ctx context.Context, p storage.Provider, ns string) (err error) {
	known, unknown := ns+"/declared", ns+"/undeclared"
	defer cleanup(ctx, p, &err, known, unknown)
	if _, err := put(ctx, p, known, nil, "text/plain"); err != nil {
		return err
	}
	if err := verify(ctx, p, object{key: known, size: 0, sha: sum(nil), contentType: "text/plain"}); err != nil {
		return err
	}
	if err := putGenerated(ctx, p, unknown, 0, 0, false, "text/plain"); err != nil {
		return err
	}
	return verify(ctx, p, object{key: unknown, size: 0, sha: sum(nil), contentType: "text/plain"})
}

// caseOneByte: a 1-byte object (a NUL byte).
func caseOneByte(ctx context.Context, p storage.Provider, ns string) (err error) {
	key := ns + "/one"
	defer cleanup(ctx, p, &err, key)
	data := []byte{0}
	if _, err := put(ctx, p, key, data, "application/octet-stream"); err != nil {
		return err
	}
	return verify(ctx, p, object{key: key, size: 1, sha: sum(data)})
}

// caseStatSize: Stat reports the size that was put.
func caseStatSize(ctx context.Context, p storage.Provider, ns string) (err error) {
	key := ns + "/sized"
	defer cleanup(ctx, p, &err, key)
	data := genBytes(1, 12345)
	if _, err := put(ctx, p, key, data, "application/octet-stream"); err != nil {
		return err
	}
	st, err := p.Stat(ctx, key)
	if err != nil {
		return fmt.Errorf("stat %q after a successful put: %w", key, err)
	}
	if err := checkInfo("stat", st, key, int64(len(data))); err != nil {
		return err
	}
	return verify(ctx, p, object{key: key, size: int64(len(data)), sha: sum(data)})
}

// caseContentType: the content type is kept exactly, and an empty one is
// reported as some default.
func caseContentType(ctx context.Context, p storage.Provider, ns string) (err error) {
	png, charset, dflt := ns+"/typed.png", ns+"/charset.txt", ns+"/untyped"
	defer cleanup(ctx, p, &err, png, charset, dflt)
	for _, c := range []struct{ key, ct string }{{png, "image/png"}, {charset, "text/plain; charset=utf-8"}} {
		data := []byte("content type " + c.ct)
		info, err := put(ctx, p, c.key, data, c.ct)
		if err != nil {
			return err
		}
		if info.ContentType != "" && info.ContentType != c.ct {
			return fmt.Errorf("put %q: ObjectInfo.ContentType = %q, want %q", c.key, info.ContentType, c.ct)
		}
		if err := verify(ctx, p, object{key: c.key, size: int64(len(data)), sha: sum(data), contentType: c.ct}); err != nil {
			return err
		}
	}
	data := []byte("no content type")
	if _, err := put(ctx, p, dflt, data, ""); err != nil {
		return err
	}
	if err := verify(ctx, p, object{key: dflt, size: int64(len(data)), sha: sum(data)}); err != nil {
		return err
	}
	st, err := p.Stat(ctx, dflt)
	if err != nil {
		return fmt.Errorf("stat %q: %w", dflt, err)
	}
	if st.ContentType == "" {
		return fmt.Errorf("stat %q put with an empty content type: ContentType is empty, want a default such as application/octet-stream", dflt)
	}
	rc, info, err := p.Get(ctx, dflt, storage.GetOptions{Offset: 0, Length: -1})
	if err != nil {
		return fmt.Errorf("get %q: %w", dflt, err)
	}
	rc.Close()
	if info.ContentType == "" {
		return fmt.Errorf("get %q put with an empty content type: ContentType is empty, want a default such as application/octet-stream", dflt)
	}
	return nil
}

// caseOverwrite: a second put of the same key replaces the object.
func caseOverwrite(ctx context.Context, p storage.Provider, ns string) (err error) {
	key := ns + "/twice"
	defer cleanup(ctx, p, &err, key)
	first := genBytes(2, 1000)
	second := []byte(`{"version":2}`)
	if _, err := put(ctx, p, key, first, "text/plain"); err != nil {
		return err
	}
	if _, err := put(ctx, p, key, second, "application/json"); err != nil {
		return fmt.Errorf("overwriting: %w", err)
	}
	if err := verify(ctx, p, object{key: key, size: int64(len(second)), sha: sum(second), contentType: "application/json"}); err != nil {
		return fmt.Errorf("after overwriting a %d-byte object with a %d-byte one: %w", len(first), len(second), err)
	}
	return nil
}

// putGenerated streams n generated bytes to key, declaring the size or not.
func putGenerated(ctx context.Context, p storage.Provider, key string, seed uint64, n int64, declare bool, contentType string) error {
	_, err := putGeneratedInfo(ctx, p, key, seed, n, declare, contentType)
	return err
}

// putGeneratedInfo is putGenerated, returning what Put reported.
func putGeneratedInfo(ctx context.Context, p storage.Provider, key string, seed uint64, n int64, declare bool, contentType string) (storage.ObjectInfo, error) {
	size, how := n, "declared"
	if !declare {
		size, how = -1, "not declared"
	}
	info, err := p.Put(ctx, key, genReader(seed, n), storage.PutOptions{ContentType: contentType, Size: size})
	if err != nil {
		return info, fmt.Errorf("put %q (%d bytes, size %s): %w", key, n, how, err)
	}
	return info, checkInfo("put", info, key, n)
}

// largeObject puts n generated bytes at ns/object and reads them back.
func largeObject(ctx context.Context, p storage.Provider, ns string, seed uint64, n int64, declare bool) (err error) {
	if err := fitsMaxSize(ctx, p, n); err != nil {
		return err
	}
	key := ns + "/object"
	defer cleanup(ctx, p, &err, key)
	const ct = "application/octet-stream"
	pi, err := putGeneratedInfo(ctx, p, key, seed, n, declare, ct)
	if err != nil {
		return err
	}
	if err := verify(ctx, p, object{key: key, size: n, sha: genSum(seed, n), contentType: ct}); err != nil {
		return err
	}
	// A large object may be a multipart upload, whose tag the store
	// computes differently; Put still reports the one Stat does.
	st, err := p.Stat(ctx, key)
	if err != nil {
		return fmt.Errorf("stat %q after a successful put: %w", key, err)
	}
	if st.ETag != pi.ETag {
		return fmt.Errorf("stat %q (%d bytes): ObjectInfo.ETag %q, but put reported %q for the same version; want the same tag from Put and Stat", key, n, st.ETag, pi.ETag)
	}
	return partialReadClose(ctx, p, key, seed)
}

// partialReadClose reads the first KiB of key and checks that closing the
// reader early returns promptly.
func partialReadClose(ctx context.Context, p storage.Provider, key string, seed uint64) error {
	rc, _, err := p.Get(ctx, key, storage.GetOptions{Offset: 0, Length: -1})
	if err != nil {
		return fmt.Errorf("get %q: %w", key, err)
	}
	buf := make([]byte, kib)
	if _, err := io.ReadFull(rc, buf); err != nil {
		rc.Close()
		return fmt.Errorf("get %q: reading the first KiB: %w", key, err)
	}
	if !bytes.Equal(buf, genBytes(seed, kib)) {
		rc.Close()
		return fmt.Errorf("get %q: the first KiB differs from what was put", key)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		_ = rc.Close()
	}()
	t := time.NewTimer(waitTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("get %q: closing the reader after reading 1 KiB did not return within %v", key, waitTimeout)
	}
}

// caseObject5MiB: 5 MiB + 1 byte, over gRPC's 4 MiB default message limit.
func caseObject5MiB(ctx context.Context, p storage.Provider, ns string) error {
	return largeObject(ctx, p, ns, 5, 5*mib+1, true)
}

// caseObject64MiB: 64 MiB + 1 byte, well into multipart territory.
func caseObject64MiB(ctx context.Context, p storage.Provider, ns string) error {
	return largeObject(ctx, p, ns, 64, 64*mib+1, true)
}

// caseUnknownSize: 6 MiB + 1 byte with the size not declared (Size -1),
// over the 5 MiB part size multipart uploads use.
func caseUnknownSize(ctx context.Context, p storage.Provider, ns string) error {
	return largeObject(ctx, p, ns, 6, 6*mib+1, false)
}

// caseRangeRead: Get honours Offset and Length when Describe says so.
func caseRangeRead(ctx context.Context, p storage.Provider, ns string) (err error) {
	info, err := describe(ctx, p)
	if err != nil {
		return err
	}
	if !info.Capabilities.RangeReads {
		return skipf("Describe reports no range reads (Capabilities.RangeReads is false)")
	}
	const seed, n = 7, 3*mib + 7
	key := ns + "/ranged"
	defer cleanup(ctx, p, &err, key)
	if err := putGenerated(ctx, p, key, seed, n, true, "application/octet-stream"); err != nil {
		return err
	}
	for _, r := range []struct{ off, length int64 }{
		{0, 10}, {mib - 5, 10}, {12345, mib + 3}, {n - 100, -1}, {n - 1, 1}, {2 * mib, -1}, {0, -1},
	} {
		op := fmt.Sprintf("get (Offset %d, Length %d)", r.off, r.length)
		rc, gi, err := p.Get(ctx, key, storage.GetOptions{Offset: r.off, Length: r.length})
		if err != nil {
			return fmt.Errorf("%s %q: %w", op, key, err)
		}
		want := r.length
		if want < 0 {
			want = n - r.off
		}
		err = checkInfo(op, gi, key, n)
		if err != nil {
			err = fmt.Errorf("%w (ObjectInfo.Size is the full object size, even for a range)", err)
		} else if rerr := readCheck(rc, want, genRangeSum(seed, n, r.off, r.length)); rerr != nil {
			err = fmt.Errorf("%s %q: %w", op, key, rerr)
		}
		rc.Close()
		if err != nil {
			return err
		}
	}
	for _, r := range []struct{ off, length int64 }{{n + 10, -1}, {-1, 10}} {
		rc, _, err := p.Get(ctx, key, storage.GetOptions{Offset: r.off, Length: r.length})
		if rc != nil {
			rc.Close()
		}
		if err := expectCode(fmt.Sprintf("get %q (%d bytes) with Offset %d, Length %d", key, n, r.off, r.length), err, storage.InvalidArgument); err != nil {
			return err
		}
	}
	return nil
}

// caseReadAtEnd: with range reads, a Get at Offset equal to the object's
// size is an empty read with the object's ObjectInfo (whatever Length),
// also of an empty object; an Offset past the size gives InvalidArgument
// (also with Length 0).
func caseReadAtEnd(ctx context.Context, p storage.Provider, ns string) (err error) {
	info, err := describe(ctx, p)
	if err != nil {
		return err
	}
	if !info.Capabilities.RangeReads {
		return skipf("Describe reports no range reads (Capabilities.RangeReads is false)")
	}
	const ct = "application/octet-stream"
	full, empty := ns+"/ten-bytes", ns+"/empty"
	defer cleanup(ctx, p, &err, full, empty)
	if _, err := put(ctx, p, full, genBytes(90, 10), ct); err != nil {
		return err
	}
	if _, err := put(ctx, p, empty, nil, ct); err != nil {
		return err
	}
	for _, o := range []struct {
		key  string
		size int64
	}{{full, 10}, {empty, 0}} {
		for _, length := range []int64{-1, 0, 5} {
			op := fmt.Sprintf("get %s (%d bytes) with Offset %d (its size), Length %d", display(o.key), o.size, o.size, length)
			rc, gi, gerr := p.Get(ctx, o.key, storage.GetOptions{Offset: o.size, Length: length})
			if gerr != nil {
				return fmt.Errorf("%s: %w; want an empty read (Offset == size is the end of the object, not past it)", op, gerr)
			}
			cerr := checkInfo(op, gi, o.key, o.size)
			if cerr == nil {
				if rerr := readCheck(rc, 0, sum(nil)); rerr != nil {
					cerr = fmt.Errorf("%s: %w", op, rerr)
				}
			}
			rc.Close()
			if cerr != nil {
				return cerr
			}
		}
		for _, length := range []int64{-1, 0, 5} {
			op := fmt.Sprintf("get %s (%d bytes) with Offset %d (past its size), Length %d", display(o.key), o.size, o.size+1, length)
			rc, _, gerr := p.Get(ctx, o.key, storage.GetOptions{Offset: o.size + 1, Length: length})
			closeIf(rc)
			if err := expectCode(op, gerr, storage.InvalidArgument); err != nil {
				return err
			}
		}
	}
	return nil
}

// caseNotFound: Get and Stat of a missing key report NotFound.
func caseNotFound(ctx context.Context, p storage.Provider, ns string) error {
	return expectNotFound(ctx, p, ns+"/never-written", "of a key never written")
}

// caseDeleteMissing: deleting a missing key succeeds, also twice after a put.
func caseDeleteMissing(ctx context.Context, p storage.Provider, ns string) (err error) {
	missing := ns + "/never-written"
	if err := p.Delete(ctx, missing); err != nil {
		return fmt.Errorf("delete %q, a key never written: %w; want success", missing, err)
	}
	key := ns + "/deleted-twice"
	defer cleanup(ctx, p, &err, key)
	if _, err := put(ctx, p, key, []byte("x"), "text/plain"); err != nil {
		return err
	}
	for i := 1; i <= 2; i++ {
		if err := p.Delete(ctx, key); err != nil {
			return fmt.Errorf("delete %q (delete number %d after a put): %w; want success", key, i, err)
		}
	}
	return nil
}

// caseDeleteThenStat: a deleted object is gone.
func caseDeleteThenStat(ctx context.Context, p storage.Provider, ns string) (err error) {
	key := ns + "/deleted"
	defer cleanup(ctx, p, &err, key)
	if _, err := put(ctx, p, key, []byte("to be deleted"), "text/plain"); err != nil {
		return err
	}
	if err := p.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	return expectNotFound(ctx, p, key, "after deleting it")
}

// specialKeys returns key suffixes that must round-trip exactly. Pairs that
// a provider decoding keys as URLs or forms would merge are all present.
func specialKeys() []string {
	return []string{
		"with space.txt",
		"  two  spaces ",
		"ünï cødé/日本.png",
		"emoji 🙂.gif",
		"plus+sign", "plus sign",
		"percent%",
		"percent%25",
		"a%2Fb", "a/b",
		"%2e%2e",
		"amp&er=eq",
		"question?mark",
		"hash#tag",
		"tilde~star*(paren)!",
		"semi;colon,comma:at@dollar$",
		"quote'dq\"",
		"brackets[]{}<>^|`",
	}
}

// caseSpecialKeys: keys with spaces, unicode and URL-special characters
// round-trip exactly and stay distinct.
func caseSpecialKeys(ctx context.Context, p storage.Provider, ns string) (err error) {
	suffixes := specialKeys()
	keys := make([]string, len(suffixes))
	for i, s := range suffixes {
		keys[i] = ns + "/" + s
	}
	defer cleanup(ctx, p, &err, keys...)
	// Put every key first, then check them all, so two keys a provider
	// maps to the same object are caught.
	for _, k := range keys {
		if _, err := put(ctx, p, k, []byte("key:"+k), "text/plain"); err != nil {
			return err
		}
	}
	var errs []error
	for _, k := range keys {
		data := []byte("key:" + k)
		if err := verify(ctx, p, object{key: k, size: int64(len(data)), sha: sum(data)}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// caseLongKeys: a 200-byte key and a deeply nested key are accepted.
func caseLongKeys(ctx context.Context, p storage.Provider, ns string) (err error) {
	const long = 200
	if len(ns)+2 > long {
		return fmt.Errorf("namespace %q is too long for a %d-byte key", ns, long)
	}
	k200 := ns + "/" + strings.Repeat("k", long-len(ns)-1)
	deep := ns + "/" + strings.Repeat("d/", 40) + "leaf"
	defer cleanup(ctx, p, &err, k200, deep)
	for _, k := range []string{k200, deep} {
		data := []byte("long key")
		if _, err := put(ctx, p, k, data, "text/plain"); err != nil {
			return fmt.Errorf("a %d-byte key: %w", len(k), err)
		}
		if err := verify(ctx, p, object{key: k, size: int64(len(data)), sha: sum(data)}); err != nil {
			return err
		}
	}
	return nil
}

// caseInvalidKeys: refused keys give InvalidArgument on every operation and
// nothing is written, neither at the key nor at a "cleaned" version of it.
func caseInvalidKeys(ctx context.Context, p storage.Provider, ns string) (err error) {
	long := ns + "/" + strings.Repeat("k", storage.MaxKeyBytes+1-len(ns)-1)
	bad := []struct {
		name, key string
		// cleaned are valid keys a careless provider might write instead.
		cleaned []string
		// mayRefuse: a cleaned key may be refused rather than absent.
		mayRefuse bool
	}{
		{"leading ..", "../" + ns + "/x", []string{ns + "/x"}, false},
		{".. segment", ns + "/a/../b", []string{ns + "/b", ns + "/a/b"}, false},
		{". segment", ns + "/a/./b", []string{ns + "/a/b"}, false},
		{"leading /", "/" + ns + "/leading", []string{ns + "/leading"}, false},
		{"trailing /", ns + "/trailing/", []string{ns + "/trailing"}, false},
		{"empty segment", ns + "/a//b", []string{ns + "/a/b"}, false},
		{"NUL byte", ns + "/nul\x00byte", []string{ns + "/nul", ns + "/nulbyte"}, false},
		{"newline", ns + "/new\nline", []string{ns + "/newline"}, false},
		{"backslash", ns + `/back\slash`, []string{ns + "/back/slash"}, false},
		{"invalid UTF-8", ns + "/bad\xffutf8", []string{ns + "/badutf8"}, false},
		{"over the length limit", long, []string{long[:storage.MaxKeyBytes]}, true},
		{"empty", "", nil, false},
	}
	var all []string
	for _, b := range bad {
		all = append(all, b.cleaned...)
	}
	defer cleanup(ctx, p, &err, all...)
	var errs []error
	for _, b := range bad {
		q := fmt.Sprintf("key %s (%s)", display(b.key), b.name)
		var wrong []string
		check := func(op string, err error) {
			switch {
			case err == nil:
				wrong = append(wrong, op+" succeeded")
			case storage.Code(err) != storage.InvalidArgument:
				wrong = append(wrong, fmt.Sprintf("%s gave code %q (%v)", op, storage.Code(err), err))
			}
		}
		_, perr := p.Put(ctx, b.key, strings.NewReader("x"), storage.PutOptions{ContentType: "text/plain", Size: 1})
		check("put", perr)
		_, serr := p.Stat(ctx, b.key)
		check("stat", serr)
		rc, _, gerr := p.Get(ctx, b.key, storage.GetOptions{Offset: 0, Length: -1})
		if rc != nil {
			rc.Close()
		}
		check("get", gerr)
		check("delete", p.Delete(ctx, b.key))
		if len(wrong) > 0 {
			errs = append(errs, fmt.Errorf("%s: want code %q from every operation, but %s", q, storage.InvalidArgument, strings.Join(wrong, ", ")))
		}
		for _, c := range b.cleaned {
			if e := expectAbsent(ctx, p, c, "after a refused put of "+q, b.mayRefuse); e != nil {
				errs = append(errs, e)
			}
		}
	}
	return errors.Join(errs...)
}

// caseConcurrentPuts: 16 concurrent puts of distinct 256 KiB objects all
// land intact.
func caseConcurrentPuts(ctx context.Context, p storage.Provider, ns string) (err error) {
	const workers, n = 16, 256 * kib
	keys := make([]string, workers)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s/object-%02d", ns, i)
	}
	defer cleanup(ctx, p, &err, keys...)
	seed := func(i int) uint64 { return 1000 + uint64(i) }
	parallel := func(f func(i int) error) error {
		errs := make([]error, workers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() {
				defer recoverTo(&errs[i])
				<-start
				errs[i] = f(i)
			})
		}
		close(start)
		wg.Wait()
		return errors.Join(errs...)
	}
	if err := parallel(func(i int) error {
		return putGenerated(ctx, p, keys[i], seed(i), n, true, "application/octet-stream")
	}); err != nil {
		return fmt.Errorf("%d concurrent puts: %w", workers, err)
	}
	if err := parallel(func(i int) error {
		return verify(ctx, p, object{key: keys[i], size: n, sha: genSum(seed(i), n)})
	}); err != nil {
		return fmt.Errorf("after %d concurrent puts: %w", workers, err)
	}
	return nil
}

// recoverTo turns a panic into an error stored in *errp.
func recoverTo(errp *error) {
	if r := recover(); r != nil {
		*errp = fmt.Errorf("panic: %v", r)
	}
}

// blockingReader yields its bytes, then blocks until ctx is done and only
// then reports the end of the stream, so the only thing that stops a put
// from completing is the cancellation.
type blockingReader struct {
	ctx     context.Context
	r       io.Reader
	drained chan struct{}
	once    sync.Once
}

// Read yields the bytes, then waits for the context before returning io.EOF.
func (b *blockingReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 || err != io.EOF {
		return n, err
	}
	b.once.Do(func() { close(b.drained) })
	<-b.ctx.Done()
	return 0, io.EOF
}

// putResult is the outcome of a Put run in a goroutine.
type putResult struct {
	info storage.ObjectInfo
	err  error
}

// caseCancelledPut: a put cancelled mid-stream fails with Canceled or
// Unavailable and leaves nothing behind.
func caseCancelledPut(ctx context.Context, p storage.Provider, ns string) (err error) {
	key := ns + "/cancelled"
	defer cleanup(ctx, p, &err, key)
	putCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	br := &blockingReader{ctx: putCtx, r: genReader(20, 2*mib), drained: make(chan struct{})}
	done := make(chan putResult, 1)
	go func() {
		var r putResult
		defer func() { done <- r }()
		defer recoverTo(&r.err)
		r.info, r.err = p.Put(putCtx, key, br, storage.PutOptions{ContentType: "application/octet-stream", Size: -1})
	}()
	t := time.NewTimer(waitTimeout)
	defer t.Stop()
	select {
	case <-br.drained:
	case <-t.C:
		// The provider has not read 2 MiB yet; cancel it mid-stream anyway.
	case r := <-done:
		if r.err == nil {
			return fmt.Errorf("put %q returned success before reading to the end of a stream of unknown size", key)
		}
		return fmt.Errorf("put %q failed before reading to the end of a stream of unknown size and before its context was cancelled: %w", key, r.err)
	case <-ctx.Done():
		return fmt.Errorf("put %q: %w", key, context.Cause(ctx))
	}
	cancel()
	t.Reset(waitTimeout)
	var r putResult
	select {
	case r = <-done:
	case <-t.C:
		return fmt.Errorf("put %q did not return within %v after its context was cancelled", key, waitTimeout)
	}
	if r.err == nil {
		return fmt.Errorf("put %q whose context was cancelled after 2 MiB: returned success, want an error with code %q or %q", key, storage.Canceled, storage.Unavailable)
	}
	if c := storage.Code(r.err); c != storage.Canceled && c != storage.Unavailable {
		return fmt.Errorf("put %q whose context was cancelled after 2 MiB: error with code %q (%w), want code %q or %q", key, c, r.err, storage.Canceled, storage.Unavailable)
	}
	return expectNotFound(ctx, p, key, "after a put whose context was cancelled mid-stream")
}

// failingReader yields its bytes and then fails with err.
type failingReader struct {
	r   io.Reader
	err error
}

// Read yields the bytes, then returns the injected error instead of io.EOF.
func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n == 0 && err == io.EOF {
		return 0, f.err
	}
	return n, err
}

// caseReaderError: a put whose reader fails mid-stream fails and leaves
// nothing behind, for small and multipart-sized objects.
func caseReaderError(ctx context.Context, p storage.Provider, ns string) (err error) {
	scenarios := []struct {
		name     string
		yields   int64
		declared int64
	}{
		{"fails after 10 bytes, size not declared", 10, -1},
		{"fails after 6 MiB, size not declared", 6 * mib, -1},
		{"fails after 3 MiB of 6 MiB + 1 declared", 3 * mib, 6*mib + 1},
	}
	keys := make([]string, len(scenarios))
	for i := range scenarios {
		keys[i] = fmt.Sprintf("%s/failed-%d", ns, i)
	}
	defer cleanup(ctx, p, &err, keys...)
	var errs []error
	for i, s := range scenarios {
		r := &failingReader{r: genReader(30+uint64(i), s.yields), err: errors.New("conformance: injected reader failure")}
		_, perr := p.Put(ctx, keys[i], r, storage.PutOptions{ContentType: "application/octet-stream", Size: s.declared})
		if perr == nil {
			errs = append(errs, fmt.Errorf("put %q whose reader %s: returned success, want an error", keys[i], s.name))
			continue
		}
		if e := expectNotFound(ctx, p, keys[i], "after a put whose reader "+s.name); e != nil {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// caseShortReader: a put whose reader yields fewer bytes than PutOptions.Size
// declared fails and leaves nothing behind.
func caseShortReader(ctx context.Context, p storage.Provider, ns string) (err error) {
	scenarios := []struct{ yields, declared int64 }{
		{500, 1000},
		{0, 1},
		{6 * mib, 6*mib + 1},
	}
	keys := make([]string, len(scenarios))
	for i := range scenarios {
		keys[i] = fmt.Sprintf("%s/short-%d", ns, i)
	}
	defer cleanup(ctx, p, &err, keys...)
	var errs []error
	for i, s := range scenarios {
		what := fmt.Sprintf("put %q declaring %d bytes but yielding %d", keys[i], s.declared, s.yields)
		_, perr := p.Put(ctx, keys[i], genReader(40+uint64(i), s.yields), storage.PutOptions{ContentType: "application/octet-stream", Size: s.declared})
		if perr == nil {
			errs = append(errs, fmt.Errorf("%s: returned success, want an error", what))
			continue
		}
		if e := expectNotFound(ctx, p, keys[i], "after a "+what); e != nil {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// caseLongReader: a put whose reader yields more bytes than PutOptions.Size
// declared fails and leaves nothing behind, so a provider must read its
// reader to io.EOF (where storage.Guard reports the excess) before it
// commits, never stop at the declared size.
func caseLongReader(ctx context.Context, p storage.Provider, ns string) (err error) {
	scenarios := []struct{ yields, declared int64 }{
		{1001, 1000},
		{1, 0},
		{6*mib + 1, 6 * mib},
	}
	keys := make([]string, len(scenarios))
	for i := range scenarios {
		keys[i] = fmt.Sprintf("%s/long-%d", ns, i)
	}
	defer cleanup(ctx, p, &err, keys...)
	var errs []error
	for i, s := range scenarios {
		what := fmt.Sprintf("put %q declaring %d bytes but yielding %d", keys[i], s.declared, s.yields)
		_, perr := p.Put(ctx, keys[i], genReader(45+uint64(i), s.yields), storage.PutOptions{ContentType: "application/octet-stream", Size: s.declared})
		if perr == nil {
			errs = append(errs, fmt.Errorf("%s: returned success, want an error", what))
			continue
		}
		if e := expectNotFound(ctx, p, keys[i], "after a "+what+" (read Put's reader to io.EOF before committing)"); e != nil {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// caseETag: ObjectInfo.ETag is never empty, Put, Stat and Get report the
// same one for the same stored version, and it changes when the object's
// content changes. It is an opaque version tag: nothing else about its
// form (quotes, an MD5, a part count) is part of the contract, and a
// rewrite of the same content may or may not change it.
func caseETag(ctx context.Context, p storage.Provider, ns string) (err error) {
	key := ns + "/tagged"
	defer cleanup(ctx, p, &err, key)
	etags := make([]string, 0, 2)
	for i, data := range [][]byte{genBytes(60, 1000), genBytes(61, 1000)} {
		pi, err := put(ctx, p, key, data, "application/octet-stream")
		if err != nil {
			return err
		}
		si, err := p.Stat(ctx, key)
		if err != nil {
			return fmt.Errorf("stat %s: %w", display(key), err)
		}
		rc, gi, err := p.Get(ctx, key, storage.GetOptions{Length: -1})
		if err != nil {
			return fmt.Errorf("get %s: %w", display(key), err)
		}
		rc.Close()
		for _, c := range []struct {
			op   string
			etag string
		}{{"put", pi.ETag}, {"stat", si.ETag}, {"get", gi.ETag}} {
			if c.etag == "" {
				return fmt.Errorf("%s %s (content %d): ObjectInfo.ETag is empty, want a tag of the stored version", c.op, display(key), i+1)
			}
			if c.etag != pi.ETag {
				return fmt.Errorf("%s %s (content %d): ObjectInfo.ETag %q, but put reported %q for the same version; want the same tag from Put, Stat and Get", c.op, display(key), i+1, c.etag, pi.ETag)
			}
		}
		etags = append(etags, si.ETag)
	}
	if etags[0] == etags[1] {
		return fmt.Errorf("stat %s: ObjectInfo.ETag %q did not change when the object was overwritten with other content", display(key), etags[0])
	}
	return nil
}

// caseFailedOverwrite: a put over an existing object that fails (reader
// error, short content) leaves the old object as it was.
func caseFailedOverwrite(ctx context.Context, p storage.Provider, ns string) (err error) {
	key := ns + "/kept"
	defer cleanup(ctx, p, &err, key)
	old := genBytes(50, 4321)
	if _, err := put(ctx, p, key, old, "text/plain"); err != nil {
		return err
	}
	attempts := []struct {
		name string
		r    io.Reader
		size int64
	}{
		{"whose reader fails after 1 MiB", &failingReader{r: genReader(51, mib), err: errors.New("conformance: injected reader failure")}, -1},
		{"declaring 2 MiB but yielding 1 MiB", genReader(52, mib), 2 * mib},
	}
	for _, a := range attempts {
		if _, perr := p.Put(ctx, key, a.r, storage.PutOptions{ContentType: "application/octet-stream", Size: a.size}); perr == nil {
			return fmt.Errorf("put %q %s over an existing object: returned success, want an error", key, a.name)
		}
		if err := verify(ctx, p, object{key: key, size: int64(len(old)), sha: sum(old), contentType: "text/plain"}); err != nil {
			return fmt.Errorf("after a failed put %s over an existing object, the old object should be unchanged: %w", a.name, err)
		}
	}
	return nil
}

// casePutSHA256: a put given the content's sha256 succeeds; one given a
// wrong digest fails and writes nothing, also over an existing object.
func casePutSHA256(ctx context.Context, p storage.Provider, ns string) (err error) {
	good, bad := ns+"/digest-ok", ns+"/digest-wrong"
	defer cleanup(ctx, p, &err, good, bad)
	const seed, n = 60, mib + 3
	right := genSum(seed, n)
	info, err := p.Put(ctx, good, genReader(seed, n), storage.PutOptions{ContentType: "application/octet-stream", Size: n, SHA256: right})
	if err != nil {
		return fmt.Errorf("put %q with its correct sha256: %w", good, err)
	}
	if err := checkInfo("put", info, good, n); err != nil {
		return err
	}
	if err := verify(ctx, p, object{key: good, size: n, sha: right}); err != nil {
		return err
	}
	wrong := genSum(seed+1, n)
	for _, declare := range []bool{true, false} {
		size := int64(n)
		if !declare {
			size = -1
		}
		if _, perr := p.Put(ctx, bad, genReader(seed, n), storage.PutOptions{ContentType: "application/octet-stream", Size: size, SHA256: wrong}); perr == nil {
			return fmt.Errorf("put %q (size %d) with a wrong sha256: returned success, want an error", bad, size)
		}
		if err := expectNotFound(ctx, p, bad, "after a put with a wrong sha256"); err != nil {
			return err
		}
	}
	if _, perr := p.Put(ctx, good, strings.NewReader("replacement"), storage.PutOptions{ContentType: "text/plain", Size: 11, SHA256: wrong}); perr == nil {
		return fmt.Errorf("put %q over an existing object with a wrong sha256: returned success, want an error", good)
	}
	if err := verify(ctx, p, object{key: good, size: n, sha: right}); err != nil {
		return fmt.Errorf("after a put with a wrong sha256 over an existing object, the old object should be unchanged: %w", err)
	}
	return nil
}

// casePublicURL: with public URLs, a put's URL is an absolute URL ending with
// the escaped key; without them, it is empty. The URL includes the key
// prefix: it is storage.PublicURL(PublicBaseURL, KeyPrefix + key), checked
// against Configured when the run has it, else against the StoredKey Put
// reported (when it reports one).
func casePublicURL(ctx context.Context, p storage.Provider, ns string) (err error) {
	info, err := describe(ctx, p)
	if err != nil {
		return err
	}
	key := ns + "/url check/ünï cødé+&=?#%2F%.png"
	defer cleanup(ctx, p, &err, key)
	data := []byte("public url")
	pi, err := put(ctx, p, key, data, "image/png")
	if err != nil {
		return err
	}
	if !info.Capabilities.PublicURLs {
		if pi.URL != "" {
			return fmt.Errorf("put %q: ObjectInfo.URL = %q, but Describe reports no public URLs; want \"\"", key, pi.URL)
		}
		// Without public URLs the check is that none is invented: done.
		return nil
	}
	if err := checkURL("put", key, pi.URL); err != nil {
		return err
	}
	if err := checkURLPrefix(ctx, key, pi); err != nil {
		return err
	}
	st, err := p.Stat(ctx, key)
	if err != nil {
		return fmt.Errorf("stat %q: %w", key, err)
	}
	if st.URL != "" && st.URL != pi.URL {
		return fmt.Errorf("stat %q: ObjectInfo.URL = %q, but put returned %q", key, st.URL, pi.URL)
	}
	rc, gi, err := p.Get(ctx, key, storage.GetOptions{Offset: 0, Length: -1})
	if err != nil {
		return fmt.Errorf("get %q: %w", key, err)
	}
	rc.Close()
	if gi.URL != "" && gi.URL != pi.URL {
		return fmt.Errorf("get %q: ObjectInfo.URL = %q, but put returned %q", key, gi.URL, pi.URL)
	}
	return nil
}

// checkURLPrefix checks that the public URL Put reported for key includes
// the key prefix: storage.PublicURL(PublicBaseURL, KeyPrefix + key) when
// the run knows what Configure reported (and it reported a Bucket), else
// a URL ending with the escaped StoredKey when Put reported one.
func checkURLPrefix(ctx context.Context, key string, pi storage.ObjectInfo) error {
	// An empty Bucket is a plugin built before ConfigureResult said where
	// objects go: its KeyPrefix reads as "" whatever the prefix is.
	if cfg := configuredResult(ctx); cfg != nil && cfg.PublicBaseURL != "" && cfg.Bucket != "" {
		if want := storage.PublicURL(cfg.PublicBaseURL, cfg.KeyPrefix+key); pi.URL != want {
			return fmt.Errorf("put %q: ObjectInfo.URL = %q, want storage.PublicURL(PublicBaseURL, KeyPrefix + key) = %q (Configure reported KeyPrefix %q): the public URL includes the key prefix", key, pi.URL, want, cfg.KeyPrefix)
		}
		return nil
	}
	if pi.StoredKey == "" {
		return nil
	}
	escaped := strings.TrimPrefix(storage.PublicURL("base", pi.StoredKey), "base/")
	if !strings.HasSuffix(pi.URL, "/"+escaped) {
		return fmt.Errorf("put %q: ObjectInfo.URL = %q does not end with the StoredKey %s escaped as storage.PublicURL does (%q): the public URL includes the key prefix", key, pi.URL, display(pi.StoredKey), escaped)
	}
	return nil
}

// checkURL checks that raw is an absolute URL whose path ends with the
// escaped key and that has no query or fragment (so ? and # were escaped).
func checkURL(op, key, raw string) error {
	if raw == "" {
		return fmt.Errorf("%s %q: ObjectInfo.URL is empty, but Describe reports public URLs", op, key)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s %q: ObjectInfo.URL %q is not a valid URL (is the key escaped?): %w", op, key, raw, err)
	}
	if !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("%s %q: ObjectInfo.URL %q is not an absolute URL", op, key, raw)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return fmt.Errorf("%s %q: ObjectInfo.URL %q has a query or fragment: the key's ? and # must be escaped", op, key, raw)
	}
	if !strings.HasSuffix(u.Path, "/"+key) {
		return fmt.Errorf("%s %q: ObjectInfo.URL %q does not end with the escaped key: its path decodes to %q", op, key, raw, u.Path)
	}
	return nil
}

// casePutFromFile: content read from an open *os.File, starting at its
// current offset, round-trips; the file offset ends after the content, as
// a read would leave it. Over the plugin SDK the plugin reads the file
// itself; a shrunk or replaced file must never yield a short object.
func casePutFromFile(ctx context.Context, p storage.Provider, ns string) (err error) {
	key := ns + "/from-file.bin"
	defer cleanup(ctx, p, &err, key)
	const skip, n = 1000, 6<<20 + 3
	dir, err := os.MkdirTemp("", "conformance-")
	if err != nil {
		return fmt.Errorf("making a temporary file: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "result.bin")
	data := genBytes(7, skip+n)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing a temporary file: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening the temporary file: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(skip, io.SeekStart); err != nil {
		return err
	}
	info, err := p.Put(ctx, key, f, storage.PutOptions{ContentType: "video/mp4", Size: n})
	if err != nil {
		return fmt.Errorf("put from a file: %w", err)
	}
	if err := checkInfo("put", info, key, n); err != nil {
		return err
	}
	if off, _ := f.Seek(0, io.SeekCurrent); off != skip+n {
		return fmt.Errorf("after the put the file offset is %d, want %d (after the content)", off, skip+n)
	}
	return verify(ctx, p, object{key: key, size: n, sha: sum(data[skip:]), contentType: "video/mp4"})
}

// caseAbortUploads: a provider declaring Capabilities.AbortUploads
// implements storage.UploadAborter; aborting keys with nothing pending
// returns 0 and no error, never touches a stored object, and a bad key or
// too many keys give InvalidArgument. (No incomplete upload can be left
// through the contract, so aborting a real one is the provider's own test.)
func caseAbortUploads(ctx context.Context, p storage.Provider, ns string) (err error) {
	info, err := describe(ctx, p)
	if err != nil {
		return err
	}
	if !info.Capabilities.AbortUploads {
		return skipf("Describe does not declare AbortUploads (Capabilities.AbortUploads is false)")
	}
	a, ok := p.(storage.UploadAborter)
	if !ok {
		return fmt.Errorf("Describe declares Capabilities.AbortUploads, but the provider (%T) does not implement storage.UploadAborter", p)
	}
	kept, never, sibling := ns+"/kept.png", ns+"/never-written", ns+"/kept.png2"
	defer cleanup(ctx, p, &err, kept)
	data := genBytes(70, 1000)
	if _, err := put(ctx, p, kept, data, "image/png"); err != nil {
		return err
	}
	for _, c := range []struct {
		what string
		keys []string
	}{
		{"no keys", nil},
		{"a key never written", []string{never}},
		{"the key of a stored object, a key never written and a longer key starting with the stored one", []string{kept, never, sibling}},
	} {
		n, err := a.AbortUploads(ctx, c.keys)
		if err != nil || n != 0 {
			return fmt.Errorf("abort uploads of %s (nothing pending): %d, %v; want 0, nil", c.what, n, err)
		}
	}
	if err := verify(ctx, p, object{key: kept, size: int64(len(data)), sha: sum(data), contentType: "image/png"}); err != nil {
		return fmt.Errorf("after AbortUploads of its key, the stored object should be unchanged: %w", err)
	}
	tooMany := make([]string, storage.MaxAbortKeys+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("%s/many-%04d", ns, i)
	}
	for _, c := range []struct {
		what string
		keys []string
	}{
		{"a .. segment among good keys", []string{never, ns + "/a/../b"}},
		{"an empty key", []string{""}},
		{"an empty segment", []string{ns + "/a//b"}},
		{fmt.Sprintf("%d keys, over the limit of %d", len(tooMany), storage.MaxAbortKeys), tooMany},
	} {
		_, err := a.AbortUploads(ctx, c.keys)
		if err := expectCode("abort uploads of "+c.what, err, storage.InvalidArgument); err != nil {
			return err
		}
	}
	if err := verify(ctx, p, object{key: kept, size: int64(len(data)), sha: sum(data), contentType: "image/png"}); err != nil {
		return fmt.Errorf("after refused AbortUploads calls, the stored object should be unchanged: %w", err)
	}
	return nil
}

// otherBucket is the bucket identity of the locations case's Location in
// another bucket.
const otherBucket = "conformance:another-bucket"

// caseLocations: a provider declaring Capabilities.Locations implements
// storage.Locator. Put reports where the object went: a non-empty Bucket
// and StoredKey = KeyPrefix + key (checked against Configured when the run
// has it, else only that StoredKey ends with the key), and a public URL of
// storage.PublicURL(PublicBaseURL, StoredKey). Stat and Get report the
// same; GetAt (whole and, with range reads, a range) and StatAt of that
// Location return the object; a Location in another bucket gives
// FailedPrecondition naming both buckets and touches nothing; a bad
// Location gives InvalidArgument; DeleteAt removes the object, and
// DeleteAt of a missing object succeeds. A provider that does not declare
// it (such as a plugin built with an SDK that predates it, through the
// host's client) answers the three calls with Unimplemented.
func caseLocations(ctx context.Context, p storage.Provider, ns string) (err error) {
	info, err := describe(ctx, p)
	if err != nil {
		return err
	}
	l, isLocator := p.(storage.Locator)
	if !info.Capabilities.Locations {
		if !isLocator {
			return nil // neither declared nor implemented: nothing to call
		}
		return expectLocationsUnimplemented(ctx, l, storage.Location{Bucket: otherBucket, Key: ns + "/never-written"})
	}
	if !isLocator {
		return fmt.Errorf("Describe declares Capabilities.Locations, but the provider (%T) does not implement storage.Locator", p)
	}
	key := ns + "/located/ünï cødé+&=?#%2F%.png"
	defer cleanup(ctx, p, &err, key)
	data := genBytes(80, 3000)
	const ct = "image/png"
	pi, err := put(ctx, p, key, data, ct)
	if err != nil {
		return err
	}
	if err := checkStoredWhere(ctx, pi, key); err != nil {
		return err
	}
	loc := storage.Location{Bucket: pi.Bucket, Key: pi.StoredKey}
	prefix := strings.TrimSuffix(pi.StoredKey, key)
	want := object{key: key, size: int64(len(data)), sha: sum(data), contentType: ct}

	st, err := p.Stat(ctx, key)
	if err != nil {
		return fmt.Errorf("stat %q: %w", key, err)
	}
	if err := sameWhere("stat", key, st, pi); err != nil {
		return err
	}
	rc, gi, err := p.Get(ctx, key, storage.GetOptions{Offset: 0, Length: -1})
	if err != nil {
		return fmt.Errorf("get %q: %w", key, err)
	}
	rc.Close()
	if err := sameWhere("get", key, gi, pi); err != nil {
		return err
	}
	if err := verifyAt(ctx, l, loc, want, pi, info.Capabilities.RangeReads, data); err != nil {
		return err
	}

	// Another bucket: refused, and the object stays.
	other := storage.Location{Bucket: otherBucket, Key: pi.StoredKey}
	if other.Bucket == pi.Bucket {
		other.Bucket += "-2"
	}
	refused := func(op string, err error) error {
		what := fmt.Sprintf("%s of the object's key in another bucket (%q, the object is in %q)", op, other.Bucket, pi.Bucket)
		if err := expectCode(what, err, storage.FailedPrecondition); err != nil {
			return err
		}
		msg := err.Error()
		if !strings.Contains(msg, other.Bucket) || !strings.Contains(strings.ReplaceAll(msg, other.Bucket, ""), pi.Bucket) {
			return fmt.Errorf("%s: error %q does not name both buckets", what, msg)
		}
		return nil
	}
	rc, _, err = l.GetAt(ctx, other, storage.GetOptions{Offset: 0, Length: -1})
	if rc != nil {
		rc.Close()
	}
	if err := refused("get at", err); err != nil {
		return err
	}
	_, err = l.StatAt(ctx, other)
	if err := refused("stat at", err); err != nil {
		return err
	}
	if err := refused("delete at", l.DeleteAt(ctx, other)); err != nil {
		return err
	}
	if err := verify(ctx, p, want); err != nil {
		return fmt.Errorf("after GetAt, StatAt and DeleteAt in another bucket were refused, the object should be unchanged: %w", err)
	}

	// Bad Locations: refused before anything is touched.
	for _, bad := range []struct {
		what string
		loc  storage.Location
	}{
		{"an empty bucket", storage.Location{Bucket: "", Key: pi.StoredKey}},
		{"a key with a .. segment", storage.Location{Bucket: pi.Bucket, Key: pi.StoredKey + "/../x"}},
		{"an empty key", storage.Location{Bucket: pi.Bucket, Key: ""}},
	} {
		_, err := l.StatAt(ctx, bad.loc)
		if err := expectCode("stat at a location with "+bad.what, err, storage.InvalidArgument); err != nil {
			return err
		}
		rc, _, err := l.GetAt(ctx, bad.loc, storage.GetOptions{Offset: 0, Length: -1})
		if rc != nil {
			rc.Close()
		}
		if err := expectCode("get at a location with "+bad.what, err, storage.InvalidArgument); err != nil {
			return err
		}
		if err := expectCode("delete at a location with "+bad.what, l.DeleteAt(ctx, bad.loc), storage.InvalidArgument); err != nil {
			return err
		}
	}
	if err := verify(ctx, p, want); err != nil {
		return fmt.Errorf("after refused calls at bad locations, the object should be unchanged: %w", err)
	}

	// DeleteAt removes it; deleting a missing object succeeds.
	if err := l.DeleteAt(ctx, loc); err != nil {
		return fmt.Errorf("delete at %q in %q: %w", loc.Key, loc.Bucket, err)
	}
	if err := expectNotFound(ctx, p, key, "after DeleteAt of the location Put reported"); err != nil {
		return err
	}
	if _, err := l.StatAt(ctx, loc); err == nil || !storage.IsNotFound(err) {
		return fmt.Errorf("stat at %q in %q after DeleteAt: %v (code %q), want code %q", loc.Key, loc.Bucket, err, storage.Code(err), storage.NotFound)
	}
	rc, _, err = l.GetAt(ctx, loc, storage.GetOptions{Offset: 0, Length: -1})
	if rc != nil {
		rc.Close()
	}
	if err == nil || !storage.IsNotFound(err) {
		return fmt.Errorf("get at %q in %q after DeleteAt: %v (code %q), want code %q", loc.Key, loc.Bucket, err, storage.Code(err), storage.NotFound)
	}
	for _, missing := range []storage.Location{loc, {Bucket: pi.Bucket, Key: prefix + ns + "/never-written"}} {
		if err := l.DeleteAt(ctx, missing); err != nil {
			return fmt.Errorf("delete at %q in %q, a missing object: %w; want success", missing.Key, missing.Bucket, err)
		}
	}
	return nil
}

// expectLocationsUnimplemented checks GetAt, StatAt and DeleteAt of loc
// all give Unimplemented.
func expectLocationsUnimplemented(ctx context.Context, l storage.Locator, loc storage.Location) error {
	const why = " while Describe does not declare Capabilities.Locations"
	rc, _, err := l.GetAt(ctx, loc, storage.GetOptions{Offset: 0, Length: -1})
	if rc != nil {
		rc.Close()
	}
	if err := expectCode("get at"+why, err, storage.Unimplemented); err != nil {
		return err
	}
	_, err = l.StatAt(ctx, loc)
	if err := expectCode("stat at"+why, err, storage.Unimplemented); err != nil {
		return err
	}
	return expectCode("delete at"+why, l.DeleteAt(ctx, loc), storage.Unimplemented)
}

// checkStoredWhere checks where Put says it stored key: a non-empty
// Bucket, a StoredKey that is a valid key and KeyPrefix + key, and the
// public URL built from it; against Configured when the run has it.
func checkStoredWhere(ctx context.Context, pi storage.ObjectInfo, key string) error {
	const declared = ", but Describe declares Capabilities.Locations"
	if pi.Bucket == "" {
		return fmt.Errorf("put %q: ObjectInfo.Bucket is empty%s; want the identity of the bucket it went to", key, declared)
	}
	if pi.StoredKey == "" {
		return fmt.Errorf("put %q: ObjectInfo.StoredKey is empty%s; want the full key it was stored at", key, declared)
	}
	if err := storage.ValidateKey(pi.StoredKey); err != nil {
		return fmt.Errorf("put %q: ObjectInfo.StoredKey %s is not a valid key: %w", key, display(pi.StoredKey), err)
	}
	if cfg := configuredResult(ctx); cfg != nil {
		if cfg.Bucket == "" {
			return fmt.Errorf("Configure reported an empty Bucket%s; want the identity of the bucket new objects go to", declared)
		}
		if pi.Bucket != cfg.Bucket {
			return fmt.Errorf("put %q: ObjectInfo.Bucket = %q, but Configure reported Bucket %q", key, pi.Bucket, cfg.Bucket)
		}
		if want := cfg.KeyPrefix + key; pi.StoredKey != want {
			return fmt.Errorf("put %q: ObjectInfo.StoredKey = %s, want KeyPrefix + key = %s (Configure reported KeyPrefix %q)", key, display(pi.StoredKey), display(want), cfg.KeyPrefix)
		}
		if cfg.PublicBaseURL != "" {
			if want := storage.PublicURL(cfg.PublicBaseURL, pi.StoredKey); pi.URL != want {
				return fmt.Errorf("put %q: ObjectInfo.URL = %q, want storage.PublicURL(PublicBaseURL, StoredKey) = %q", key, pi.URL, want)
			}
		}
		return nil
	}
	if !strings.HasSuffix(pi.StoredKey, key) {
		return fmt.Errorf("put %q: ObjectInfo.StoredKey = %s does not end with the key; want KeyPrefix + key", key, display(pi.StoredKey))
	}
	if pi.URL != "" {
		escaped := strings.TrimPrefix(storage.PublicURL("base", pi.StoredKey), "base/")
		if !strings.HasSuffix(pi.URL, "/"+escaped) {
			return fmt.Errorf("put %q: ObjectInfo.URL = %q does not end with the StoredKey escaped as storage.PublicURL does (%q)", key, pi.URL, escaped)
		}
	}
	return nil
}

// sameWhere checks that op reported the Bucket and StoredKey Put did.
func sameWhere(op, key string, got, put storage.ObjectInfo) error {
	if got.Bucket != put.Bucket || got.StoredKey != put.StoredKey {
		return fmt.Errorf("%s %q: ObjectInfo.Bucket %q and StoredKey %s, but put reported %q and %s", op, key, got.Bucket, display(got.StoredKey), put.Bucket, display(put.StoredKey))
	}
	return nil
}

// verifyAt checks StatAt and GetAt of loc (the location Put reported as
// pi) against want, and a ranged GetAt when the provider reads ranges.
func verifyAt(ctx context.Context, l storage.Locator, loc storage.Location, want object, pi storage.ObjectInfo, ranges bool, data []byte) error {
	at := fmt.Sprintf("at %s in %q", display(loc.Key), loc.Bucket)
	check := func(op string, got storage.ObjectInfo, size int64) error {
		if err := checkInfo(op, got, want.key, size); err != nil {
			return fmt.Errorf("%w (ObjectInfo.Key is the key Get would take: StoredKey without the current KeyPrefix)", err)
		}
		if got.ContentType != want.contentType {
			return fmt.Errorf("%s: ContentType = %q, want %q", op, got.ContentType, want.contentType)
		}
		if got.Bucket != loc.Bucket || got.StoredKey != loc.Key {
			return fmt.Errorf("%s: ObjectInfo.Bucket %q and StoredKey %s, want the location's", op, got.Bucket, display(got.StoredKey))
		}
		if got.URL != "" && got.URL != pi.URL {
			return fmt.Errorf("%s: ObjectInfo.URL = %q, but put returned %q", op, got.URL, pi.URL)
		}
		return nil
	}
	st, err := l.StatAt(ctx, loc)
	if err != nil {
		return fmt.Errorf("stat %s, the location put reported: %w", at, err)
	}
	if err := check("stat "+at, st, want.size); err != nil {
		return err
	}
	rc, gi, err := l.GetAt(ctx, loc, storage.GetOptions{Offset: 0, Length: -1})
	if err != nil {
		return fmt.Errorf("get %s, the location put reported: %w", at, err)
	}
	err = check("get "+at, gi, want.size)
	if err == nil {
		if rerr := readCheck(rc, want.size, want.sha); rerr != nil {
			err = fmt.Errorf("get %s: %w", at, rerr)
		}
	}
	rc.Close()
	if err != nil || !ranges {
		return err
	}
	const off, n = 100, 50
	op := fmt.Sprintf("get %s (Offset %d, Length %d)", at, off, n)
	rc, gi, err = l.GetAt(ctx, loc, storage.GetOptions{Offset: off, Length: n})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer rc.Close()
	if err := check(op, gi, want.size); err != nil {
		return fmt.Errorf("%w (ObjectInfo.Size is the full object size, even for a range)", err)
	}
	if err := readCheck(rc, n, sum(data[off:off+n])); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}
