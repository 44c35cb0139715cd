package localstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/conformance"
	"github.com/magicads/r2storage/shared/storage"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	conformance.Run(t, newStore(t))
}

// leftovers lists every file under root that is not an object or a sidecar.
func leftovers(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".magicads-tmp-") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestPutAtomicAndPaths(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := []byte("hello png")
	info, sum, err := s.Write(ctx, "images/gemini/a.png", bytes.NewReader(data), storage.PutOptions{ContentType: "image/png", Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(data)) || len(sum) != 32 || info.ContentType != "image/png" {
		t.Fatalf("info %+v sum %x", info, sum)
	}
	p, err := s.Path("images/gemini/a.png")
	if err != nil || p != filepath.Join(s.Root(), "images", "gemini", "a.png") {
		t.Fatalf("Path = %q, %v", p, err)
	}
	f, err := s.Open("images/gemini/a.png")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(f.Name()) {
		t.Fatalf("Open gave a file named %q; the plugin SDK needs an absolute path", f.Name())
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("Open read %q", got)
	}

	// A failing reader and a cancelled context leave nothing behind.
	_, err = s.Put(ctx, "images/gemini/b.png", io.MultiReader(strings.NewReader("part"), errReader{}), storage.PutOptions{Size: -1})
	if err == nil {
		t.Fatal("put with a failing reader succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Put(cctx, "images/gemini/c.png", strings.NewReader("x"), storage.PutOptions{Size: 1}); storage.Code(err) != storage.Canceled {
		t.Fatalf("cancelled put: %v", err)
	}
	for _, k := range []string{"images/gemini/b.png", "images/gemini/c.png"} {
		if _, err := s.Stat(ctx, k); !storage.IsNotFound(err) {
			t.Fatalf("stat %s after a failed put: %v", k, err)
		}
	}
	if l := leftovers(t, s.Root()); len(l) > 0 {
		t.Fatalf("temporary files left: %v", l)
	}

	// Keys never escape the root, and reserved names are refused.
	for _, k := range []string{"../x", "a/../../x", "/etc/passwd", ".magicads-meta/x", "a/.magicads-tmp-1"} {
		if _, err := s.Path(k); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("Path(%q) = %v, want InvalidArgument", k, err)
		}
		if _, err := s.Open(k); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("Open(%q) = %v, want InvalidArgument", k, err)
		}
	}
	if _, err := s.Path("missing.png"); !storage.IsNotFound(err) {
		t.Fatalf("Path of a missing key: %v", err)
	}
	if err := s.Delete(ctx, "images/gemini/a.png"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "images/gemini/a.png"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.Delete(ctx, "images"); err != nil {
		t.Fatalf("delete of a folder name: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "images")); err != nil {
		t.Fatalf("delete of a folder name removed the folder: %v", err)
	}
}

func TestContentTypeFallback(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	// A file written behind the store's back has no sidecar: the extension decides.
	if err := os.WriteFile(filepath.Join(s.Root(), "x.png"), []byte("png"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stat(ctx, "x.png")
	if err != nil || st.ContentType != "image/png" || st.Size != 3 {
		t.Fatalf("stat %+v %v", st, err)
	}
	// A stale sidecar (the file changed since) is ignored.
	if _, err := s.Put(ctx, "y.bin", strings.NewReader("abc"), storage.PutOptions{ContentType: "text/x-custom", Size: 3}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Root(), "y.bin"), []byte("abcdef"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Stat(ctx, "y.bin"); err != nil || st.ContentType == "text/x-custom" || st.Size != 6 {
		t.Fatalf("stat with a stale sidecar %+v %v", st, err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("injected") }
