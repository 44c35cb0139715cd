package archive

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// FuzzUnpack feeds Unpack arbitrary gzip streams (compressed=true) or
// arbitrary tar streams gzipped by the harness (compressed=false, so the
// fuzzer mutates tar structure rather than breaking the gzip checksum). It
// checks that Unpack never panics, only ever fails with ErrUnsafe on
// in-memory input, leaves its directory empty on failure, writes only
// what it reports, with the allowed modes, and never writes outside it.
func FuzzUnpack(f *testing.F) {
	good, _ := goodArchive(f)
	f.Add(good, true)
	for _, c := range hostileCorpus(f) {
		f.Add(c.stream(f), true)
		if c.tar != nil && len(c.tar) <= 64<<10 {
			f.Add(c.tar, false)
		}
	}
	posix := runtime.GOOS != "windows"
	lim := Limits{MaxFiles: 32, MaxFileBytes: 1 << 20, MaxTotalBytes: 2 << 20}
	f.Fuzz(func(t *testing.T, data []byte, compressed bool) {
		stream := data
		if !compressed {
			// Stored blocks: cheap, and the tar bytes pass through as given.
			var b bytes.Buffer
			zw, err := gzip.NewWriterLevel(&b, gzip.NoCompression)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = zw.Write(data)
			_ = zw.Close()
			stream = b.Bytes()
		}
		parent := t.TempDir()
		dir := filepath.Join(parent, "plugin")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		files, err := Unpack(context.Background(), bytes.NewReader(stream), dir, lim)

		// Nothing outside dir.
		sib, rerr := os.ReadDir(parent)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if len(sib) != 1 || sib[0].Name() != "plugin" {
			t.Fatalf("wrote outside the plugin directory: %v", sib)
		}
		if err != nil {
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("in-memory input failed without ErrUnsafe: %v", err)
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Reason == "" {
				t.Fatalf("error %v is not an *Error with a reason", err)
			}
			if files != nil {
				t.Fatalf("files = %q with error %v", files, err)
			}
			assertEmpty(t, dir)
			return
		}
		// Exactly the reported files, as regular files with allowed modes,
		// in directories 0755; no links or special files.
		var got []string
		werr := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			mode := info.Mode()
			switch {
			case mode.IsDir():
				if posix && mode.Perm() != 0o755 {
					t.Errorf("%s: directory mode %v", p, mode)
				}
			case mode.IsRegular():
				if posix && mode.Perm() != 0o644 && mode.Perm() != 0o755 {
					t.Errorf("%s: file mode %v", p, mode)
				}
				rel, _ := filepath.Rel(dir, p)
				got = append(got, filepath.ToSlash(rel))
			default:
				t.Errorf("%s: unexpected %v", p, mode)
			}
			return nil
		})
		if werr != nil {
			t.Fatal(werr)
		}
		want := slices.Clone(files)
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("on disk %q, reported %q", got, files)
		}
		if len(files) > lim.MaxFiles {
			t.Fatalf("%d files, limit %d", len(files), lim.MaxFiles)
		}
	})
}
