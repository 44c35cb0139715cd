package localstore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/magicads/r2storage/shared/storage"
)

// writeFile writes size bytes at root/rel and dates the file at mtime.
func writeFile(t *testing.T, root, rel string, size int, mtime time.Time) string {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.Repeat([]byte{'x'}, size), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRemoveTemp: the temp files interrupted writes left anywhere under the
// root are removed, and nothing else: not temp files written at or after
// the cut-off (writes of the running process), not other names, not
// symlinks, not folders.
func TestRemoveTemp(t *testing.T) {
	s := newStore(t)
	root := s.Root()
	before := time.Now().Add(-time.Minute)
	old := before.Add(-time.Hour)
	gone := []string{
		writeFile(t, root, "images/gemini/.magicads-tmp-123456", 1<<20, old),
		writeFile(t, root, ".magicads-tmp-health-42", 1, old),
		writeFile(t, root, ".magicads-meta/images/gemini/.magicads-tmp-77", 10, old),
		writeFile(t, root, "videos/veo-3/.magicads-tmp-9", 5, before.Add(-time.Nanosecond)),
	}
	kept := []string{
		writeFile(t, root, "images/gemini/.magicads-tmp-new", 7, before),
		writeFile(t, root, "images/gemini/.magicads-tmp-newer", 7, before.Add(time.Hour)),
		writeFile(t, root, "images/gemini/0f0e0d0c-0b0a-4908-8706-050403020100.png", 3, old),
		writeFile(t, root, "images/gemini/magicads-tmp-1", 3, old),
		writeFile(t, root, "images/gemini/.magicads-tmpx", 3, old),
		writeFile(t, root, ".magicads-meta/images/gemini/a.png.json", 3, old),
	}
	outside := writeFile(t, t.TempDir(), "target", 3, old)
	link := filepath.Join(root, "images", "gemini", ".magicads-tmp-link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "images", ".magicads-tmp-dir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(dir, old, old)
	kept = append(kept, link, outside, dir)

	got, err := s.RemoveTemp(context.Background(), before)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Removed{Files: 4, Bytes: 1<<20 + 1 + 10 + 5}); got != want {
		t.Errorf("RemoveTemp = %+v, want %+v", got, want)
	}
	for _, p := range gone {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was not removed", p)
		}
	}
	for _, p := range kept {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	if _, err := s.RemoveTemp(context.Background(), before); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.RemoveTemp(ctx, time.Now().Add(time.Hour)); err == nil {
		t.Fatal("RemoveTemp ran on a cancelled context")
	}
	for _, p := range kept[:2] {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("a cancelled RemoveTemp removed %s", p)
		}
	}
}

// TestNow: a file written after Now returned is dated at or after it, by
// the file system's own clock, and Now leaves no file behind.
func TestNow(t *testing.T) {
	s := newStore(t)
	for range 20 {
		now, err := s.Now()
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Put(context.Background(), "images/gemini/a.png", bytes.NewReader([]byte("x")), storage.PutOptions{ContentType: "image/png", Size: 1})
		if err != nil {
			t.Fatal(err)
		}
		if info.ModTime.Before(now) {
			t.Fatalf("a file written after Now() = %v is dated %v", now, info.ModTime)
		}
	}
	if left := leftovers(t, s.Root()); len(left) > 0 {
		t.Fatalf("Now left %v", left)
	}
}
