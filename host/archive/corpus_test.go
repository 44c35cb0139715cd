package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"testing"
	"time"

	r2storage "github.com/magicads/r2storage"
)

// This file generates the test archives: a good one built the way
// shared/publish (magicads-plugin pack) builds plugin archives, and a corpus of hostile
// and broken ones. Nothing binary is committed.

// rawTar writes tar streams block by block, so tests can express anything a
// hostile archive may hold, including what archive/tar's Writer refuses.
type rawTar struct{ bytes.Buffer }

// header appends one USTAR header block.
func (w *rawTar) header(name string, typeflag byte, mode, size int64, linkname string) {
	var b [512]byte
	copy(b[0:100], name)
	copy(b[100:108], fmt.Sprintf("%07o\x00", mode))
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], fmt.Sprintf("%011o\x00", 946684800))
	b[156] = typeflag
	copy(b[157:257], linkname)
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	w.Write(checksummed(b))
}

// checksummed fills in the header checksum of b.
func checksummed(b [512]byte) []byte {
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b[:]
}

// data appends entry data padded to a whole block.
func (w *rawTar) data(p []byte) {
	w.Write(p)
	if r := len(p) % 512; r != 0 {
		w.Write(make([]byte, 512-r))
	}
}

// entry appends a header and its data.
func (w *rawTar) entry(name string, typeflag byte, mode int64, linkname string, p []byte) *rawTar {
	w.header(name, typeflag, mode, int64(len(p)), linkname)
	w.data(p)
	return w
}

// file appends a regular file.
func (w *rawTar) file(name string, mode int64, content string) *rawTar {
	return w.entry(name, tar.TypeReg, mode, "", []byte(content))
}

// dir appends a directory.
func (w *rawTar) dir(name string) *rawTar {
	return w.entry(name, tar.TypeDir, 0o755, "", nil)
}

// pax appends a pax extended header ('x', or 'g' for global) with records in order.
func (w *rawTar) pax(typeflag byte, records ...string) *rawTar {
	var body bytes.Buffer
	for i := 0; i+1 < len(records); i += 2 {
		rec := records[i] + "=" + records[i+1] + "\n"
		n := len(rec) + 2
		for len(fmt.Sprintf("%d %s", n, rec)) != n {
			n++
		}
		fmt.Fprintf(&body, "%d %s", n, rec)
	}
	return w.entry("PaxHeader", typeflag, 0o644, "", body.Bytes())
}

// good appends a few harmless entries, so refusals happen after something
// was written and the clean-up is exercised.
func (w *rawTar) good() *rawTar {
	return w.dir("aa/").file("aa/one.txt", 0o644, "one\n").file("aa/two.sh", 0o755, "#!/bin/sh\n")
}

// end appends the end-of-archive marker and returns the stream.
func (w *rawTar) end() []byte {
	w.Write(make([]byte, 1024))
	return w.Bytes()
}

// gz compresses p.
func gz(tb testing.TB, p []byte) []byte {
	tb.Helper()
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := zw.Write(p); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// goodArchive builds a plugin archive exactly like shared/publish.Pack
// does: the embedded bundle at 0644, bin/cloudflare-r2 at 0755, folders at
// 0755, sorted, USTAR, uid/gid 0, fixed mtime, best compression. It returns
// the gzip stream and the expected files with their contents.
func goodArchive(tb testing.TB) ([]byte, map[string]string) {
	tb.Helper()
	m, err := r2storage.LoadManifest()
	if err != nil {
		tb.Fatal(err)
	}
	exe := m.Executables["linux/amd64"]
	type ent struct {
		mode int64
		dir  bool
		data string
	}
	entries := map[string]ent{}
	files := map[string]string{}
	addDirs := func(p string) {
		for i := strings.LastIndexByte(p, '/'); i > 0; i = strings.LastIndexByte(p[:i], '/') {
			entries[p[:i]+"/"] = ent{mode: 0o755, dir: true}
		}
	}
	err = fs.WalkDir(r2storage.Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(r2storage.Files(), p)
		if err != nil {
			return err
		}
		entries[p] = ent{mode: 0o644, data: string(data)}
		files[p] = string(data)
		addDirs(p)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	bin := "\x7fELF fake plugin binary\n" + strings.Repeat("code", 4096)
	entries[exe] = ent{mode: 0o755, data: bin}
	files[exe] = bin
	addDirs(exe)
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		tb.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	for _, n := range names {
		e := entries[n]
		h := &tar.Header{Name: n, Mode: e.mode, ModTime: time.Unix(946684800, 0).UTC(), Format: tar.FormatUSTAR}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes(), files
}

// hostile is one archive Unpack must refuse.
type hostile struct {
	name      string
	tar       []byte // the uncompressed tar, nil when the case is about the gzip layer
	gz        []byte // the stream given to Unpack; gz(tar) when nil
	lim       Limits
	reason    string // what Error.Reason must contain
	entry     string // what Error.Entry must be
	anyEntry  bool   // don't check Entry
	noMessage bool   // Error.Error() need not quote the entry (it is "")
}

// stream returns what Unpack reads.
func (h hostile) stream(tb testing.TB) []byte {
	if h.gz != nil {
		return h.gz
	}
	return gz(tb, h.tar)
}

// hostileCorpus returns one case per refusal.
func hostileCorpus(tb testing.TB) []hostile {
	tb.Helper()
	long := strings.Repeat("x", 256)
	longName := strings.Repeat("abcdefghi/", 103) + "z" // 1031 bytes, segments of 9
	good := new(rawTar).good().end()
	goodGz := gz(tb, good)

	cases := []hostile{
		// Paths.
		{name: "absolute", tar: new(rawTar).good().file("/etc/passwd", 0o644, "x").end(), reason: reasonAbsolute, entry: "/etc/passwd"},
		{name: "absolute after dot slash", tar: new(rawTar).good().file(".//etc/passwd", 0o644, "x").end(), reason: reasonAbsolute, entry: ".//etc/passwd"},
		{name: "windows drive", tar: new(rawTar).good().file(`C:\Windows\evil.exe`, 0o644, "x").end(), reason: reasonAbsolute, entry: `C:\Windows\evil.exe`},
		{name: "windows drive slash", tar: new(rawTar).good().file(`c:/evil`, 0o644, "x").end(), reason: reasonAbsolute, entry: `c:/evil`},
		{name: "windows drive relative", tar: new(rawTar).good().file(`C:evil`, 0o644, "x").end(), reason: reasonAbsolute, entry: `C:evil`},
		{name: "windows unc", tar: new(rawTar).good().file(`\\server\share\evil`, 0o644, "x").end(), reason: reasonAbsolute, entry: `\\server\share\evil`},
		{name: "windows root", tar: new(rawTar).good().file(`\evil`, 0o644, "x").end(), reason: reasonAbsolute, entry: `\evil`},
		{name: "dotdot", tar: new(rawTar).good().file("../evil", 0o644, "x").end(), reason: reasonEscape, entry: "../evil"},
		{name: "dotdot inside", tar: new(rawTar).good().file("aa/../../evil", 0o644, "x").end(), reason: reasonEscape, entry: "aa/../../evil"},
		{name: "dotdot harmless looking", tar: new(rawTar).good().file("aa/../evil", 0o644, "x").end(), reason: reasonEscape, entry: "aa/../evil"},
		{name: "dotdot after dot slash", tar: new(rawTar).good().file("./../evil", 0o644, "x").end(), reason: reasonEscape, entry: "./../evil"},
		{name: "dotdot dir", tar: new(rawTar).good().dir("../").end(), reason: reasonEscape, entry: "../"},
		{name: "backslash", tar: new(rawTar).good().file(`aa\evil`, 0o644, "x").end(), reason: reasonBackslash, entry: `aa\evil`},
		{name: "backslash dotdot", tar: new(rawTar).good().file(`..\evil`, 0o644, "x").end(), reason: reasonBackslash, entry: `..\evil`},
		{name: "empty name", tar: new(rawTar).good().file("", 0o644, "x").end(), reason: reasonEmpty, entry: "", noMessage: true},
		{name: "dot", tar: new(rawTar).good().dir(".").end(), reason: reasonEmpty, entry: "."},
		{name: "dot slash", tar: new(rawTar).good().dir("./").end(), reason: reasonEmpty, entry: "./"},
		{name: "empty segment", tar: new(rawTar).good().file("aa//evil", 0o644, "x").end(), reason: reasonMalformed, entry: "aa//evil"},
		{name: "dot segment", tar: new(rawTar).good().file("aa/./evil", 0o644, "x").end(), reason: reasonMalformed, entry: "aa/./evil"},
		{name: "file with trailing slash", tar: new(rawTar).good().file("evil/", 0o644, "x").end(), reason: reasonFileSlash, entry: "evil/"},
		{name: "control character", tar: new(rawTar).good().file("evil\x01.txt", 0o644, "x").end(), reason: reasonControl, entry: "evil\x01.txt"},
		{name: "newline", tar: new(rawTar).good().file("evil\n.txt", 0o644, "x").end(), reason: reasonControl, entry: "evil\n.txt"},
		{name: "escape sequence", tar: new(rawTar).good().file("\x1b[31mevil", 0o644, "x").end(), reason: reasonControl, entry: "\x1b[31mevil"},
		{name: "delete", tar: new(rawTar).good().file("evil\x7f", 0o644, "x").end(), reason: reasonControl, entry: "evil\x7f"},
		{name: "c1 control", tar: new(rawTar).good().file("evil\u0085", 0o644, "x").end(), reason: reasonControl, entry: "evil\u0085"},
		// A NUL can't reach Unpack as part of a name: USTAR and GNU long
		// names end at the first NUL, and archive/tar rejects a pax path
		// holding one. The pax form is refused as a corrupt header.
		{name: "NUL in pax path", tar: new(rawTar).good().pax('x', "path", "evil\x00.txt").file("placeholder", 0o644, "x").end(), reason: reasonCorrupt, entry: ""},
		{name: "invalid utf8", tar: new(rawTar).good().file("evil\xff\xfe", 0o644, "x").end(), reason: reasonEncoding, entry: "evil\xff\xfe"},
		{name: "segment too long", tar: new(rawTar).good().pax('x', "path", "aa/"+long).file("placeholder", 0o644, "x").end(), reason: reasonSegmentLong, entry: "aa/" + long},
		{name: "name too long", tar: new(rawTar).good().pax('x', "path", longName).file("placeholder", 0o644, "x").end(), reason: reasonNameLong, entry: longName},
		{name: "windows reserved character", tar: new(rawTar).good().file("aa/evil:stream", 0o644, "x").end(), reason: reasonNotPortable, entry: "aa/evil:stream"},
		{name: "windows wildcard", tar: new(rawTar).good().file("aa/evil?.txt", 0o644, "x").end(), reason: reasonNotPortable, entry: "aa/evil?.txt"},
		{name: "windows device", tar: new(rawTar).good().file("aa/con", 0o644, "x").end(), reason: reasonNotPortable, entry: "aa/con"},
		{name: "windows device extension", tar: new(rawTar).good().file("Aux.json", 0o644, "x").end(), reason: reasonNotPortable, entry: "Aux.json"},
		{name: "windows com port", tar: new(rawTar).good().dir("COM1/").end(), reason: reasonNotPortable, entry: "COM1/"},
		{name: "windows trailing dot", tar: new(rawTar).good().file("evil.", 0o644, "x").end(), reason: reasonNotPortable, entry: "evil."},
		{name: "windows trailing space", tar: new(rawTar).good().file("evil ", 0o644, "x").end(), reason: reasonNotPortable, entry: "evil "},
		// Entry types.
		{name: "symlink", tar: new(rawTar).good().entry("aa/link", tar.TypeSymlink, 0o777, "/etc/passwd", nil).end(), reason: reasonSymlink, entry: "aa/link"},
		{name: "symlink then write through", tar: new(rawTar).good().entry("lib", tar.TypeSymlink, 0o777, "/tmp", nil).file("lib/evil", 0o644, "x").end(), reason: reasonSymlink, entry: "lib"},
		{name: "relative symlink", tar: new(rawTar).good().entry("aa/up", tar.TypeSymlink, 0o777, "..", nil).end(), reason: reasonSymlink, entry: "aa/up"},
		{name: "hard link", tar: new(rawTar).good().entry("aa/hard", tar.TypeLink, 0o644, "/etc/shadow", nil).end(), reason: reasonHardlink, entry: "aa/hard"},
		{name: "hard link inside", tar: new(rawTar).good().entry("aa/hard", tar.TypeLink, 0o644, "aa/one.txt", nil).end(), reason: reasonHardlink, entry: "aa/hard"},
		{name: "char device", tar: new(rawTar).good().entry("aa/null", tar.TypeChar, 0o666, "", nil).end(), reason: reasonSpecial + " (character device)", entry: "aa/null"},
		{name: "block device", tar: new(rawTar).good().entry("aa/sda", tar.TypeBlock, 0o660, "", nil).end(), reason: reasonSpecial + " (block device)", entry: "aa/sda"},
		{name: "fifo", tar: new(rawTar).good().entry("aa/fifo", tar.TypeFifo, 0o644, "", nil).end(), reason: reasonSpecial + " (FIFO)", entry: "aa/fifo"},
		{name: "contiguous file", tar: new(rawTar).good().entry("aa/cont", tar.TypeCont, 0o644, "", []byte("x")).end(), reason: reasonSpecial, entry: "aa/cont"},
		{name: "unknown type", tar: new(rawTar).good().entry("aa/what", 'Z', 0o644, "", []byte("x")).end(), reason: reasonSpecial, entry: "aa/what"},
		{name: "pax sparse", tar: new(rawTar).good().pax('x', "GNU.sparse.major", "0", "GNU.sparse.minor", "1", "GNU.sparse.numblocks", "1", "GNU.sparse.map", "0,1", "GNU.sparse.size", "1000000").file("aa/sparse", 0o644, "x").end(), reason: reasonSparse, entry: "aa/sparse"},
		// Mode bits.
		{name: "setuid", tar: new(rawTar).good().file("aa/suid", 0o4755, "x").end(), reason: reasonSetid, entry: "aa/suid"},
		{name: "setgid", tar: new(rawTar).good().file("aa/sgid", 0o2755, "x").end(), reason: reasonSetid, entry: "aa/sgid"},
		{name: "setgid dir", tar: new(rawTar).good().entry("shared/", tar.TypeDir, 0o2775, "", nil).end(), reason: reasonSetid, entry: "shared/"},
		// Duplicates and conflicts.
		{name: "duplicate", tar: new(rawTar).good().file("aa/one.txt", 0o644, "again").end(), reason: reasonDuplicate, entry: "aa/one.txt"},
		{name: "duplicate dot slash", tar: new(rawTar).good().file("./aa/one.txt", 0o644, "again").end(), reason: reasonDuplicate, entry: "./aa/one.txt"},
		{name: "duplicate dir trailing slash", tar: new(rawTar).good().dir("aa").end(), reason: reasonDuplicate, entry: "aa"},
		{name: "duplicate case", tar: new(rawTar).good().file("aa/ONE.txt", 0o644, "again").end(), reason: reasonDuplicate + " (differs from", entry: "aa/ONE.txt"},
		{name: "duplicate case unicode", tar: new(rawTar).good().file("k.txt", 0o644, "1").file("\u212a.txt", 0o644, "2").end(), reason: reasonDuplicate, entry: "\u212a.txt"},
		{name: "duplicate case folder", tar: new(rawTar).good().file("AA/three.txt", 0o644, "x").end(), reason: reasonDuplicate + ` (folder "AA"`, entry: "AA/three.txt"},
		{name: "file over dir", tar: new(rawTar).good().file("aa", 0o644, "x").end(), reason: reasonDuplicate, entry: "aa"},
		{name: "file over implied dir", tar: new(rawTar).good().file("bb/x", 0o644, "x").file("bb", 0o644, "x").end(), reason: reasonDuplicate, entry: "bb"},
		{name: "dir over file", tar: new(rawTar).good().dir("aa/one.txt/").end(), reason: reasonDuplicate, entry: "aa/one.txt/"},
		{name: "file under file", tar: new(rawTar).good().file("aa/one.txt/evil", 0o644, "x").end(), reason: reasonUnderFile, entry: "aa/one.txt/evil"},
		// Limits.
		{name: "too many files", tar: new(rawTar).good().file("b", 0o644, "").file("c", 0o644, "").end(), lim: Limits{MaxFiles: 3}, reason: reasonTooMany + " files", entry: "c"},
		{name: "too many directories", tar: new(rawTar).good().dir("b/").dir("c/").dir("d/").end(), lim: Limits{MaxFiles: 3}, reason: reasonTooMany + " directories", entry: "d/"},
		{name: "too many implied directories", tar: new(rawTar).file("a/b/c/d/e", 0o644, "").end(), lim: Limits{MaxFiles: 3}, reason: reasonTooMany + " directories", entry: "a/b/c/d/e"},
		{name: "too many headers", tar: new(rawTar).pax('g', "comment", "1").pax('g', "comment", "2").pax('g', "comment", "3").good().end(), lim: Limits{MaxFiles: 2}, reason: reasonTooMany + " entries", entry: "aa/one.txt"},
		{name: "file too large", tar: new(rawTar).good().file("big", 0o644, strings.Repeat("x", 2000)).end(), lim: Limits{MaxFileBytes: 1000}, reason: reasonFileLarge, entry: "big"},
		{name: "file too large by default", tar: func() []byte {
			w := new(rawTar).good()
			w.header("huge", tar.TypeReg, 0o644, DefaultMaxFileBytes+1, "")
			return w.Bytes() // refused at the header: no data needed
		}(), reason: reasonFileLarge, entry: "huge"},
		{name: "total too large", tar: new(rawTar).good().file("b", 0o644, strings.Repeat("x", 2000)).file("c", 0o644, strings.Repeat("y", 2000)).end(), lim: Limits{MaxTotalBytes: 3000}, reason: reasonTotalLarge, entry: "c"},
		{name: "compression ratio", tar: nil, gz: gz(tb, new(rawTar).good().file("zeros", 0o644, string(make([]byte, 4<<20))).end()), reason: reasonBomb, entry: "zeros"},
		{name: "compression ratio after end marker", gz: gz(tb, append(new(rawTar).good().end(), make([]byte, 4<<20)...)), reason: reasonBomb, entry: ""},
		// Broken streams.
		{name: "empty stream", gz: []byte{}, reason: reasonCorrupt, entry: ""},
		{name: "not gzip", gz: good, reason: reasonCorrupt, entry: ""},
		{name: "truncated gzip", gz: goodGz[:len(goodGz)/2], reason: reasonCorrupt, anyEntry: true},
		{name: "gzip without trailer", gz: goodGz[:len(goodGz)-8], reason: reasonCorrupt, entry: ""},
		{name: "gzip checksum", gz: func() []byte {
			b := bytes.Clone(goodGz)
			b[len(b)-8] ^= 0xff // CRC-32
			return b
		}(), reason: reasonCorrupt, entry: ""},
		{name: "gzip corrupt deflate", gz: func() []byte {
			b := bytes.Clone(goodGz)
			for i := 10; i < len(b)-8; i += 7 {
				b[i] ^= 0x5a
			}
			return b
		}(), reason: reasonCorrupt, anyEntry: true},
		{name: "trailing garbage", gz: append(bytes.Clone(goodGz), "garbage"...), reason: reasonCorrupt, entry: ""},
		{name: "truncated tar data", tar: new(rawTar).good().file("aa/three.txt", 0o644, strings.Repeat("3", 3000)).Bytes()[:6*512+1000], reason: reasonCorrupt, entry: "aa/three.txt"},
		{name: "truncated tar header", tar: good[:3*512+100], reason: reasonCorrupt, entry: ""},
		{name: "no end marker", tar: good[:len(good)-1024], reason: reasonCorrupt + " (no end-of-archive marker)", entry: ""},
		{name: "half end marker", tar: good[:len(good)-512], reason: reasonCorrupt + " (no end-of-archive marker)", entry: ""},
		{name: "bad header checksum", tar: func() []byte {
			b := bytes.Clone(good)
			b[512+10] ^= 1 // in the name of the second header
			return b
		}(), reason: reasonCorrupt, entry: ""},
		{name: "garbage header", tar: append(bytes.Clone(good[:len(good)-1024]), bytes.Repeat([]byte("garbage!"), 128)...), reason: reasonCorrupt, entry: ""},
		{name: "zero block then header", tar: append(append(bytes.Clone(good[:len(good)-1024]), make([]byte, 512)...), new(rawTar).file("hidden", 0o644, "x").end()...), reason: reasonCorrupt, entry: ""},
	}
	return cases
}
