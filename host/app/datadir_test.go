//go:build unix

package app_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/testdb"
)

// Finding 9: the SQLite file, its -wal/-shm, app.key and admin.pw are 0600,
// also in a data dir that already exists, and files an older version left
// 0644 are tightened (logged once). On PostgreSQL the generated admin
// password's hash is in the database, not in the data dir.
func TestDataDirSecretsArePrivate(t *testing.T) {
	old := syscall.Umask(0o022) // the usual umask, which made the SQLite file 0644
	defer syscall.Umask(old)
	for _, dialect := range testdb.Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			dsn := ""
			secrets := []string{"app.key"}
			if dialect == dbmigrate.Postgres {
				dsn = testdb.Open(t, dialect).DSN
			} else {
				secrets = append(secrets, "admin.pw", "magicads.db", "magicads.db-wal", "magicads.db-shm")
			}
			start := func() (*app.App, *plugintest.Logs) {
				logs := &plugintest.Logs{}
				a, err := app.New(context.Background(), app.Config{DataDir: dir, DB: dsn, AdminPasswordOut: io.Discard,
					Logger: slog.New(slog.NewTextHandler(logs, nil))})
				if err != nil {
					t.Fatal(err)
				}
				// A write, so SQLite has its -wal and -shm.
				if _, err := a.DB.ExecContext(context.Background(), `CREATE TABLE IF NOT EXISTS perm_probe (v TEXT)`); err != nil {
					t.Fatal(err)
				}
				if _, err := a.DB.ExecContext(context.Background(), `INSERT INTO perm_probe (v) VALUES ('x')`); err != nil {
					t.Fatal(err)
				}
				return a, logs
			}
			stop := func(a *app.App) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if err := a.Close(ctx); err != nil {
					t.Fatal(err)
				}
			}
			check := func(when string) {
				for _, name := range secrets {
					st, err := os.Stat(filepath.Join(dir, name))
					if err != nil {
						t.Fatalf("%s: %v", when, err)
					}
					if st.Mode().Perm() != 0o600 {
						t.Errorf("%s: %s is %v, want 0600", when, name, st.Mode().Perm())
					}
				}
				for _, name := range []string{"magicads.db", "admin.pw"} {
					if _, err := os.Stat(filepath.Join(dir, name)); dialect == dbmigrate.Postgres && err == nil {
						t.Errorf("%s: %s was created with --db postgres", when, name)
					}
				}
			}
			a, _ := start()
			check("first start")
			// An older version's files: 0644.
			for _, name := range secrets {
				if err := os.Chmod(filepath.Join(dir, name), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			stop(a)
			a, logs := start()
			defer stop(a)
			check("restart over 0644 files")
			if n := strings.Count(logs.String(), "made private"); n != 1 {
				t.Fatalf("%d log lines about tightened files, want 1:\n%s", n, logs.String())
			}
			if !strings.Contains(logs.String(), "app.key") || (dialect == dbmigrate.SQLite && !strings.Contains(logs.String(), "admin.pw")) {
				t.Fatalf("the log line does not name the files:\n%s", logs.String())
			}
		})
	}
}

// TestSecondHostOnTheSameDataDirRefuses: a data dir belongs to one host
// process: a second one started on it (same SQLite file, or the same
// local results with PostgreSQL) refuses to start, naming the data dir,
// the process holding it and the fix; once the first stops, it starts.
func TestSecondHostOnTheSameDataDirRefuses(t *testing.T) {
	for _, dialect := range testdb.Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			dir := t.TempDir()
			dsn := ""
			if dialect == dbmigrate.Postgres {
				dsn = testdb.Open(t, dialect).DSN
			}
			cfg := app.Config{DataDir: dir, DB: dsn, AdminPasswordOut: io.Discard}
			first, err := app.New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			second, err := app.New(context.Background(), cfg)
			if err == nil {
				second.Close(context.Background())
				t.Fatal("a second host started on the data dir of a running one")
			}
			for _, want := range []string{dir, "already used by another magicads process", "its own --data-dir"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("second host: %v; want it to say %q", err, want)
				}
			}
			if err := first.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			again, err := app.New(context.Background(), cfg)
			if err != nil {
				t.Fatalf("starting again once the first host stopped: %v", err)
			}
			again.Close(context.Background())
		})
	}
}
