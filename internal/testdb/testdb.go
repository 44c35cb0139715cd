// Package testdb gives tests a fresh, migrated host database: a SQLite file
// or a private schema in the PostgreSQL at MAGICADS_TEST_POSTGRES.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/migrations"
)

// DefaultPostgres is used when MAGICADS_TEST_POSTGRES is not set.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DB is a test database with the host schema migrated.
type DB struct {
	*sql.DB
	Dialect dbmigrate.Dialect
	// DSN opens another connection pool to the same database (a second host node).
	DSN string
}

// Dialects lists the dialects every database test runs on.
func Dialects() []dbmigrate.Dialect { return []dbmigrate.Dialect{dbmigrate.SQLite, dbmigrate.Postgres} }

// Open returns a fresh database of the dialect with the host migrations
// applied, removed at cleanup. PostgreSQL must answer: the test fails, it
// never skips.
func Open(t testing.TB, dialect dbmigrate.Dialect) *DB {
	t.Helper()
	ctx := context.Background()
	var dsn string
	switch dialect {
	case dbmigrate.SQLite:
		dsn = filepath.Join(t.TempDir(), "magicads.db")
	case dbmigrate.Postgres:
		dsn = postgresSchema(t)
	default:
		t.Fatalf("unknown dialect %q", dialect)
	}
	db, d, err := dbmigrate.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open %s test database: %v", dialect, err)
	}
	t.Cleanup(func() { db.Close() })
	src, err := migrations.FS(string(d))
	if err != nil {
		t.Fatal(err)
	}
	if err := dbmigrate.Up(ctx, db, d, src, dbmigrate.HostTable); err != nil {
		t.Fatalf("migrating the host schema: %v", err)
	}
	return &DB{DB: db, Dialect: d, DSN: dsn}
}

// EmptyPostgres returns the DSN of a fresh, empty PostgreSQL schema (no
// host migrations applied), dropped at cleanup with what plugin installs
// left in it. It is for a host process that migrates its own schema, which
// may be a host of another version than this tree's. PostgreSQL must
// answer: the test fails, it never skips.
func EmptyPostgres(t testing.TB) string {
	t.Helper()
	return postgresSchema(t)
}

// postgresSchema creates a private schema and returns a DSN that uses it.
func postgresSchema(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	base := os.Getenv("MAGICADS_TEST_POSTGRES")
	if base == "" {
		base = DefaultPostgres
	}
	admin, _, err := dbmigrate.Open(ctx, base)
	if err == nil {
		err = admin.PingContext(ctx)
	}
	if err != nil {
		t.Fatalf("PostgreSQL at MAGICADS_TEST_POSTGRES (default %s) is required: %v", DefaultPostgres, err)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		dropPluginNamespaces(t, admin, schema)
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// dropPluginNamespaces drops what plugin installs on a host using schema
// left behind: the schemas and roles named "<schema>_…" (see
// dbmigrate.Namespaces). Roles are per cluster, so they would outlive the
// test otherwise.
func dropPluginNamespaces(t testing.TB, admin *sql.DB, schema string) {
	ctx := context.Background()
	names := func(q string) []string {
		rows, err := admin.QueryContext(ctx, q, schema+`\_%`)
		if err != nil {
			t.Errorf("listing plugin namespaces of %s: %v", schema, err)
			return nil
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var n string
			if rows.Scan(&n) == nil {
				out = append(out, n)
			}
		}
		return out
	}
	roles := names(`SELECT rolname FROM pg_roles WHERE rolname LIKE $1`)
	for _, r := range roles {
		if _, err := admin.ExecContext(ctx, `DROP OWNED BY "`+r+`"`); err != nil {
			t.Errorf("drop owned by %s: %v", r, err)
		}
	}
	for _, s := range names(`SELECT nspname FROM pg_namespace WHERE nspname LIKE $1`) {
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA "`+s+`" CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", s, err)
		}
	}
	for _, r := range roles {
		if _, err := admin.ExecContext(ctx, `DROP ROLE "`+r+`"`); err != nil {
			t.Errorf("drop role %s: %v", r, err)
		}
	}
}
