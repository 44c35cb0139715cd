package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestArchiveIsReproducibleAndComplete(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	dir := t.TempDir()
	bin := filepath.Join(dir, "plugin.exe")
	if err := os.WriteFile(bin, []byte("MZ fake binary"), 0o600); err != nil {
		t.Fatal(err)
	}
	var sums []string
	for i, name := range []string{"a.tar.gz", "b.tar.gz"} {
		out := filepath.Join(dir, name)
		var stdout bytes.Buffer
		if err := run([]string{"archive", "-platform", "windows/amd64", "-binary", bin, "-out", out}, &stdout); err != nil {
			t.Fatalf("archive %d: %v", i, err)
		}
		sum, _, _ := strings.Cut(stdout.String(), " ")
		sums = append(sums, sum)
		side, err := os.ReadFile(out + ".sha256")
		if err != nil || string(side) != stdout.String() {
			t.Fatalf("%s.sha256 = %q, %v; want %q", name, side, err, stdout.String())
		}
		if i == 0 {
			// Later files get a different on-disk mtime; the archive must not care.
			time.Sleep(1100 * time.Millisecond)
			if err := os.Chtimes(bin, time.Now(), time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sums[0] != sums[1] {
		t.Fatalf("two archives differ: %s vs %s", sums[0], sums[1])
	}

	f, err := os.Open(filepath.Join(dir, "a.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	got := map[string]int64{}
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		got[h.Name] = h.Mode
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Unix(defaultEpoch, 0)) {
			t.Errorf("%s: uid %d gid %d %q %q mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
	}
	want := map[string]int64{
		"bin/":                        0o755,
		"bin/cloudflare-r2.exe":       0o755,
		"manifest.json":               0o644,
		"migrations/":                 0o755,
		"schema/":                     0o755,
		"schema/settings.schema.json": 0o644,
		"migrations/000001_register_provider.up.sql":   0o644,
		"migrations/000001_register_provider.down.sql": 0o644,
	}
	for n, mode := range want {
		if got[n] != mode {
			t.Errorf("%s: mode %o, want %o (entries %v)", n, got[n], mode, names)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries %v, want %d", names, len(want))
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("entries not sorted: %v", names)
		}
	}

	if err := run([]string{"archive", "-platform", "plan9/amd64", "-binary", bin, "-out", filepath.Join(dir, "c.tar.gz")}, io.Discard); err == nil {
		t.Error("unknown platform accepted")
	}
	if err := run([]string{"sums", "-out", filepath.Join(dir, "SHA256SUMS"), filepath.Join(dir, "b.tar.gz"), filepath.Join(dir, "a.tar.gz")}, io.Discard); err != nil {
		t.Fatal(err)
	}
	all, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	if want := sums[0] + "  a.tar.gz\n" + sums[1] + "  b.tar.gz\n"; string(all) != want {
		t.Errorf("SHA256SUMS = %q, want %q", all, want)
	}
}
