package publish

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/magicads/r2storage/shared/manifest"
)

// DefaultModTime is the mtime of every archive entry when PackOptions.ModTime
// is zero: 2000-01-01T00:00:00Z.
var DefaultModTime = time.Unix(946684800, 0).UTC()

// SumsFile is the checksum list Pack writes into the out folder.
const SumsFile = "SHA256SUMS"

// ArchiveSuffix ends the name of every plugin archive.
const ArchiveSuffix = ".tar.gz"

// PackOptions says what Pack builds and where it writes.
type PackOptions struct {
	// BundleDir is the bundle folder: manifest.json, the settings schema
	// and the migrations folder it names.
	BundleDir string
	// Main is the Go main package of the plugin (e.g. "./cmd/acme-store"),
	// built for each platform in MainDir. Set Main or Binaries, not both.
	Main string
	// MainDir is the folder go build runs in (the module of Main); "" is
	// the current folder.
	MainDir string
	// Binaries maps "os/arch" to an already built plugin binary; its keys
	// are the platforms packed.
	Binaries map[string]string
	// Platforms limits a Main build to these "os/arch" keys of the
	// manifest's executables; empty means all of them.
	Platforms []string
	// OutDir is the folder the archives, their .sha256 files and
	// SHA256SUMS are written to; it is created if missing.
	OutDir string
	// ModTime is the mtime of every archive entry; zero is DefaultModTime.
	ModTime time.Time
	// Log receives one progress line per build; nil discards them.
	Log io.Writer
}

// Packed is one archive Pack wrote.
type Packed struct {
	// Platform is the archive's "os/arch".
	Platform string
	// Path is the archive's path.
	Path string
	// SHA256 is the archive's sha256 in lowercase hex.
	SHA256 string
	// Size is the archive's size in bytes.
	Size int64
}

// PackResult is what Pack wrote.
type PackResult struct {
	// Manifest is the bundle's manifest.
	Manifest manifest.Manifest
	// Archives are the archives written, sorted by platform.
	Archives []Packed
	// Sums is the path of the SHA256SUMS file.
	Sums string
}

// ArchiveName returns "<id>_<version>_<os>_<arch>.tar.gz".
func ArchiveName(id, version, platform string) string {
	goos, goarch, _ := strings.Cut(platform, "/")
	return fmt.Sprintf("%s_%s_%s_%s%s", id, version, goos, goarch, ArchiveSuffix)
}

// ModTimeFromEnv returns the archive mtime SOURCE_DATE_EPOCH asks for (a
// non-negative number of Unix seconds), or DefaultModTime when value is "".
func ModTimeFromEnv(value string) (time.Time, error) {
	if value == "" {
		return DefaultModTime, nil
	}
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a non-negative integer of Unix seconds; unset it or set e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%%ct)", value)
	}
	return time.Unix(n, 0).UTC(), nil
}

// Pack checks the bundle, builds (or takes) the plugin binary for each
// platform and writes its archive and .sha256 file into OutDir, then
// rewrites OutDir/SHA256SUMS over every archive in OutDir. See the package
// documentation for the layout.
func Pack(ctx context.Context, o PackOptions) (*PackResult, error) {
	if o.BundleDir == "" || o.OutDir == "" {
		return nil, errors.New("pack: the bundle folder and the out folder are required")
	}
	if (o.Main == "") == (len(o.Binaries) == 0) {
		return nil, errors.New("pack: give either a Go main package to build or prebuilt binaries per platform, not both or neither")
	}
	if len(o.Binaries) > 0 && len(o.Platforms) > 0 {
		return nil, errors.New("pack: with prebuilt binaries the platforms are their keys; leave the platform list empty")
	}
	man, err := manifest.CheckBundle(os.DirFS(o.BundleDir))
	if err != nil {
		return nil, fmt.Errorf("pack: the bundle %s: %w", o.BundleDir, err)
	}
	platforms, err := packPlatforms(man, o)
	if err != nil {
		return nil, err
	}
	files, err := bundleFiles(o.BundleDir, man)
	if err != nil {
		return nil, err
	}
	mtime := o.ModTime
	if mtime.IsZero() {
		mtime = DefaultModTime
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("pack: the out folder: %w", err)
	}
	tmp, err := os.MkdirTemp("", "magicads-pack-")
	if err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	res := &PackResult{Manifest: man}
	for _, platform := range platforms {
		exe := man.Executables[platform]
		bin := o.Binaries[platform]
		if bin == "" {
			bin = filepath.Join(tmp, strings.ReplaceAll(platform, "/", "-"), path.Base(exe))
			if err := build(ctx, o, platform, bin); err != nil {
				return nil, err
			}
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, fmt.Errorf("pack: the %s binary: %w", platform, err)
		}
		archive, err := tarGz(files, exe, data, mtime, man.Migrations)
		if err != nil {
			return nil, fmt.Errorf("pack: %s: %w", platform, err)
		}
		name := ArchiveName(man.ID, man.Version, platform)
		out := filepath.Join(o.OutDir, name)
		if err := writeFile(out, archive, 0o644); err != nil {
			return nil, fmt.Errorf("pack: %w", err)
		}
		sum := sha256.Sum256(archive)
		hexSum := hex.EncodeToString(sum[:])
		if err := writeFile(out+".sha256", []byte(hexSum+"  "+name+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("pack: %w", err)
		}
		res.Archives = append(res.Archives, Packed{Platform: platform, Path: out, SHA256: hexSum, Size: int64(len(archive))})
	}
	if res.Sums, err = WriteSums(o.OutDir); err != nil {
		return nil, err
	}
	return res, nil
}

// packPlatforms returns the platforms to pack, sorted, each a key of the
// manifest's executables.
func packPlatforms(man manifest.Manifest, o PackOptions) ([]string, error) {
	want := o.Platforms
	if len(o.Binaries) > 0 {
		want = nil
		for p := range o.Binaries {
			want = append(want, p)
		}
	}
	if len(want) == 0 {
		return man.Platforms(), nil
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range want {
		if _, ok := man.Executables[p]; !ok {
			return nil, fmt.Errorf("pack: platform %q is not in %s executables (%s); add it there or pick one of those", p, manifest.Path, strings.Join(man.Platforms(), ", "))
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

// bundleFile is one bundle file as it goes into an archive.
type bundleFile struct {
	name string
	data []byte
}

// bundleFiles reads manifest.json, the settings schema and the migrations
// folder's files from dir.
func bundleFiles(dir string, man manifest.Manifest) ([]bundleFile, error) {
	fsys := os.DirFS(dir)
	names := []string{manifest.Path, man.SettingsSchema}
	entries, err := fs.ReadDir(fsys, man.Migrations)
	if err != nil {
		return nil, fmt.Errorf("pack: the migrations folder %q: %w", man.Migrations, err)
	}
	for _, e := range entries {
		names = append(names, path.Join(man.Migrations, e.Name()))
	}
	var out []bundleFile
	for _, n := range names {
		if !fs.ValidPath(n) || n == "." {
			return nil, fmt.Errorf("pack: %s names %q, which is not a relative path inside the bundle", manifest.Path, n)
		}
		data, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("pack: %w", err)
		}
		out = append(out, bundleFile{name: n, data: data})
	}
	return out, nil
}

// build runs go build for one platform.
func build(ctx context.Context, o PackOptions, platform, out string) error {
	goos, goarch, _ := strings.Cut(platform, "/")
	if o.Log != nil {
		_, _ = fmt.Fprintf(o.Log, "building %s for %s ...\n", o.Main, platform)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w", "-o", out, o.Main)
	cmd.Dir = o.MainDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pack: go build %s for %s (in %s) failed: %w\n%s", o.Main, platform, displayDir(o.MainDir), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// displayDir names a folder for messages.
func displayDir(d string) string {
	if d == "" {
		return "the current folder"
	}
	return d
}

// tarEntry is one entry of an archive.
type tarEntry struct {
	mode int64
	dir  bool
	data []byte
}

// tarGz writes the reproducible archive of files plus the binary at exe.
func tarGz(files []bundleFile, exe string, bin []byte, mtime time.Time, migrations string) ([]byte, error) {
	if !fs.ValidPath(exe) || exe == "." {
		return nil, fmt.Errorf("the executable path %q is not a relative path inside the archive; fix %s executables", exe, manifest.Path)
	}
	entries := map[string]tarEntry{}
	addDirs := func(p string) {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			entries[d+"/"] = tarEntry{mode: 0o755, dir: true}
		}
	}
	for _, f := range files {
		entries[f.name] = tarEntry{mode: 0o644, data: f.data}
		addDirs(f.name)
	}
	if migrations != "." {
		entries[migrations+"/"] = tarEntry{mode: 0o755, dir: true}
		addDirs(migrations)
	}
	if _, clash := entries[exe]; clash {
		return nil, fmt.Errorf("the executable path %q clashes with a bundle file; fix %s executables", exe, manifest.Path)
	}
	if _, clash := entries[exe+"/"]; clash {
		return nil, fmt.Errorf("the executable path %q is a folder of the bundle; fix %s executables", exe, manifest.Path)
	}
	entries[exe] = tarEntry{mode: 0o755, data: bin}
	addDirs(exe)

	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(gz)
	for _, n := range names {
		e := entries[n]
		h := &tar.Header{Name: n, Mode: e.mode, ModTime: mtime, Format: tar.FormatUSTAR, Typeflag: tar.TypeReg, Size: int64(len(e.data))}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		if !e.dir {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteSums rewrites dir/SHA256SUMS with a "<sha256>  <name>" line for
// every archive (*.tar.gz) in dir, sorted by name, and returns its path.
func WriteSums(dir string) (string, error) {
	names, err := archiveNames(dir)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, n := range names {
		sum, _, err := hashFile(filepath.Join(dir, n))
		if err != nil {
			return "", fmt.Errorf("sums: %w", err)
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, n)
	}
	out := filepath.Join(dir, SumsFile)
	if err := writeFile(out, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("sums: %w", err)
	}
	return out, nil
}

// archiveNames lists the regular *.tar.gz files of dir, sorted.
func archiveNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ArchiveSuffix) && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// hashFile returns a file's sha256 (hex) and size.
func hashFile(name string) (string, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", 0, err
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// writeFile writes data to name through a temporary file in the same folder.
func writeFile(name string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".magicads-plugin-*")
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
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
