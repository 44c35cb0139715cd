//go:build unix

package dbmigrate

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return st.Mode().Perm()
}

// Finding 9: the SQLite file is created 0644 when its folder exists.
func TestSQLiteFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0o022) // the usual umask, which made the files 0644
	defer syscall.Umask(old)
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "magicads.db")
	db, _, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('x')`); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if m := mode(t, f); m != 0o600 {
			t.Errorf("%s is %v, want 0600", filepath.Base(f), m)
		}
	}

	// Files an older version left 0644 are tightened when opened again.
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tightened, err := PrivateSQLiteFile(path)
	if err != nil || len(tightened) != 3 {
		t.Fatalf("PrivateSQLiteFile: %v %v", tightened, err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db2, _, err := Open(ctx, "file:"+path+"?_pragma=busy_timeout(1000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	var n int
	if err := db2.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("reopened database: %d rows, %v", n, err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if m := mode(t, f); m != 0o600 {
			t.Errorf("after reopening, %s is %v, want 0600", filepath.Base(f), m)
		}
	}
	// Nothing to do for an in-memory database.
	if got, err := PrivateSQLiteFile(":memory:"); err != nil || got != nil {
		t.Fatalf(":memory:: %v %v", got, err)
	}
}

func TestSQLiteFilePath(t *testing.T) {
	cases := map[string]string{
		"/data/magicads.db":                          "/data/magicads.db",
		"data/magicads.db?_pragma=busy_timeout(100)": "data/magicads.db",
		"file:/data/magicads.db?_txlock=deferred":    "/data/magicads.db",
		"file:data/a%20b.db":                         "data/a b.db",
		"file:///data/magicads.db":                   "/data/magicads.db",
		"file://localhost/data/magicads.db":          "/data/magicads.db",
		":memory:":                                   "",
		"file::memory:?cache=shared":                 "",
		"file:x.db?mode=memory":                      "",
		"file://otherhost/x.db":                      "",
	}
	for dsn, want := range cases {
		got, ok := sqliteFilePath(dsn)
		if got != want || ok != (want != "") {
			t.Errorf("sqliteFilePath(%q) = %q, %v; want %q", dsn, got, ok, want)
		}
	}
}
