// Package markettest builds plugin archives for tests: the repo's bundle
// (manifest, schemas, migrations) with a given binary, as tar.gz.
package markettest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"runtime"
	"testing"
	"time"

	r2storage "github.com/magicads/r2storage"
)

// Platform is this machine's "os/arch".
var Platform = runtime.GOOS + "/" + runtime.GOARCH

// File is one archive entry; Typ defaults to a regular file.
type File struct {
	Name     string
	Mode     int64
	Data     []byte
	Typ      byte
	Linkname string
	// Size, when set, replaces Data with that many zero bytes (bombs).
	Size int64
}

// Bundle returns the files of a plugin archive: the repo's manifest (with
// version and edits applied), schemas, migrations, and binary at the
// manifest's executable path for this platform.
func Bundle(t testing.TB, version string, binary []byte, edit func(man map[string]any)) []File {
	t.Helper()
	return BundleOf(t, r2storage.Files(), version, binary, edit)
}

// BundleOf is Bundle with the manifest.json, schema/ and migrations/ of
// tree (the embedded bundle files, or another checkout's top folder, for
// a plugin built from it).
func BundleOf(t testing.TB, tree fs.FS, version string, binary []byte, edit func(man map[string]any)) []File {
	t.Helper()
	var man map[string]any
	raw, err := fs.ReadFile(tree, "manifest.json")
	if err != nil || json.Unmarshal(raw, &man) != nil {
		t.Fatalf("reading the manifest: %v", err)
	}
	man["version"] = version
	if edit != nil {
		edit(man)
	}
	manData, _ := json.MarshalIndent(man, "", "  ")
	files := []File{{Name: "manifest.json", Mode: 0o644, Data: manData}}
	for _, dir := range []string{"schema", "migrations"} {
		fs.WalkDir(tree, dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				data, _ := fs.ReadFile(tree, p)
				files = append(files, File{Name: p, Mode: 0o644, Data: data})
			}
			return nil
		})
	}
	exe := man["executables"].(map[string]any)[Platform].(string)
	return append(files, File{Name: exe, Mode: 0o755, Data: binary})
}

// TarGz packs files.
func TarGz(files []File) []byte {
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: f.Mode, Size: int64(len(f.Data)), Typeflag: tar.TypeReg, Linkname: f.Linkname, ModTime: time.Unix(946684800, 0)}
		if f.Typ != 0 {
			h.Typeflag = f.Typ
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if f.Size > 0 {
			h.Size = f.Size
		}
		tw.WriteHeader(h)
		if f.Size > 0 {
			io.CopyN(tw, zeros{}, f.Size)
		} else if h.Typeflag == tar.TypeReg {
			tw.Write(f.Data)
		}
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
