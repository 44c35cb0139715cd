package storage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/storage"
)

// bare is a provider with no checks of its own: it stores whatever its
// reader yields up to io.EOF, or, with stopAtSize, exactly the declared size.
type bare struct {
	stopAtSize bool
	objects    map[string][]byte
	calls      int
}

func (b *bare) Describe(context.Context) (storage.Info, error) { return storage.Info{ID: "bare"}, nil }
func (b *bare) ValidateSettings(context.Context, storage.Settings) ([]storage.FieldError, error) {
	return nil, nil
}
func (b *bare) Configure(context.Context, storage.Settings) (storage.ConfigureResult, error) {
	return storage.ConfigureResult{}, nil
}
func (b *bare) TestConnection(context.Context) (storage.TestResult, error) {
	return storage.TestResult{OK: true}, nil
}
func (b *bare) Health(context.Context) (storage.Health, error) { return storage.Health{OK: true}, nil }

func (b *bare) Put(_ context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	b.calls++
	var data []byte
	var err error
	if b.stopAtSize && opts.Size >= 0 {
		data = make([]byte, opts.Size)
		_, err = io.ReadFull(r, data)
	} else {
		data, err = io.ReadAll(r)
	}
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	if b.objects == nil {
		b.objects = map[string][]byte{}
	}
	b.objects[key] = data
	return storage.ObjectInfo{Key: key, Size: int64(len(data))}, nil
}

func (b *bare) Get(_ context.Context, key string, _ storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	b.calls++
	return io.NopCloser(bytes.NewReader(b.objects[key])), storage.ObjectInfo{Key: key}, nil
}
func (b *bare) Stat(_ context.Context, key string) (storage.ObjectInfo, error) {
	b.calls++
	return storage.ObjectInfo{Key: key}, nil
}
func (b *bare) Delete(context.Context, string) error { b.calls++; return nil }

type bareAborter struct{ *bare }

func (bareAborter) AbortUploads(_ context.Context, keys []string) (int, error) { return len(keys), nil }

type bareLocator struct{ *bare }

func (bareLocator) GetAt(context.Context, storage.Location, storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	return io.NopCloser(strings.NewReader("")), storage.ObjectInfo{}, nil
}
func (bareLocator) StatAt(context.Context, storage.Location) (storage.ObjectInfo, error) {
	return storage.ObjectInfo{}, nil
}
func (bareLocator) DeleteAt(context.Context, storage.Location) error { return nil }

type bareBoth struct{ *bare }

func (bareBoth) AbortUploads(_ context.Context, keys []string) (int, error) { return len(keys), nil }
func (bareBoth) GetAt(context.Context, storage.Location, storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	return io.NopCloser(strings.NewReader("")), storage.ObjectInfo{}, nil
}
func (bareBoth) StatAt(context.Context, storage.Location) (storage.ObjectInfo, error) {
	return storage.ObjectInfo{}, nil
}
func (bareBoth) DeleteAt(context.Context, storage.Location) error { return nil }

type guardedMark struct{ *bare }

func (guardedMark) GuardedByContract() {}

func digest(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func TestGuardPutChecks(t *testing.T) {
	tests := []struct {
		name    string
		content string
		opts    storage.PutOptions
		stop    bool
		want    storage.ErrorCode // Unknown with wantOK false means any error
		wantOK  bool
	}{
		{"exact size", "hello", storage.PutOptions{Size: 5}, false, 0, true},
		{"unknown size", "hello", storage.PutOptions{Size: -1}, false, 0, true},
		{"right sha256", "hello", storage.PutOptions{Size: 5, SHA256: digest("hello")}, false, 0, true},
		{"short", "hell", storage.PutOptions{Size: 5}, false, storage.InvalidArgument, false},
		{"long", "hello!", storage.PutOptions{Size: 5}, false, storage.InvalidArgument, false},
		{"long, zero declared", "x", storage.PutOptions{Size: 0}, false, storage.InvalidArgument, false},
		{"wrong sha256", "hello", storage.PutOptions{Size: 5, SHA256: digest("jello")}, false, storage.InvalidArgument, false},
		{"wrong sha256, size unknown", "hello", storage.PutOptions{Size: -1, SHA256: digest("jello")}, false, storage.InvalidArgument, false},
		{"provider stops at the declared size", "hello", storage.PutOptions{Size: 5}, true, storage.Unknown, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &bare{stopAtSize: tc.stop}
			_, err := storage.Guard(b).Put(t.Context(), "a/b", strings.NewReader(tc.content), tc.opts)
			if tc.wantOK {
				if err != nil {
					t.Fatalf("put: %v, want success", err)
				}
				if got := string(b.objects["a/b"]); got != tc.content {
					t.Errorf("stored %q, want %q", got, tc.content)
				}
				return
			}
			if err == nil {
				t.Fatal("put succeeded, want an error")
			}
			if got := storage.Code(err); got != tc.want {
				t.Errorf("error %v has code %v, want %v", err, got, tc.want)
			}
			if !tc.stop {
				if _, ok := b.objects["a/b"]; ok {
					t.Errorf("the provider stored an object; the guard should have failed its read")
				}
			}
		})
	}
}

func TestGuardPassesSHA256On(t *testing.T) {
	var got storage.PutOptions
	p := &optsSpy{bare: &bare{}, got: &got}
	want := digest("hello")
	if _, err := storage.Guard(p).Put(t.Context(), "k", strings.NewReader("hello"), storage.PutOptions{Size: 5, SHA256: want}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.SHA256, want) || got.Size != 5 {
		t.Errorf("provider got %+v, want Size 5 and the sha256", got)
	}
}

type optsSpy struct {
	*bare
	got *storage.PutOptions
}

func (s *optsSpy) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	*s.got = opts
	return s.bare.Put(ctx, key, r, opts)
}

func TestGuardRefusesBadKeysWithoutCallingProvider(t *testing.T) {
	b := &bare{}
	g := storage.Guard(b)
	ctx := t.Context()
	for _, key := range []string{"", "/a", "a//b", "a/../b", "a\x00b"} {
		_, err1 := g.Put(ctx, key, strings.NewReader("x"), storage.PutOptions{Size: 1})
		_, _, err2 := g.Get(ctx, key, storage.GetOptions{Length: -1})
		_, err3 := g.Stat(ctx, key)
		err4 := g.Delete(ctx, key)
		for _, err := range []error{err1, err2, err3, err4} {
			if storage.Code(err) != storage.InvalidArgument {
				t.Errorf("key %q: error %v, want InvalidArgument", key, err)
			}
		}
	}
	if b.calls != 0 {
		t.Errorf("the provider was called %d times for refused keys", b.calls)
	}
}

func TestGuardKeepsOptionalCalls(t *testing.T) {
	b := &bare{}
	for _, tc := range []struct {
		p               storage.Provider
		aborts, locates bool
	}{
		{b, false, false},
		{bareAborter{b}, true, false},
		{bareLocator{b}, false, true},
		{bareBoth{b}, true, true},
	} {
		g := storage.Guard(tc.p)
		a, aborts := g.(storage.UploadAborter)
		l, locates := g.(storage.Locator)
		if aborts != tc.aborts || locates != tc.locates {
			t.Errorf("Guard(%T): aborts %v locates %v, want %v %v", tc.p, aborts, locates, tc.aborts, tc.locates)
		}
		if aborts {
			if _, err := a.AbortUploads(t.Context(), []string{"ok", "a//b"}); storage.Code(err) != storage.InvalidArgument {
				t.Errorf("AbortUploads with a bad key: %v, want InvalidArgument", err)
			}
		}
		if locates {
			if _, err := l.StatAt(t.Context(), storage.Location{Key: "k"}); storage.Code(err) != storage.InvalidArgument {
				t.Errorf("StatAt without a bucket: %v, want InvalidArgument", err)
			}
		}
		if again := storage.Guard(g); again != g {
			t.Errorf("Guard of a guarded %T wrapped it again", tc.p)
		}
	}
	m := guardedMark{b}
	if g := storage.Guard(m); g != storage.Provider(m) {
		t.Errorf("Guard of a storage.Guarded provider wrapped it")
	}
}

// TestGuardRefusesNegativeOffset: Get and GetAt with a negative Offset
// give InvalidArgument and the provider is not called.
func TestGuardRefusesNegativeOffset(t *testing.T) {
	b := &bare{}
	g := storage.Guard(bareLocator{b})
	_, _, err := g.Get(t.Context(), "a/b", storage.GetOptions{Offset: -1, Length: -1})
	if storage.Code(err) != storage.InvalidArgument || !strings.Contains(err.Error(), "negative offset -1") {
		t.Errorf("get with Offset -1: %v, want InvalidArgument naming the offset", err)
	}
	_, _, err = g.(storage.Locator).GetAt(t.Context(), storage.Location{Bucket: "b", Key: "a/b"}, storage.GetOptions{Offset: -5, Length: 3})
	if storage.Code(err) != storage.InvalidArgument || !strings.Contains(err.Error(), "negative offset -5") {
		t.Errorf("get at with Offset -5: %v, want InvalidArgument naming the offset", err)
	}
	if b.calls != 0 {
		t.Errorf("the provider was called %d times", b.calls)
	}
	rc, _, err := g.Get(t.Context(), "a/b", storage.GetOptions{Offset: 0, Length: -1})
	if err != nil {
		t.Fatalf("get with Offset 0: %v", err)
	}
	rc.Close()
}
