// Package archive unpacks plugin archives (the tar.gz files written by
// scripts/package) into a plugin directory, refusing anything unsafe: path
// escapes, links, special files, duplicates and case or Unicode variants,
// decompression bombs, oversized or corrupt archives.
//
// Every refusal is an [*Error] that matches [ErrUnsafe] with [errors.Is].
// Cancellation, read errors of the source and write errors of the
// destination are returned wrapped, without [ErrUnsafe].
package archive

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Default limits, used for every zero or negative field of [Limits].
const (
	// DefaultMaxFiles is the default of Limits.MaxFiles.
	DefaultMaxFiles = 256
	// DefaultMaxFileBytes is the default of Limits.MaxFileBytes (256 MiB).
	DefaultMaxFileBytes = 256 << 20
	// DefaultMaxTotalBytes is the default of Limits.MaxTotalBytes (512 MiB).
	DefaultMaxTotalBytes = 512 << 20
	// DefaultMaxRatio is the default of Limits.MaxRatio.
	DefaultMaxRatio = 200
)

const (
	// ratioFloor is how many bytes may be inflated before the compression
	// ratio is checked, so that tiny archives (whose tar headers and padding
	// compress very well) are never refused as bombs.
	ratioFloor = 1 << 20
	// maxNameBytes is the longest entry name accepted.
	maxNameBytes = 1024
	// maxSegmentBytes is the longest path segment accepted.
	maxSegmentBytes = 255
	// endMarker is the size of the tar end-of-archive marker (two zero blocks).
	endMarker = 2 * 512
	// copyBuffer is the size of the buffer files are copied through.
	copyBuffer = 32 << 10
)

// Limits bounds what Unpack accepts; zero or negative fields take their default.
type Limits struct {
	// MaxFiles is the most regular files the archive may hold (default 256);
	// directories, explicit or implied by file paths, are capped at the same
	// number, and archive headers of any kind at twice it.
	MaxFiles int
	// MaxFileBytes is the largest uncompressed size of one file (default 256 MiB).
	MaxFileBytes int64
	// MaxTotalBytes is the largest uncompressed size of all files together (default 512 MiB).
	MaxTotalBytes int64
	// MaxRatio is the largest accepted ratio of inflated to compressed bytes,
	// checked continuously while streaming once more than 1 MiB has been
	// inflated (default 200).
	MaxRatio int64
}

// withDefaults returns l with every unset field set to its default.
func (l Limits) withDefaults() Limits {
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = DefaultMaxFileBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = DefaultMaxTotalBytes
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = DefaultMaxRatio
	}
	return l
}

// ErrUnsafe matches (with errors.Is) every refusal of an unsafe, oversized or corrupt archive.
var ErrUnsafe = errors.New("unsafe plugin archive")

// Error is a refusal of an archive, naming the offending entry and the reason.
type Error struct {
	// Entry is the entry's name as stored in the archive ("" when the
	// refusal concerns the stream rather than one entry, or the name is empty).
	Entry string
	// Reason says why the archive was refused.
	Reason string
	// Err is the underlying error, if any (e.g. a gzip checksum error).
	Err error
}

// Error returns e.g. `archive entry "../evil": path escapes the plugin directory`.
func (e *Error) Error() string {
	var msg string
	if e.Entry != "" {
		msg = fmt.Sprintf("archive entry %q: %s", e.Entry, e.Reason)
	} else {
		msg = "plugin archive: " + e.Reason
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is ErrUnsafe.
func (e *Error) Is(target error) bool { return target == ErrUnsafe }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Reasons of refusals.
const (
	reasonEmpty       = `entry name is empty or "."`
	reasonControl     = "name contains a NUL or control character"
	reasonEncoding    = "name is not valid UTF-8"
	reasonNameLong    = "name is longer than 1024 bytes"
	reasonSegmentLong = "path segment is longer than 255 bytes"
	reasonAbsolute    = "absolute path (entries must be relative to the plugin directory)"
	reasonBackslash   = `backslash in name (only "/" separates path segments)`
	reasonEscape      = "path escapes the plugin directory"
	reasonMalformed   = `malformed path (empty or "." segment)`
	reasonFileSlash   = `file name ends with "/"`
	reasonNotPortable = "name is not portable"
	reasonSymlink     = "symbolic links are not allowed"
	reasonHardlink    = "hard links are not allowed"
	reasonSpecial     = "special entries are not allowed"
	reasonSparse      = "sparse files are not allowed"
	reasonSetid       = "setuid/setgid bits are not allowed"
	reasonDuplicate   = "duplicate entry"
	reasonUnderFile   = "parent path is a file"
	reasonTooMany     = "too many"
	reasonFileLarge   = "file too large"
	reasonTotalLarge  = "archive too large"
	reasonBomb        = "decompression bomb"
	reasonCorrupt     = "corrupt or truncated archive"
)

// Unpack extracts a tar.gz stream into dir (which must exist and be empty), refusing anything unsafe; on any error it removes everything it wrote. It returns the list of regular files written (slash paths).
//
// Files are written 0644, or 0755 when the archive marks them executable;
// directories 0755. Ownership, times, extended attributes, the sticky bit
// and other metadata are never applied. Entries whose mode has setuid or
// setgid bits are refused. All writes go through an [os.Root] on dir, with
// files created O_EXCL, so nothing is written outside dir or through a
// symbolic link.
func Unpack(ctx context.Context, r io.Reader, dir string, lim Limits) (files []string, err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("unpack plugin archive: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("unpack plugin archive: %w", err)
	}
	defer root.Close()
	if err := requireEmpty(root, dir); err != nil {
		return nil, err
	}
	u := &unpacker{
		ctx:   ctx,
		root:  root,
		lim:   lim.withDefaults(),
		nodes: map[string]node{},
	}
	defer func() {
		if err != nil {
			files = nil
			if cerr := u.cleanup(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}()
	return u.run(r)
}

// requireEmpty fails unless the directory open as root has no entries.
func requireEmpty(root *os.Root, dir string) error {
	d, err := root.Open(".")
	if err != nil {
		return fmt.Errorf("unpack plugin archive: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("unpack plugin archive: read %s: %w", dir, err)
	}
	if len(names) > 0 {
		return fmt.Errorf("unpack plugin archive: destination %s is not empty", dir)
	}
	return nil
}

// node is a path already taken in the destination.
type node struct {
	name     string // the spelling that took it
	dir      bool
	explicit bool // a directory entry of the archive (not only implied by a file path)
}

// unpacker is the state of one Unpack call.
type unpacker struct {
	ctx     context.Context
	root    *os.Root
	lim     Limits
	src     *sourceReader
	inf     *inflateReader
	nodes   map[string]node // by foldKey of the slash path
	created []string        // paths written, in order, for cleanup
	files   []string
	dirs    int
	headers int
	total   int64
}

// run reads the archive and writes its files.
func (u *unpacker) run(r io.Reader) ([]string, error) {
	u.src = &sourceReader{ctx: u.ctx, r: r}
	gz, err := gzip.NewReader(u.src)
	if errors.Is(err, io.EOF) {
		return nil, &Error{Reason: reasonCorrupt + " (empty stream)"}
	}
	if err != nil {
		return nil, u.streamErr("", err)
	}
	u.inf = &inflateReader{ctx: u.ctx, r: gz, src: u.src, ratio: u.lim.MaxRatio}
	tr := tar.NewReader(u.inf)
	buf := make([]byte, copyBuffer)
	for {
		if err := u.ctx.Err(); err != nil {
			return nil, fmt.Errorf("unpack plugin archive: %w", err)
		}
		before := u.inf.n
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// Next also reports io.EOF when the stream simply stops at an
			// entry boundary; a complete archive ends with two zero blocks.
			if u.inf.n-before < endMarker {
				return nil, &Error{Reason: reasonCorrupt + " (no end-of-archive marker)"}
			}
			break
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return nil, u.streamErr("", err)
		}
		// With GODEBUG=tarinsecurepath=0 the header comes with
		// ErrInsecurePath; checkEntry refuses it with a precise reason.
		if err := u.entry(tr, hdr, buf); err != nil {
			return nil, err
		}
	}
	// Read the rest of the gzip stream so its checksum is verified and
	// trailing garbage is refused; the ratio check still applies.
	for {
		_, err := u.inf.Read(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, u.streamErr("", err)
		}
	}
	return u.files, nil
}

// entry checks one archive entry and writes it.
func (u *unpacker) entry(tr *tar.Reader, hdr *tar.Header, buf []byte) error {
	u.headers++
	if u.headers > 2*u.lim.MaxFiles {
		return &Error{Entry: hdr.Name, Reason: fmt.Sprintf("%s entries (more than %d archive headers)", reasonTooMany, 2*u.lim.MaxFiles)}
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // pax global metadata (e.g. from git archive); nothing to write
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	var isDir bool
	switch hdr.Typeflag {
	case tar.TypeReg:
		if strings.HasSuffix(strings.TrimPrefix(hdr.Name, "./"), "/") {
			return &Error{Entry: hdr.Name, Reason: reasonFileSlash}
		}
	case tar.TypeDir:
		isDir = true
	case tar.TypeSymlink:
		return &Error{Entry: hdr.Name, Reason: fmt.Sprintf("%s (link to %q)", reasonSymlink, hdr.Linkname)}
	case tar.TypeLink:
		return &Error{Entry: hdr.Name, Reason: fmt.Sprintf("%s (link to %q)", reasonHardlink, hdr.Linkname)}
	case tar.TypeChar:
		return &Error{Entry: hdr.Name, Reason: reasonSpecial + " (character device)"}
	case tar.TypeBlock:
		return &Error{Entry: hdr.Name, Reason: reasonSpecial + " (block device)"}
	case tar.TypeFifo:
		return &Error{Entry: hdr.Name, Reason: reasonSpecial + " (FIFO)"}
	case tar.TypeGNUSparse:
		return &Error{Entry: hdr.Name, Reason: reasonSparse}
	default:
		return &Error{Entry: hdr.Name, Reason: fmt.Sprintf("%s (type %q)", reasonSpecial, hdr.Typeflag)}
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return &Error{Entry: hdr.Name, Reason: reasonSparse}
		}
	}
	if hdr.Mode&(0o4000|0o2000) != 0 {
		return &Error{Entry: hdr.Name, Reason: fmt.Sprintf("%s (mode %#o)", reasonSetid, hdr.Mode)}
	}
	if err := u.claim(hdr.Name, name, isDir); err != nil {
		return err
	}
	if isDir {
		return nil
	}
	if len(u.files) >= u.lim.MaxFiles {
		return &Error{Entry: hdr.Name, Reason: fmt.Sprintf("%s files (the limit is %d)", reasonTooMany, u.lim.MaxFiles)}
	}
	if hdr.Size > u.lim.MaxFileBytes {
		return &Error{Entry: hdr.Name, Reason: fmt.Sprintf("%s (%d bytes; the limit is %d)", reasonFileLarge, hdr.Size, u.lim.MaxFileBytes)}
	}
	if hdr.Size > u.lim.MaxTotalBytes-u.total {
		return &Error{Entry: hdr.Name, Reason: fmt.Sprintf("%s (files total more than %d bytes)", reasonTotalLarge, u.lim.MaxTotalBytes)}
	}
	u.total += hdr.Size
	mode := os.FileMode(0o644)
	if hdr.Mode&0o111 != 0 {
		mode = 0o755
	}
	if err := u.writeFile(tr, hdr, name, mode, buf); err != nil {
		return err
	}
	u.files = append(u.files, name)
	return nil
}

// claim records name (and the directories it implies) as taken, creating
// missing directories, and refuses duplicates and paths under files.
func (u *unpacker) claim(raw, name string, isDir bool) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		parent := name[:i]
		n, ok := u.nodes[foldKey(parent)]
		switch {
		case !ok:
			if err := u.mkdir(raw, parent, false); err != nil {
				return err
			}
		case n.name != parent:
			return &Error{Entry: raw, Reason: fmt.Sprintf("%s (folder %q differs from %q only in case)", reasonDuplicate, parent, n.name)}
		case !n.dir:
			return &Error{Entry: raw, Reason: fmt.Sprintf("%s (%q)", reasonUnderFile, parent)}
		}
	}
	n, ok := u.nodes[foldKey(name)]
	switch {
	case !ok && isDir:
		return u.mkdir(raw, name, true)
	case !ok:
		return nil // the file is created by writeFile
	case n.name != name:
		return &Error{Entry: raw, Reason: fmt.Sprintf("%s (differs from %q only in case)", reasonDuplicate, n.name)}
	case isDir && n.dir && !n.explicit:
		n.explicit = true
		u.nodes[foldKey(name)] = n
		return nil
	default:
		return &Error{Entry: raw, Reason: fmt.Sprintf("%s (%q is already in the archive)", reasonDuplicate, name)}
	}
}

// mkdir creates directory name (0755) and records it.
func (u *unpacker) mkdir(raw, name string, explicit bool) error {
	u.dirs++
	if u.dirs > u.lim.MaxFiles {
		return &Error{Entry: raw, Reason: fmt.Sprintf("%s directories (the limit is %d)", reasonTooMany, u.lim.MaxFiles)}
	}
	p := filepath.FromSlash(name)
	if err := u.root.Mkdir(p, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Not in u.nodes but present: the file system folds names we
			// consider distinct (e.g. Unicode normalisation on macOS).
			return &Error{Entry: raw, Reason: reasonDuplicate + " (the file system already has this name)", Err: err}
		}
		return fmt.Errorf("unpack plugin archive: %w", err)
	}
	u.created = append(u.created, p)
	u.nodes[foldKey(name)] = node{name: name, dir: true, explicit: explicit}
	// Mkdir is subject to the umask; the result must not depend on it.
	if err := u.root.Chmod(p, 0o755); err != nil {
		return fmt.Errorf("unpack plugin archive: %w", err)
	}
	return nil
}

// writeFile creates name with O_EXCL and copies the entry's data into it.
func (u *unpacker) writeFile(tr *tar.Reader, hdr *tar.Header, name string, mode os.FileMode, buf []byte) error {
	p := filepath.FromSlash(name)
	// O_EXCL never follows a symbolic link at p; os.Root never resolves
	// one out of dir. Private until complete, then chmod to the final mode.
	f, err := u.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return &Error{Entry: hdr.Name, Reason: reasonDuplicate + " (the file system already has this name)", Err: err}
		}
		return fmt.Errorf("unpack plugin archive: %w", err)
	}
	u.created = append(u.created, p)
	u.nodes[foldKey(name)] = node{name: name}
	var written int64
	for {
		if err := u.ctx.Err(); err != nil {
			f.Close()
			return fmt.Errorf("unpack plugin archive: %w", err)
		}
		n, rerr := tr.Read(buf)
		if n > 0 {
			if _, werr := f.Write(buf[:n]); werr != nil {
				f.Close()
				return fmt.Errorf("unpack plugin archive: write %s: %w", name, werr)
			}
			written += int64(n)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			f.Close()
			return u.streamErr(hdr.Name, rerr)
		}
	}
	if written != hdr.Size {
		f.Close()
		return &Error{Entry: hdr.Name, Reason: fmt.Sprintf("%s (%d of %d bytes)", reasonCorrupt, written, hdr.Size)}
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("unpack plugin archive: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("unpack plugin archive: write %s: %w", name, err)
	}
	return nil
}

// streamErr classifies an error of reading the archive stream.
func (u *unpacker) streamErr(entry string, err error) error {
	if cerr := u.ctx.Err(); cerr != nil {
		return fmt.Errorf("unpack plugin archive: %w", cerr)
	}
	if u.inf != nil && u.inf.bomb != nil {
		e := *u.inf.bomb
		e.Entry = entry
		return &e
	}
	if u.src.err != nil {
		return fmt.Errorf("unpack plugin archive: read: %w", u.src.err)
	}
	return &Error{Entry: entry, Reason: reasonCorrupt, Err: err}
}

// cleanup removes everything Unpack wrote, newest first.
func (u *unpacker) cleanup() error {
	var errs []error
	for i := len(u.created) - 1; i >= 0; i-- {
		if err := u.root.Remove(u.created[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("unpack plugin archive: clean up: %w", errors.Join(errs...))
	}
	return nil
}

// sourceReader counts the compressed bytes read, remembers the source's own
// errors (to tell them from corrupt data) and honours cancellation.
type sourceReader struct {
	ctx context.Context
	r   io.Reader
	n   int64
	err error
}

// Read reads from the source.
func (s *sourceReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) && s.err == nil {
		s.err = err
	}
	return n, err
}

// inflateReader counts the inflated bytes and refuses the stream as soon as
// they outgrow the compressed bytes by more than the allowed ratio.
type inflateReader struct {
	ctx   context.Context
	r     io.Reader
	src   *sourceReader
	ratio int64
	n     int64
	bomb  *Error
}

// Read reads inflated bytes.
func (f *inflateReader) Read(p []byte) (int, error) {
	if f.bomb != nil {
		return 0, f.bomb
	}
	if err := f.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := f.r.Read(p)
	f.n += int64(n)
	if f.n > ratioFloor && f.n/f.ratio > f.src.n {
		f.bomb = &Error{Reason: fmt.Sprintf("%s (%d bytes inflated from %d compressed, more than %d:1)", reasonBomb, f.n, f.src.n, f.ratio)}
		return n, f.bomb
	}
	return n, err
}

// cleanName checks an entry name and returns it as a clean slash path
// without a leading "./" or trailing "/".
func cleanName(raw string) (string, error) {
	refuse := func(reason string) error { return &Error{Entry: raw, Reason: reason} }
	if len(raw) > maxNameBytes {
		return "", refuse(reasonNameLong)
	}
	for i, r := range raw {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(raw[i:]); size == 1 {
				return "", refuse(reasonEncoding)
			}
		}
		if unicode.IsControl(r) {
			return "", refuse(reasonControl)
		}
	}
	name := raw
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	name = strings.TrimSuffix(name, "/")
	if name == "" && !strings.HasPrefix(raw, "/") || name == "." {
		return "", refuse(reasonEmpty)
	}
	if isAbs(raw) || isAbs(name) {
		return "", refuse(reasonAbsolute)
	}
	if strings.Contains(name, `\`) {
		return "", refuse(reasonBackslash)
	}
	segs := strings.Split(name, "/")
	for _, s := range segs {
		if s == ".." {
			return "", refuse(reasonEscape)
		}
	}
	for _, s := range segs {
		if s == "" || s == "." {
			return "", refuse(reasonMalformed)
		}
		if len(s) > maxSegmentBytes {
			return "", refuse(reasonSegmentLong)
		}
		if why := unportable(s); why != "" {
			return "", refuse(fmt.Sprintf("%s (%s)", reasonNotPortable, why))
		}
	}
	// Belt and braces: the host's own idea of a local path.
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return "", refuse(reasonEscape)
	}
	return name, nil
}

// isAbs reports whether name is absolute on Unix or Windows: "/x", "\x",
// `\\server\share` or a drive letter path "C:..." (also drive-relative "C:x").
func isAbs(name string) bool {
	if name == "" {
		return false
	}
	if name[0] == '/' || name[0] == '\\' {
		return true
	}
	if len(name) >= 2 && name[1] == ':' {
		c := name[0] | 0x20
		return c >= 'a' && c <= 'z'
	}
	return false
}

// unportable says why segment s can't be a file name on every host OS
// (Windows is the strictest), or returns "".
func unportable(s string) string {
	if i := strings.IndexAny(s, `<>:"|?*`); i >= 0 {
		return fmt.Sprintf("%q is reserved on Windows", s[i])
	}
	if strings.HasSuffix(s, ".") || strings.HasSuffix(s, " ") {
		return "Windows drops a trailing dot or space"
	}
	stem := s
	if i := strings.IndexByte(stem, '.'); i >= 0 {
		stem = stem[:i]
	}
	stem = strings.ToUpper(strings.TrimRight(stem, " "))
	switch stem {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return "reserved device name on Windows"
	}
	if len(stem) >= 4 && (strings.HasPrefix(stem, "COM") || strings.HasPrefix(stem, "LPT")) {
		switch stem[3:] {
		case "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³":
			return "reserved device name on Windows"
		}
	}
	return ""
}

// foldKey maps s to a key equal for all names that differ only in case
// (Unicode simple case folding, as strings.EqualFold).
func foldKey(s string) string {
	return strings.Map(func(r rune) rune {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < m {
				m = f
			}
		}
		return m
	}, s)
}
