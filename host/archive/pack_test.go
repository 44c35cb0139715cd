package archive

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestPackUnpackRoundTrip: a packed folder unpacks to the same files and
// modes; a symbolic link is refused.
func TestPackUnpackRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "migrations"), 0o755)
	os.WriteFile(filepath.Join(src, "manifest.json"), []byte(`{"id":"x"}`), 0o644)
	os.WriteFile(filepath.Join(src, "migrations", "1_a.up.sql"), []byte("SELECT 1;"), 0o644)
	os.WriteFile(filepath.Join(src, "plugin"), []byte("#!/bin/true\n"), 0o755)
	var buf bytes.Buffer
	if err := Pack(context.Background(), src, &buf); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	os.Mkdir(dst, 0o755)
	if _, err := Unpack(context.Background(), &buf, dst, Limits{}); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"manifest.json": 0o644, "migrations/1_a.up.sql": 0o644, "plugin": 0o755} {
		want, _ := os.ReadFile(filepath.Join(src, name))
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
		if fi, err := os.Stat(filepath.Join(dst, name)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	os.Symlink("/etc/passwd", filepath.Join(src, "link"))
	if err := Pack(context.Background(), src, &bytes.Buffer{}); err == nil {
		t.Error("a folder with a symbolic link was packed")
	}
}
