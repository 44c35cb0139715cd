package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// assertEmpty fails unless dir exists and is empty.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	if len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("%s is not empty after a refusal: %q", dir, names)
	}
}

// tree lists everything under dir (slash paths, directories with a
// trailing "/"), with modes, without following symbolic links.
func tree(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	got := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			rel += "/"
		}
		got[rel] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestRefusals(t *testing.T) {
	for _, c := range hostileCorpus(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			files, err := Unpack(context.Background(), bytes.NewReader(c.stream(t)), dir, c.lim)
			if err == nil {
				t.Fatalf("accepted; wrote %q", files)
			}
			t.Log(err)
			if files != nil {
				t.Errorf("files = %q, want nil on error", files)
			}
			if !errors.Is(err, ErrUnsafe) {
				t.Errorf("errors.Is(%v, ErrUnsafe) = false", err)
			}
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if !strings.Contains(ae.Reason, c.reason) {
				t.Errorf("Reason = %q, want it to contain %q", ae.Reason, c.reason)
			}
			if !c.anyEntry && ae.Entry != c.entry {
				t.Errorf("Entry = %q, want %q", ae.Entry, c.entry)
			}
			msg := err.Error()
			if !strings.Contains(msg, ae.Reason) {
				t.Errorf("message %q does not contain the reason %q", msg, ae.Reason)
			}
			if ae.Entry != "" && !strings.Contains(msg, fmt.Sprintf("archive entry %q: ", ae.Entry)) {
				t.Errorf("message %q does not name the entry %q", msg, ae.Entry)
			}
			if strings.ContainsAny(msg, "\x00\x01\x1b\n\x7f") {
				t.Errorf("message %q holds raw control characters", msg)
			}
			assertEmpty(t, dir)
		})
	}
}

func TestErrorMessage(t *testing.T) {
	dir := t.TempDir()
	_, err := Unpack(context.Background(), bytes.NewReader(gz(t, new(rawTar).file("../evil", 0o644, "x").end())), dir, Limits{})
	want := `archive entry "../evil": path escapes the plugin directory`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	e := &Error{Reason: "corrupt or truncated archive", Err: io.ErrUnexpectedEOF}
	if got, want := e.Error(), "plugin archive: corrupt or truncated archive: unexpected EOF"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(e, io.ErrUnexpectedEOF) || !errors.Is(e, ErrUnsafe) {
		t.Errorf("*Error must match both its cause and ErrUnsafe")
	}
}

func TestGoodArchive(t *testing.T) {
	stream, want := goodArchive(t)
	dir := t.TempDir()
	files, err := Unpack(context.Background(), bytes.NewReader(stream), dir, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !sort.StringsAreSorted(files) {
		t.Errorf("files %q are not in archive (sorted) order", files)
	}
	wantNames := make([]string, 0, len(want))
	for n := range want {
		wantNames = append(wantNames, n)
	}
	sort.Strings(wantNames)
	if !slices.Equal(files, wantNames) {
		t.Fatalf("files = %q, want %q", files, wantNames)
	}
	for n, content := range want {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(n)))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Errorf("%s: content differs", n)
		}
	}
	got := tree(t, dir)
	for p, mode := range got {
		var wantMode fs.FileMode
		switch {
		case strings.HasSuffix(p, "/"):
			wantMode = fs.ModeDir | 0o755
		case p == "bin/cloudflare-r2":
			wantMode = 0o755
		default:
			wantMode = 0o644
		}
		if runtime.GOOS != "windows" && mode != wantMode {
			t.Errorf("%s: mode %v, want %v", p, mode, wantMode)
		}
		if !strings.HasSuffix(p, "/") {
			if _, ok := want[p]; !ok {
				t.Errorf("unexpected file %s", p)
			}
		}
	}
	for _, d := range []string{"bin/", "schema/", "migrations/"} {
		if _, ok := got[d]; !ok {
			t.Errorf("folder %s missing", d)
		}
	}
}

func TestModes(t *testing.T) {
	stream := gz(t, new(rawTar).
		file("plain", 0o600, "a").
		file("owner-exec", 0o700, "b").
		file("other-exec", 0o001, "c").
		file("sticky", 0o1755, "d").
		file("all", 0o777, "e").
		entry("tmp/", tar.TypeDir, 0o1777, "", nil).
		entry("private/", tar.TypeDir, 0o700, "", nil).
		file("implied/deep/file", 0o444, "f").
		end())
	dir := t.TempDir()
	files, err := Unpack(context.Background(), bytes.NewReader(stream), dir, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"plain", "owner-exec", "other-exec", "sticky", "all", "implied/deep/file"}
	if !slices.Equal(files, wantFiles) {
		t.Errorf("files = %q, want %q", files, wantFiles)
	}
	if runtime.GOOS == "windows" {
		return // modes are not POSIX on Windows: the files' presence was checked above
	}
	want := map[string]fs.FileMode{
		"plain":             0o644,
		"owner-exec":        0o755,
		"other-exec":        0o755,
		"sticky":            0o755,
		"all":               0o755,
		"tmp/":              fs.ModeDir | 0o755,
		"private/":          fs.ModeDir | 0o755,
		"implied/":          fs.ModeDir | 0o755,
		"implied/deep/":     fs.ModeDir | 0o755,
		"implied/deep/file": 0o644,
	}
	got := tree(t, dir)
	if len(got) != len(want) {
		t.Errorf("tree = %v, want %v", got, want)
	}
	for p, m := range want {
		if got[p] != m {
			t.Errorf("%s: mode %v, want %v", p, got[p], m)
		}
	}
}

func TestAcceptedVariants(t *testing.T) {
	// Leading "./", a pax global header (git archive), GNU tar's block
	// padding after the end marker, a directory after files implied it,
	// pax long names and concatenated gzip members are all fine.
	long := strings.Repeat("d", 200) + "/" + strings.Repeat("f", 200)
	tarball := new(rawTar).
		pax('g', "comment", "0123456789abcdef").
		file("./manifest.json", 0o644, "{}").
		file("bin/tool", 0o755, "x").
		dir("./bin/").
		pax('x', "path", long).file("placeholder", 0o644, "long").
		end()
	tarball = append(tarball, make([]byte, 10240-len(tarball)%10240)...)
	half := len(tarball) / 2 / 512 * 512
	stream := append(gz(t, tarball[:half]), gz(t, tarball[half:])...)
	dir := t.TempDir()
	files, err := Unpack(context.Background(), bytes.NewReader(stream), dir, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"manifest.json", "bin/tool", long}
	if !slices.Equal(files, want) {
		t.Errorf("files = %q, want %q", files, want)
	}
	if b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(long))); err != nil || string(b) != "long" {
		t.Errorf("long name: %q, %v", b, err)
	}
}

func TestEmptyArchive(t *testing.T) {
	dir := t.TempDir()
	files, err := Unpack(context.Background(), bytes.NewReader(gz(t, new(rawTar).end())), dir, Limits{})
	if err != nil || len(files) != 0 {
		t.Fatalf("Unpack(empty tar) = %q, %v", files, err)
	}
}

func TestCleanNameNUL(t *testing.T) {
	// archive/tar never hands a name with a NUL to Unpack (see the corpus),
	// but the name check refuses it on its own too.
	_, err := cleanName("evil\x00.txt")
	var ae *Error
	if !errors.As(err, &ae) || ae.Reason != reasonControl {
		t.Fatalf("cleanName(NUL) = %v, want %q", err, reasonControl)
	}
}

func TestDestination(t *testing.T) {
	stream, _ := goodArchive(t)
	t.Run("missing", func(t *testing.T) {
		_, err := Unpack(context.Background(), bytes.NewReader(stream), filepath.Join(t.TempDir(), "nope"), Limits{})
		if err == nil || errors.Is(err, ErrUnsafe) || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v, want a not-exist error", err)
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Unpack(context.Background(), bytes.NewReader(stream), f, Limits{}); err == nil {
			t.Fatal("unpacked into a file")
		}
	})
	t.Run("not empty", func(t *testing.T) {
		dir := t.TempDir()
		keep := filepath.Join(dir, "manifest.json")
		if err := os.WriteFile(keep, []byte("mine"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Unpack(context.Background(), bytes.NewReader(stream), dir, Limits{})
		if err == nil || errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("err = %v, want a not-empty error", err)
		}
		if b, _ := os.ReadFile(keep); string(b) != "mine" {
			t.Errorf("existing file changed to %q", b)
		}
	})
	t.Run("symlink inside", func(t *testing.T) {
		dir := t.TempDir()
		outside := t.TempDir()
		if err := os.Symlink(outside, filepath.Join(dir, "bin")); err != nil {
			t.Fatalf("cannot create the symlink this case needs: %v", err)
		}
		if _, err := Unpack(context.Background(), bytes.NewReader(stream), dir, Limits{}); err == nil {
			t.Fatal("unpacked into a folder holding a symlink")
		}
		assertEmpty(t, outside)
	})
}

// cancelAfter cancels a context once n bytes were read through it.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n -= n
	if c.n <= 0 {
		c.cancel()
	}
	return n, err
}

// noise returns n incompressible, deterministic bytes.
func noise(n int) []byte {
	b := make([]byte, n)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func TestCancel(t *testing.T) {
	stream := gz(t, new(rawTar).good().file("big", 0o755, string(noise(4<<20))).end())
	t.Run("before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		dir := t.TempDir()
		_, err := Unpack(ctx, bytes.NewReader(stream), dir, Limits{})
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnsafe) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		assertEmpty(t, dir)
	})
	t.Run("while copying", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		dir := t.TempDir()
		_, err := Unpack(ctx, &cancelAfter{r: bytes.NewReader(stream), n: 1 << 20, cancel: cancel}, dir, Limits{})
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnsafe) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		assertEmpty(t, dir)
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
		defer cancel()
		<-ctx.Done()
		_, err := Unpack(ctx, bytes.NewReader(stream), t.TempDir(), Limits{})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})
}

// failingReader returns its data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestSourceError(t *testing.T) {
	stream := gz(t, new(rawTar).good().file("big", 0o644, string(noise(1<<20))).end())
	netErr := errors.New("connection reset")
	dir := t.TempDir()
	_, err := Unpack(context.Background(), &failingReader{data: stream[:len(stream)/2], err: netErr}, dir, Limits{})
	if !errors.Is(err, netErr) || errors.Is(err, ErrUnsafe) {
		t.Fatalf("err = %v, want the source's error, not ErrUnsafe", err)
	}
	assertEmpty(t, dir)
}

func TestConcurrent(t *testing.T) {
	stream, want := goodArchive(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			files, err := Unpack(context.Background(), bytes.NewReader(stream), t.TempDir(), Limits{})
			if err != nil || len(files) != len(want) {
				t.Errorf("Unpack = %d files, %v", len(files), err)
			}
		}()
	}
	wg.Wait()
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// bomb streams a gzip bomb of size zero bytes, generated as it is read:
// as one file's content, or after the tar end-of-archive marker.
func bomb(size int64, afterEnd bool) (*io.PipeReader, <-chan error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := func() error {
			zw, err := gzip.NewWriterLevel(pw, gzip.BestCompression)
			if err != nil {
				return err
			}
			tw := tar.NewWriter(zw)
			var w io.Writer = tw
			if afterEnd {
				if err := tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg}); err != nil {
					return err
				}
				if _, err := tw.Write([]byte("{}")); err != nil {
					return err
				}
				if err := tw.Close(); err != nil {
					return err
				}
				w = zw
			} else if err := tw.WriteHeader(&tar.Header{Name: "bin/cloudflare-r2", Mode: 0o755, Size: size, Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			zeros := make([]byte, 256<<10)
			for left := size; left > 0; left -= int64(len(zeros)) {
				if _, err := w.Write(zeros[:min(left, int64(len(zeros)))]); err != nil {
					return err
				}
			}
			if !afterEnd {
				if err := tw.Close(); err != nil {
					return err
				}
			}
			return zw.Close()
		}()
		pw.CloseWithError(err)
		done <- err
	}()
	return pr, done
}

func TestBomb(t *testing.T) {
	const gib = 1 << 30
	cases := []struct {
		name     string
		afterEnd bool
		lim      Limits
		reason   string
	}{
		// Limits raised so that only the ratio check stands in the way.
		{"file of zeros", false, Limits{MaxFileBytes: 2 * gib, MaxTotalBytes: 2 * gib}, reasonBomb},
		{"zeros after the end marker", true, Limits{}, reasonBomb},
		{"file of zeros, default limits", false, Limits{}, reasonFileLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pr, done := bomb(gib, c.afterEnd)
			src := &countingReader{r: pr}
			dir := t.TempDir()
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := Unpack(context.Background(), src, dir, c.lim)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			pr.CloseWithError(errors.New("test done"))
			<-done
			var ae *Error
			if !errors.As(err, &ae) || !strings.Contains(ae.Reason, c.reason) {
				t.Fatalf("err = %v, want %q", err, c.reason)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%v; read %d compressed bytes in %v, allocated %d KiB", err, src.n, elapsed, alloc>>10)
			if src.n > 1<<20 {
				t.Errorf("read %d compressed bytes before refusing, want < 1 MiB", src.n)
			}
			if alloc > 64<<20 {
				t.Errorf("allocated %d MiB, want < 64 MiB", alloc>>20)
			}
			if elapsed > 30*time.Second {
				t.Errorf("took %v to refuse", elapsed)
			}
			assertEmpty(t, dir)
		})
	}
}
