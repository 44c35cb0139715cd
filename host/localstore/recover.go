package localstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ReservedPrefix starts every name the store keeps for itself (temporary
// files, the sidecar folder); no key segment may start with it.
const ReservedPrefix = reservedPrefix

// TempPrefix starts the name of every temporary file written under the
// root: Put's and the sidecars' (and the host's disk checks, which write
// TempPrefix + "health-…"). A crash between creating one and renaming or
// removing it leaves it behind; RemoveTemp removes those.
const TempPrefix = reservedPrefix + "tmp-"

// Removed counts the files a clean-up removed.
type Removed struct {
	// Files is how many files were removed.
	Files int
	// Bytes is their total size.
	Bytes int64
}

// Now returns the current time as the store's file system records it: the
// modification time of a file written in the root just now. Every file
// written after Now returns is dated at or after it, even on file systems
// that keep coarse times (whole seconds, say), so it is the cut-off that
// tells the files of earlier processes from the running one's (RemoveTemp,
// results.Service.Recover). It fails when the root cannot be written.
func (s *Store) Now() (time.Time, error) {
	f, err := os.CreateTemp(s.root, TempPrefix+"now-*")
	if err != nil {
		return time.Time{}, fmt.Errorf("localstore: reading the file system's clock in %s: %w; check that the folder is writable", s.root, err)
	}
	name := f.Name()
	fi, err := f.Stat()
	f.Close()
	if rerr := os.Remove(name); err == nil && rerr != nil {
		err = rerr
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("localstore: reading the file system's clock in %s: %w", s.root, err)
	}
	return fi.ModTime(), nil
}

// readDirChunk is how many entries RemoveTemp reads from a folder at a
// time, so a folder of millions of results is never listed whole.
const readDirChunk = 1000

// RemoveTemp removes the temporary files that writes interrupted by a
// crash left anywhere under the root: regular files named TempPrefix…
// last modified before before. Pass Now's answer at process start, so the
// writes of the running process are never touched. Nothing else is
// removed: not other names, not symlinks (never followed), not folders
// (the store creates no temporary folders). A folder or file it cannot
// handle is skipped and the walk goes on; the error then names the first
// one. It stops when ctx ends and returns what it removed so far.
func (s *Store) RemoveTemp(ctx context.Context, before time.Time) (Removed, error) {
	w := &tempWalk{before: before}
	if err := w.dir(ctx, s.root); err != nil {
		return w.out, fmt.Errorf("localstore: removing interrupted temp files under %s: %w", s.root, err)
	}
	if w.first != nil {
		return w.out, fmt.Errorf("localstore: removing interrupted temp files under %s: %w; check the permissions of the results folder", s.root, w.first)
	}
	return w.out, nil
}

// tempWalk is one run of RemoveTemp.
type tempWalk struct {
	before time.Time
	out    Removed
	// first is the first folder or file that could not be handled.
	first error
}

// note remembers the first error that is not a file gone meanwhile.
func (w *tempWalk) note(err error) {
	if w.first == nil && !errors.Is(err, fs.ErrNotExist) {
		w.first = err
	}
}

// dir removes the old temp files in dir and the folders below it, reading
// readDirChunk entries at a time.
func (w *tempWalk) dir(ctx context.Context, dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		w.note(err)
		return nil
	}
	defer f.Close()
	for {
		ents, err := f.ReadDir(readDirChunk)
		for _, e := range ents {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			p := filepath.Join(dir, e.Name())
			switch {
			case e.IsDir():
				if err := w.dir(ctx, p); err != nil {
					return err
				}
			case e.Type().IsRegular() && strings.HasPrefix(e.Name(), TempPrefix):
				w.file(p, e)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			w.note(err)
			return nil
		}
	}
}

// file removes the temp file p if it was last modified before the cut-off.
func (w *tempWalk) file(p string, e fs.DirEntry) {
	fi, err := e.Info()
	if err != nil {
		w.note(err)
		return
	}
	if !fi.ModTime().Before(w.before) {
		return
	}
	if err := os.Remove(p); err != nil {
		w.note(err)
		return
	}
	w.out.Files++
	w.out.Bytes += fi.Size()
}
