package dbmigrate

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"runtime"
	"strings"
)

// sqliteSidecars are the files SQLite keeps beside a database file.
var sqliteSidecars = []string{"", "-wal", "-shm", "-journal"}

// PrivateSQLiteFile makes the SQLite database at path readable by its owner
// only (0600): it creates the database file with that mode when it is
// missing, so the -wal and -shm files SQLite derives from it get the same
// mode, and it tightens the database, -wal, -shm and -journal files that
// exist with any group or other permission (an older version created them
// 0644). It returns the files it tightened. path may be a plain path or a
// file: URI; an in-memory database (":memory:", mode=memory) is left alone.
// Open calls it for every SQLite DSN.
func PrivateSQLiteFile(dsn string) (tightened []string, err error) {
	path, ok := sqliteFilePath(dsn)
	if !ok || runtime.GOOS == "windows" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("dbmigrate: create SQLite file %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrExist):
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil // no folder: Open reports it
	default:
		return nil, fmt.Errorf("dbmigrate: create SQLite file %s with mode 0600: %w", path, err)
	}
	for _, suffix := range sqliteSidecars {
		name := path + suffix
		st, err := os.Stat(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return tightened, fmt.Errorf("dbmigrate: SQLite file %s: %w", name, err)
		}
		if !st.Mode().IsRegular() || st.Mode().Perm()&0o077 == 0 {
			continue
		}
		if err := os.Chmod(name, 0o600); err != nil {
			return tightened, fmt.Errorf("dbmigrate: SQLite file %s is readable by other users and could not be made private (%w): run chmod 600 on it as its owner", name, err)
		}
		tightened = append(tightened, name)
	}
	return tightened, nil
}

// sqliteFilePath is the file a SQLite DSN names (a path or a file: URI,
// with or without a query), or false for an in-memory database.
func sqliteFilePath(dsn string) (string, bool) {
	path, query, _ := strings.Cut(dsn, "?")
	if q, err := url.ParseQuery(query); err == nil && (q.Get("mode") == "memory" || q.Get("vfs") == "memdb") {
		return "", false
	}
	if rest, ok := strings.CutPrefix(path, "file:"); ok {
		if after, ok := strings.CutPrefix(rest, "//"); ok { // file://[localhost]/abs/path
			host, p, found := strings.Cut(after, "/")
			if !found || (host != "" && host != "localhost") {
				return "", false
			}
			rest = "/" + p
		}
		unescaped, err := url.PathUnescape(rest)
		if err != nil {
			return "", false
		}
		path = unescaped
	}
	if path == "" || path == ":memory:" || strings.HasPrefix(path, ":memory:") {
		return "", false
	}
	return path, true
}
