package storage_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/storage"
)

// s3ish answers reads as S3 does: a range that starts at or past the end
// is refused (HTTP 416, here InvalidArgument), and a zero-length read is
// answered empty without looking at the offset.
type s3ish struct {
	bare
	data  string
	stats int
}

func (s *s3ish) Get(_ context.Context, key string, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	size := int64(len(s.data))
	if opts.Length == 0 {
		return io.NopCloser(strings.NewReader("")), storage.ObjectInfo{Key: key}, nil
	}
	if opts.Offset >= size {
		return nil, storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "get %s: range not satisfiable", key)
	}
	return io.NopCloser(strings.NewReader(s.data[opts.Offset:])), storage.ObjectInfo{Key: key, Size: size}, nil
}

func (s *s3ish) Stat(_ context.Context, key string) (storage.ObjectInfo, error) {
	s.stats++
	return storage.ObjectInfo{Key: key, Size: int64(len(s.data))}, nil
}

// TestGuardGivesTheEndOfObjectRules: through Guard, a provider that
// answers as S3 does follows GetOptions' end-of-object rules, and is
// stat'ed only where they need the size.
func TestGuardGivesTheEndOfObjectRules(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		data      string
		opts      storage.GetOptions
		want      string
		wantCode  storage.ErrorCode // Unknown: success
		wantStats int
	}{
		{"whole object", "0123456789", storage.GetOptions{Length: -1}, "0123456789", storage.Unknown, 0},
		{"a middle part", "0123456789", storage.GetOptions{Offset: 4, Length: -1}, "456789", storage.Unknown, 0},
		{"at the end", "0123456789", storage.GetOptions{Offset: 10, Length: -1}, "", storage.Unknown, 1},
		{"at the end, Length 3", "0123456789", storage.GetOptions{Offset: 10, Length: 3}, "", storage.Unknown, 1},
		{"an empty object with a Length", "", storage.GetOptions{Offset: 0, Length: 5}, "", storage.Unknown, 1},
		{"past the end", "0123456789", storage.GetOptions{Offset: 11, Length: -1}, "", storage.InvalidArgument, 1},
		{"past the end, Length 0", "0123456789", storage.GetOptions{Offset: 11, Length: 0}, "", storage.InvalidArgument, 1},
		{"at the end, Length 0", "0123456789", storage.GetOptions{Offset: 10, Length: 0}, "", storage.Unknown, 1},
		{"inside, Length 0", "0123456789", storage.GetOptions{Offset: 3, Length: 0}, "", storage.Unknown, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &s3ish{data: tc.data}
			rc, info, err := storage.Guard(p).Get(ctx, "a/b", tc.opts)
			if tc.wantCode != storage.Unknown {
				if storage.Code(err) != tc.wantCode {
					t.Fatalf("err = %v, want code %v", err, tc.wantCode)
				}
			} else {
				if err != nil {
					t.Fatalf("err = %v, want success", err)
				}
				got, _ := io.ReadAll(rc)
				rc.Close()
				if string(got) != tc.want || info.Size != int64(len(tc.data)) {
					t.Fatalf("read %q with Size %d, want %q with Size %d", got, info.Size, tc.want, len(tc.data))
				}
			}
			if p.stats != tc.wantStats {
				t.Errorf("%d stats, want %d", p.stats, tc.wantStats)
			}
		})
	}
}

// TestReadAtEndKeepsOtherAnswers: errors other than InvalidArgument, and
// InvalidArgument when the read did not start at the end, come back as
// they were.
func TestReadAtEndKeepsOtherAnswers(t *testing.T) {
	ctx := context.Background()
	stat := func(context.Context) (storage.ObjectInfo, error) { return storage.ObjectInfo{Size: 10}, nil }
	plain := errors.New("boom")
	if _, _, err := storage.ReadAtEnd(ctx, storage.GetOptions{Offset: 10, Length: -1}, nil, storage.ObjectInfo{}, plain, stat); err != plain {
		t.Errorf("a plain error became %v", err)
	}
	bad := storage.Errorf(storage.InvalidArgument, "bad")
	if _, _, err := storage.ReadAtEnd(ctx, storage.GetOptions{Offset: 4, Length: -1}, nil, storage.ObjectInfo{}, bad, stat); err != bad {
		t.Errorf("InvalidArgument inside the object became %v", err)
	}
	notFound := storage.Errorf(storage.NotFound, "gone")
	failing := func(context.Context) (storage.ObjectInfo, error) { return storage.ObjectInfo{}, notFound }
	if _, _, err := storage.ReadAtEnd(ctx, storage.GetOptions{Offset: 10, Length: -1}, nil, storage.ObjectInfo{}, bad, failing); err != bad {
		t.Errorf("with a failing stat, the refusal became %v", err)
	}
}
