package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/magicads/r2storage/shared/storage"
)

const (
	kib = 1 << 10
	mib = 1 << 20

	// cleanupTimeout bounds the deletes a case runs when it ends.
	cleanupTimeout = 30 * time.Second
	// waitTimeout bounds the waits inside a case (a cancelled put returning,
	// a reader being closed).
	waitTimeout = time.Minute
)

// genReader returns n deterministic pseudo-random bytes derived from seed,
// generated as they are read.
func genReader(seed uint64, n int64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:8], seed)
	copy(s[8:], "magicads storage conformance")
	return io.LimitReader(rand.NewChaCha8(s), n)
}

// genBytes returns the n bytes genReader(seed, n) yields; for small objects.
func genBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = io.ReadFull(genReader(seed, int64(n)), b)
	return b
}

// genSum returns the sha256 of the bytes genReader(seed, n) yields.
func genSum(seed uint64, n int64) []byte {
	h := sha256.New()
	_, _ = io.Copy(h, genReader(seed, n))
	return h.Sum(nil)
}

// genRangeSum returns the sha256 of bytes [off, off+length) of
// genReader(seed, n), clamped to n.
func genRangeSum(seed uint64, n, off, length int64) []byte {
	r := genReader(seed, n)
	_, _ = io.CopyN(io.Discard, r, off)
	if length >= 0 {
		r = io.LimitReader(r, length)
	}
	h := sha256.New()
	_, _ = io.Copy(h, r)
	return h.Sum(nil)
}

// sum returns the sha256 of b.
func sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// cleanupContext returns a short context for end-of-case deletes that
// outlives the cancellation of ctx.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// cleanup deletes keys with a fresh short context and adds any failure to
// *errp, so a case reports objects it could not remove. NotFound and
// InvalidArgument (a key the provider refuses, so cannot hold) are not
// failures.
func cleanup(ctx context.Context, p storage.Provider, errp *error, keys ...string) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	var errs []error
	for _, k := range keys {
		err := p.Delete(cctx, k)
		if err != nil && !storage.IsNotFound(err) && storage.Code(err) != storage.InvalidArgument {
			errs = append(errs, fmt.Errorf("cleanup: delete %s: %w", display(k), err))
		}
	}
	if len(errs) == 0 {
		return
	}
	if IsSkip(*errp) {
		*errp = nil
	}
	*errp = errors.Join(append([]error{*errp}, errs...)...)
}

// put writes data at key with the given content type and a known size.
func put(ctx context.Context, p storage.Provider, key string, data []byte, contentType string) (storage.ObjectInfo, error) {
	info, err := p.Put(ctx, key, bytes.NewReader(data), storage.PutOptions{ContentType: contentType, Size: int64(len(data))})
	if err != nil {
		return info, fmt.Errorf("put %q (%d bytes): %w", key, len(data), err)
	}
	if err := checkInfo("put", info, key, int64(len(data))); err != nil {
		return info, err
	}
	return info, nil
}

// checkInfo checks the Key and Size of an ObjectInfo returned by op.
func checkInfo(op string, info storage.ObjectInfo, key string, size int64) error {
	if info.Key != key {
		return fmt.Errorf("%s %s: ObjectInfo.Key = %s, want the caller's key", op, display(key), display(info.Key))
	}
	if info.Size != size {
		return fmt.Errorf("%s %s: ObjectInfo.Size = %d, want %d", op, display(key), info.Size, size)
	}
	return nil
}

// object is what a stored object should look like.
type object struct {
	key  string
	size int64
	sha  []byte
	// contentType is checked when not empty.
	contentType string
}

// verify checks the object with Stat and a full Get: key, size, content type
// and sha256 of the content.
func verify(ctx context.Context, p storage.Provider, want object) error {
	st, err := p.Stat(ctx, want.key)
	if err != nil {
		return fmt.Errorf("stat %q after a successful put: %w", want.key, err)
	}
	if err := checkInfo("stat", st, want.key, want.size); err != nil {
		return err
	}
	if want.contentType != "" && st.ContentType != want.contentType {
		return fmt.Errorf("stat %q: ContentType = %q, want %q", want.key, st.ContentType, want.contentType)
	}
	rc, info, err := p.Get(ctx, want.key, storage.GetOptions{Offset: 0, Length: -1})
	if err != nil {
		return fmt.Errorf("get %q after a successful put: %w", want.key, err)
	}
	defer rc.Close()
	if err := checkInfo("get", info, want.key, want.size); err != nil {
		return err
	}
	if want.contentType != "" && info.ContentType != want.contentType {
		return fmt.Errorf("get %q: ContentType = %q, want %q", want.key, info.ContentType, want.contentType)
	}
	if err := readCheck(rc, want.size, want.sha); err != nil {
		return fmt.Errorf("get %q: %w", want.key, err)
	}
	if err := rc.Close(); err != nil {
		return fmt.Errorf("get %q: closing the reader after reading it all: %w", want.key, err)
	}
	return nil
}

// readCheck reads r to the end (but never more than size+1 bytes) and checks
// it yields size bytes with the given sha256.
func readCheck(r io.Reader, size int64, wantSHA []byte) error {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, size+1))
	if err != nil {
		return fmt.Errorf("reading the content after %d bytes: %w", n, err)
	}
	if n != size {
		more := ""
		if n > size {
			more = " or more"
		}
		return fmt.Errorf("read %d bytes%s, want %d", n, more, size)
	}
	if got := h.Sum(nil); !bytes.Equal(got, wantSHA) {
		return fmt.Errorf("content differs from what was put: sha256 %x, want %x", got, wantSHA)
	}
	return nil
}

// expectNotFound checks that Stat and Get of key both report NotFound.
func expectNotFound(ctx context.Context, p storage.Provider, key, why string) error {
	return expectAbsent(ctx, p, key, why, false)
}

// expectAbsent checks that Stat and Get of key both report NotFound, or,
// when mayRefuse, InvalidArgument (a key at the length limit that a provider
// adding a prefix cannot store).
func expectAbsent(ctx context.Context, p storage.Provider, key, why string, mayRefuse bool) error {
	absent := func(err error) bool {
		return storage.IsNotFound(err) || (mayRefuse && storage.Code(err) == storage.InvalidArgument)
	}
	if info, err := p.Stat(ctx, key); err == nil {
		return fmt.Errorf("stat %s %s: found an object of %d bytes, want a NotFound error", display(key), why, info.Size)
	} else if !absent(err) {
		return fmt.Errorf("stat %s %s: error with code %q (%w), want code %q", display(key), why, storage.Code(err), err, storage.NotFound)
	}
	rc, info, err := p.Get(ctx, key, storage.GetOptions{Offset: 0, Length: -1})
	if rc != nil {
		rc.Close()
	}
	if err == nil {
		return fmt.Errorf("get %s %s: found an object of %d bytes, want a NotFound error", display(key), why, info.Size)
	} else if !absent(err) {
		return fmt.Errorf("get %s %s: error with code %q (%w), want code %q", display(key), why, storage.Code(err), err, storage.NotFound)
	}
	return nil
}

// expectCode checks that err carries code.
func expectCode(op string, err error, code storage.ErrorCode) error {
	if err == nil {
		return fmt.Errorf("%s: succeeded, want an error with code %q", op, code)
	}
	if got := storage.Code(err); got != code {
		return fmt.Errorf("%s: error with code %q (%w), want code %q", op, got, err, code)
	}
	return nil
}

// describe returns the provider's Info.
func describe(ctx context.Context, p storage.Provider) (storage.Info, error) {
	info, err := p.Describe(ctx)
	if err != nil {
		return info, fmt.Errorf("describe: %w", err)
	}
	return info, nil
}

// fitsMaxSize returns a skip error when the provider states a maximum object
// size below n.
func fitsMaxSize(ctx context.Context, p storage.Provider, n int64) error {
	info, err := describe(ctx, p)
	if err != nil {
		return err
	}
	if m := info.Capabilities.MaxObjectSize; m > 0 && m < n {
		return skipf("provider accepts objects of at most %d bytes, this case needs %d", m, n)
	}
	return nil
}

// display quotes a key for a message, shortening a long one.
func display(key string) string {
	const max = 100
	if len(key) <= max {
		return strconv.Quote(key)
	}
	return fmt.Sprintf("%s…(%d bytes)", strconv.Quote(key[:max-20]), len(key))
}
