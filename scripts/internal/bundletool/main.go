// Command bundletool is the helper of scripts/package: it reads the plugin
// manifest and writes reproducible plugin archives and checksum files.
//
//	bundletool id
//	bundletool version
//	bundletool platforms
//	bundletool archive -platform OS/ARCH -binary FILE -out ARCHIVE.tar.gz
//	bundletool sums -out SHA256SUMS FILE...
//
// The archive holds the embedded bundle (manifest.json, schema/,
// migrations/) and the binary at the manifest's executables path for the
// platform, in a fixed order with fixed modes (0755 binary and folders,
// 0644 files), uid/gid 0, no user or group names and a fixed mtime
// (SOURCE_DATE_EPOCH when set, else 2000-01-01 UTC).
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	r2storage "github.com/magicads/r2storage"
)

// defaultEpoch is the mtime of every archive entry without SOURCE_DATE_EPOCH.
const defaultEpoch = 946684800 // 2000-01-01T00:00:00Z

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bundletool:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: bundletool id|version|platforms|archive|sums ...")
	}
	switch args[0] {
	case "version":
		m, err := r2storage.LoadManifest()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, m.Version)
		return err
	case "id":
		m, err := r2storage.LoadManifest()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, m.ID)
		return err
	case "platforms":
		m, err := r2storage.LoadManifest()
		if err != nil {
			return err
		}
		for _, p := range m.Platforms() {
			if _, err := fmt.Fprintf(stdout, "%s %s\n", p, m.Executables[p]); err != nil {
				return err
			}
		}
		return nil
	case "archive":
		return archiveCmd(args[1:], stdout)
	case "sums":
		return sumsCmd(args[1:])
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// entry is one file or folder of an archive.
type entry struct {
	name string
	mode int64
	dir  bool
	data []byte
}

func archiveCmd(args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("archive", flag.ContinueOnError)
	platform := fl.String("platform", "", "os/arch, a key of the manifest's executables")
	binary := fl.String("binary", "", "built plugin binary for the platform")
	out := fl.String("out", "", "archive to write (.tar.gz)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *platform == "" || *binary == "" || *out == "" {
		return errors.New("archive: -platform, -binary and -out are required")
	}
	m, err := r2storage.LoadManifest()
	if err != nil {
		return err
	}
	exe, ok := m.Executables[*platform]
	if !ok {
		return fmt.Errorf("archive: platform %q is not in manifest.json executables (%s)", *platform, strings.Join(m.Platforms(), ", "))
	}
	mtime, err := epoch()
	if err != nil {
		return err
	}
	bin, err := os.ReadFile(*binary)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}

	entries := map[string]entry{}
	addDirs := func(p string) {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			entries[d+"/"] = entry{name: d + "/", mode: 0o755, dir: true}
		}
	}
	err = fs.WalkDir(r2storage.Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		data, err := fs.ReadFile(r2storage.Files(), p)
		if err != nil {
			return err
		}
		entries[p] = entry{name: p, mode: 0o644, data: data}
		addDirs(p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("archive: read bundle: %w", err)
	}
	if _, clash := entries[exe]; clash {
		return fmt.Errorf("archive: executable path %q clashes with a bundle file", exe)
	}
	entries[exe] = entry{name: exe, mode: 0o755, data: bin}
	addDirs(exe)

	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	// A zero gzip header: no name, no mtime.
	tw := tar.NewWriter(gz)
	for _, n := range names {
		e := entries[n]
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			ModTime: mtime,
			Format:  tar.FormatUSTAR,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("archive: %s: %w", e.name, err)
		}
		if !e.dir {
			if _, err := tw.Write(e.data); err != nil {
				return fmt.Errorf("archive: %s: %w", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	if err := writeFile(*out, buf.Bytes()); err != nil {
		return err
	}
	sum := sha256.Sum256(buf.Bytes())
	line := fmt.Sprintf("%s  %s\n", hex.EncodeToString(sum[:]), filepath.Base(*out))
	if err := writeFile(*out+".sha256", []byte(line)); err != nil {
		return err
	}
	_, err = io.WriteString(stdout, line)
	return err
}

func sumsCmd(args []string) error {
	fl := flag.NewFlagSet("sums", flag.ContinueOnError)
	out := fl.String("out", "", "SHA256SUMS file to write")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *out == "" || fl.NArg() == 0 {
		return errors.New("sums: -out and at least one file are required")
	}
	files := append([]string(nil), fl.Args()...)
	sort.Slice(files, func(i, j int) bool { return filepath.Base(files[i]) < filepath.Base(files[j]) })
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("sums: %w", err)
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(sum[:]), filepath.Base(f))
	}
	return writeFile(*out, []byte(b.String()))
}

// epoch is the fixed mtime of archive entries.
func epoch() (time.Time, error) {
	secs := int64(defaultEpoch)
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a non-negative integer", v)
		}
		secs = n
	}
	return time.Unix(secs, 0).UTC(), nil
}

// writeFile writes data to name through a temporary file in the same folder.
func writeFile(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".bundletool-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
