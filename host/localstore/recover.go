package localstore

import (
	"context"
	"errors"
	"fmt"
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

// RemoveTemp removes the temporary files that writes interrupted by a
// crash left anywhere under the root: regular files named TempPrefix…
// last modified before before. Pass Now's answer at process start, so the
// writes of the running process are never touched. Nothing else is
// removed: not other names, not symlinks, not folders (the store creates
// no temporary folders). A folder or file it cannot handle is skipped and
// the walk goes on; the error then names the first one. It stops when ctx
// ends and returns what it removed so far.
func (s *Store) RemoveTemp(ctx context.Context, before time.Time) (Removed, error) {
	var out Removed
	var first error
	note := func(err error) {
		if first == nil {
			first = err
		}
	}
	err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile
			}
			note(err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), TempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				note(err)
			}
			return nil
		}
		if !fi.ModTime().Before(before) {
			return nil
		}
		if err := os.Remove(p); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				note(err)
			}
			return nil
		}
		out.Files++
		out.Bytes += fi.Size()
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("localstore: removing interrupted temp files under %s: %w", s.root, err)
	}
	if first != nil {
		return out, fmt.Errorf("localstore: removing interrupted temp files under %s: %w; check the permissions of the results folder", s.root, first)
	}
	return out, nil
}
