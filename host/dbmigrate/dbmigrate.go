// Package dbmigrate opens the host database (SQLite or PostgreSQL) and runs
// golang-migrate migrations from an fs.FS into a named migrations table, so
// the host (schema_migrations) and every plugin (schema_migrations_<id>)
// keep their own migration history in the same database.
//
// Closing the migrate instance never closes the caller's *sql.DB: on SQLite
// the migrate instance is simply not closed (the golang-migrate sqlite
// driver holds nothing but the *sql.DB, and its Close would close it); on
// PostgreSQL the migrations run on a private two-connection pool opened with
// the caller's connection settings, which the migrate instance owns and
// closes (the golang-migrate pgx driver keeps a dedicated *sql.Conn checked
// out until Close, so leaving it open would leak a connection per run).
//
// Migrations run one file per migrate call (Steps), which leaves no
// golang-migrate goroutine behind when a migration fails. Each file must be
// transactional as a whole — no BEGIN/COMMIT of its own — so that a failed
// file leaves nothing behind and the table can be reset to the last clean
// version. On PostgreSQL concurrent runs on one table are serialized by an
// advisory lock; on SQLite the golang-migrate lock is per call, so run one
// table's migrations from one goroutine at a time.
package dbmigrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	migratesqlite "github.com/golang-migrate/migrate/v4/database/sqlite"
	"github.com/golang-migrate/migrate/v4/source"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Dialect is the SQL dialect of a database opened by Open.
type Dialect string

// Supported dialects. Their values match the folder names of
// host/migrations.
const (
	// SQLite is a SQLite file through modernc.org/sqlite (no cgo).
	SQLite Dialect = "sqlite"
	// Postgres is PostgreSQL through the pgx v5 database/sql driver.
	Postgres Dialect = "postgres"
)

// HostTable is the migrations table of the host's own migrations.
const HostTable = "schema_migrations"

// sqliteDefaults returns the connection settings Open adds to a SQLite path,
// each unless the DSN already sets it: wait up to 5 s for a lock, WAL
// journal, enforced foreign keys, and BEGIN IMMEDIATE so concurrent writers
// queue on busy_timeout instead of failing on a lock upgrade.
func sqliteDefaults() []struct{ marker, param string } {
	return []struct{ marker, param string }{
		{"busy_timeout", "_pragma=busy_timeout(5000)"},
		{"journal_mode", "_pragma=journal_mode(WAL)"},
		{"foreign_keys", "_pragma=foreign_keys(1)"},
		{"synchronous", "_pragma=synchronous(NORMAL)"},
		{"_txlock", "_txlock=immediate"},
	}
}

// Waits Open bounds on PostgreSQL unless the DSN sets its own.
const (
	// DefaultConnectTimeout bounds opening one connection, TLS and
	// authentication included (the DSN's connect_timeout, in seconds, or
	// PGCONNECT_TIMEOUT win; 0 there waits forever).
	DefaultConnectTimeout = 5 * time.Second
	// DefaultStatementTimeout is the server-side statement_timeout of every
	// session (the DSN's statement_timeout wins). Migrations run without it.
	DefaultStatementTimeout = "30s"
)

// postgresDefaults adds DefaultConnectTimeout and DefaultStatementTimeout
// to cfg unless dsn (or the environment, for the connect timeout) sets them,
// so a server that stops answering fails a connection attempt in seconds
// and a statement stuck on the server (a lock wait) ends there too.
func postgresDefaults(dsn string, cfg *pgx.ConnConfig) {
	setsConnect := os.Getenv("PGCONNECT_TIMEOUT") != ""
	if u, err := url.Parse(dsn); err == nil && u.Query().Has("connect_timeout") {
		setsConnect = true
	}
	if !setsConnect {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if _, ok := cfg.RuntimeParams["statement_timeout"]; !ok {
		cfg.RuntimeParams["statement_timeout"] = DefaultStatementTimeout
	}
}

// tableName is what a migrations table may be called: a plain lower-case
// identifier, safe to splice into SQL unquoted on both dialects.
var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// PluginTable returns the migrations table of a plugin:
// "schema_migrations_" + the plugin id with hyphens as underscores
// (cloudflare-r2 → schema_migrations_cloudflare_r2). A name over 63
// characters (PostgreSQL's identifier limit) is cut and made unique with a
// hash of the id.
func PluginTable(pluginID string) string {
	name := HostTable + "_" + strings.ReplaceAll(pluginID, "-", "_")
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(pluginID))
	return name[:54] + "_" + hex.EncodeToString(sum[:4])
}

// Open opens the database named by dsn and checks it answers. A dsn starting
// with postgres:// or postgresql:// is PostgreSQL (pgx v5 stdlib), opened
// with connect_timeout 5 s and statement_timeout 30 s unless the dsn sets
// them (see DefaultConnectTimeout); anything
// else is a SQLite file path (or a file: URI), opened with busy_timeout(5000),
// journal_mode(WAL), foreign_keys(1) and _txlock=immediate unless the dsn's
// query already sets them, after PrivateSQLiteFile made the file 0600. The
// caller closes the returned *sql.DB.
func Open(ctx context.Context, dsn string) (*sql.DB, Dialect, error) {
	if dsn == "" {
		return nil, "", errors.New("dbmigrate: empty database DSN")
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, "", fmt.Errorf("dbmigrate: postgres DSN: %w", err)
		}
		postgresDefaults(dsn, cfg)
		db := stdlib.OpenDB(*cfg)
		if err := db.PingContext(ctx); err != nil {
			_ = db.Close()
			return nil, "", fmt.Errorf("dbmigrate: connect to postgres database %q on %s:%d as %q: %w", cfg.Database, cfg.Host, cfg.Port, cfg.User, err)
		}
		return db, Postgres, nil
	}
	path, query, _ := strings.Cut(dsn, "?")
	if path == "" {
		return nil, "", fmt.Errorf("dbmigrate: SQLite DSN %q has no file path", dsn)
	}
	params := []string{}
	if query != "" {
		params = append(params, query)
	}
	for _, d := range sqliteDefaults() {
		if !strings.Contains(query, d.marker) {
			params = append(params, d.param)
		}
	}
	if _, err := PrivateSQLiteFile(dsn); err != nil {
		return nil, "", err
	}
	db, err := sql.Open("sqlite", path+"?"+strings.Join(params, "&"))
	if err != nil {
		return nil, "", fmt.Errorf("dbmigrate: open SQLite %q: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, "", fmt.Errorf("dbmigrate: open SQLite %q (does its folder exist and is it writable?): %w", path, err)
	}
	return db, SQLite, nil
}

// Up applies every migration in src that table has not recorded yet.
// src holds golang-migrate files at its root (000001_name.up.sql, …).
// Nothing to do (migrate.ErrNoChange, or no migration files) is success.
// A failed migration is rolled back as a whole (SQLite runs each file in a
// transaction; PostgreSQL runs each file as one implicit transaction), so
// the table is reset to the last version that applied cleanly and the
// error names the failing version and the table.
func Up(ctx context.Context, db *sql.DB, dialect Dialect, src fs.FS, table string) error {
	return run(ctx, db, dialect, src, table, true, -1, nil)
}

// Down reverts every migration table has recorded, newest first, using the
// down files in src. Errors are reported like Up's.
func Down(ctx context.Context, db *sql.DB, dialect Dialect, src fs.FS, table string) error {
	return run(ctx, db, dialect, src, table, false, -1, nil)
}

// DownTo reverts the migrations newer than version (0 or a Status with
// Applied false: all of them), newest first: what an update that failed
// after migrating undoes. Errors are reported like Up's.
func DownTo(ctx context.Context, db *sql.DB, dialect Dialect, src fs.FS, table string, to Status) error {
	target := int64(-1)
	if to.Applied {
		target = int64(to.Version)
	}
	return run(ctx, db, dialect, src, table, false, target, nil)
}

// Status is what a migrations table records.
type Status struct {
	// Applied is false when no migration is recorded (table missing or empty).
	Applied bool
	// Version is the last migration applied.
	Version uint
	// Dirty is true when that migration failed part-way.
	Dirty bool
}

// Version reads the state recorded in a migrations table without changing
// anything; a missing table reads as nothing applied.
func Version(ctx context.Context, db *sql.DB, dialect Dialect, table string) (Status, error) {
	if err := check(db, dialect, table); err != nil {
		return Status{}, err
	}
	var exists bool
	var err error
	switch dialect {
	case SQLite:
		err = db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)`, table).Scan(&exists)
	default:
		err = db.QueryRowContext(ctx, `SELECT to_regclass(quote_ident(current_schema()) || '.' || quote_ident($1)) IS NOT NULL`, table).Scan(&exists)
	}
	if err != nil {
		return Status{}, fmt.Errorf("dbmigrate: table %q: look up: %w", table, err)
	}
	if !exists {
		return Status{}, nil
	}
	var st Status
	var version int64
	err = db.QueryRowContext(ctx, `SELECT version, dirty FROM `+table+` LIMIT 1`).Scan(&version, &st.Dirty)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Status{}, nil
	case err != nil:
		return Status{}, fmt.Errorf("dbmigrate: table %q: read version: %w", table, err)
	case version < 0:
		// golang-migrate records a failed down of the first migration as -1, dirty.
		return Status{Dirty: st.Dirty}, nil
	}
	st.Applied = true
	st.Version = uint(version)
	return st, nil
}

// check validates the arguments shared by every call.
func check(db *sql.DB, dialect Dialect, table string) error {
	if db == nil {
		return errors.New("dbmigrate: nil *sql.DB")
	}
	if dialect != SQLite && dialect != Postgres {
		return fmt.Errorf("dbmigrate: unknown dialect %q (want %q or %q)", dialect, SQLite, Postgres)
	}
	if !tableName.MatchString(table) {
		return fmt.Errorf("dbmigrate: invalid migrations table name %q (want lower-case letters, digits and _, at most 63)", table)
	}
	return nil
}

// run performs Up (up=true) or Down on table; a down stops once the
// recorded version is at or below downTo (-1: reverts everything). exec,
// when set, runs each migration file's SQL in place of the driver (which
// then only keeps the migrations table in db).
func run(ctx context.Context, db *sql.DB, dialect Dialect, src fs.FS, table string, up bool, downTo int64, exec func(body []byte) error) error {
	if err := check(db, dialect, table); err != nil {
		return err
	}
	direction := "down"
	if up {
		direction = "up"
	}
	if src == nil {
		return fmt.Errorf("dbmigrate: table %q: nil migrations fs.FS", table)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dbmigrate: table %q: %s: %w", table, direction, err)
	}
	n, err := countMigrations(src)
	if err != nil {
		return fmt.Errorf("dbmigrate: table %q: read migrations: %w", table, err)
	}
	if n == 0 {
		return nil
	}
	srcDrv, err := iofs.New(src, ".")
	if err != nil {
		return fmt.Errorf("dbmigrate: table %q: read migrations: %w", table, err)
	}

	var (
		dbDrv   database.Driver
		release func() error
	)
	switch dialect {
	case SQLite:
		dbDrv, err = migratesqlite.WithInstance(db, &migratesqlite.Config{MigrationsTable: table})
		if err != nil {
			_ = srcDrv.Close()
			return fmt.Errorf("dbmigrate: table %q: prepare SQLite migrations table: %w", table, err)
		}
	case Postgres:
		own, err := privatePool(ctx, db)
		if err != nil {
			_ = srcDrv.Close()
			return fmt.Errorf("dbmigrate: table %q: %w", table, err)
		}
		dbDrv, err = migratepgx.WithInstance(own, &migratepgx.Config{MigrationsTable: table})
		if err != nil {
			_ = own.Close()
			_ = srcDrv.Close()
			return fmt.Errorf("dbmigrate: table %q: prepare PostgreSQL migrations table: %w", table, err)
		}
	}
	if exec != nil {
		dbDrv = execDriver{Driver: dbDrv, exec: exec}
	}
	m, err := migrate.NewWithInstance("iofs", srcDrv, string(dialect), dbDrv)
	if err != nil {
		_ = srcDrv.Close()
		if dialect == Postgres {
			_ = dbDrv.Close()
		}
		return fmt.Errorf("dbmigrate: table %q: %w", table, err)
	}
	if dialect == Postgres {
		// Closes the private pool and the driver's dedicated connection.
		release = func() error {
			srcErr, dbErr := m.Close()
			return errors.Join(srcErr, dbErr)
		}
	} else {
		// m.Close would close the caller's *sql.DB (the sqlite driver's
		// Close is db.Close); the driver holds nothing else.
		release = srcDrv.Close
	}
	defer func() { _ = release() }()

	// One migration per call: golang-migrate's Up and Down prefetch the
	// following migrations in goroutines that outlive a failed run (they
	// keep reading src and block forever on unread buffers). Steps(±1)
	// reads exactly the migration it runs, and gives a place to check ctx.
	// The version read here is a hint taken without the lock; Steps reads
	// it again under the lock (and refuses a dirty table).
	for i := 0; i <= n+1; i++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("dbmigrate: table %q: %s interrupted: %w", table, direction, err)
		}
		cur, _, err := dbDrv.Version()
		if err != nil {
			return fmt.Errorf("dbmigrate: table %q: read version: %w", table, err)
		}
		var attempt uint
		if up {
			if cur == database.NilVersion {
				attempt, err = srcDrv.First()
			} else {
				attempt, err = srcDrv.Next(uint(cur))
			}
			if errors.Is(err, fs.ErrNotExist) {
				// Nothing pending. Up also checks that the recorded
				// version is one src knows, and runs nothing here.
				err = m.Up()
				if err == nil || errors.Is(err, migrate.ErrNoChange) {
					return nil
				}
				var dirty migrate.ErrDirty
				if errors.As(err, &dirty) {
					return dirtyError(table, dirty.Version)
				}
				return fmt.Errorf("dbmigrate: table %q: at version %s: %w", table, versionString(cur), err)
			}
			if err != nil {
				return fmt.Errorf("dbmigrate: table %q: read migrations: %w", table, err)
			}
			err = m.Steps(1)
		} else {
			if cur == database.NilVersion || (downTo >= 0 && int64(cur) <= downTo) {
				return nil
			}
			attempt = uint(cur)
			err = m.Steps(-1)
		}
		if err == nil {
			continue
		}
		var dirty migrate.ErrDirty
		if errors.As(err, &dirty) {
			return dirtyError(table, dirty.Version)
		}
		if up && errors.Is(err, fs.ErrNotExist) {
			// Another process applied the pending migrations between our
			// look and the lock: look again.
			if _, d, verr := dbDrv.Version(); verr == nil && !d {
				continue
			}
		}
		return failed(dbDrv, srcDrv, table, up, attempt, err)
	}
	return fmt.Errorf("dbmigrate: table %q: %s did not finish after %d migrations", table, direction, n+1)
}

// execDriver is a migrate database driver whose Run hands each migration
// file to exec; everything else (the migrations table, the lock) is the
// wrapped driver's.
type execDriver struct {
	database.Driver
	exec func(body []byte) error
}

// Run runs one migration file through exec. A failure is reported as the
// file's own (a database.Error carrying the file's SQL), which tells failed
// that the file was rolled back as a whole.
func (d execDriver) Run(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if err := d.exec(body); err != nil {
		return &database.Error{OrigErr: err, Err: "migration failed", Query: body}
	}
	return nil
}

// dirtyError reports a table left dirty by an earlier failed migration.
func dirtyError(table string, version int) error {
	return fmt.Errorf("dbmigrate: table %q is dirty at version %s (a migration failed part-way earlier): repair the database, then force the version: %w", table, versionString(version), migrate.ErrDirty{Version: version})
}

// failed reports a failed Steps call for the migration file of version
// attempt. When the file's own SQL failed, the file was rolled back as a
// whole (SQLite runs it in a transaction, PostgreSQL as one implicit
// transaction), so the dirty marker golang-migrate left is reset to the
// last clean version — under the migration lock, and only if the table
// still shows that marker, so a concurrent run is never overridden.
func failed(dbDrv database.Driver, srcDrv source.Driver, table string, up bool, attempt uint, runErr error) error {
	direction := "down"
	if up {
		direction = "up"
	}
	name := migrationName(srcDrv, attempt, up)
	qErr, ok := asQueryError(runErr)
	body, bodyErr := readBody(srcDrv, attempt, up)
	if !ok || bodyErr != nil || !bytes.Equal(qErr.Query, body) {
		return fmt.Errorf("dbmigrate: table %q: %s migration %s: %w", table, direction, name, runErr)
	}
	cause := qErr.OrigErr
	if cause == nil {
		cause = runErr
	}
	if qErr.Line > 0 {
		cause = fmt.Errorf("line %d: %w", qErr.Line, cause)
	}

	// golang-migrate marks the target version dirty before running a file:
	// for up, the file's own version; for down, the version before it.
	prev := database.NilVersion
	if p, err := srcDrv.Prev(attempt); err == nil {
		prev = int(p)
	}
	dirtyAt, clean := int(attempt), prev
	if !up {
		dirtyAt, clean = prev, int(attempt)
	}
	if err := resetDirty(dbDrv, dirtyAt, clean); err != nil {
		return fmt.Errorf("dbmigrate: table %q: %s migration %s failed, and resetting the table to version %s failed too (it stays dirty at %s): %w", table, direction, name, versionString(clean), versionString(dirtyAt), errors.Join(cause, err))
	}
	return fmt.Errorf("dbmigrate: table %q: %s migration %s failed and was rolled back (table at version %s): %w", table, direction, name, versionString(clean), cause)
}

// resetDirty sets the table to clean if, under the migration lock, it is
// still dirty at dirtyAt.
func resetDirty(dbDrv database.Driver, dirtyAt, clean int) (err error) {
	if err := dbDrv.Lock(); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, dbDrv.Unlock()) }()
	v, dirty, err := dbDrv.Version()
	if err != nil {
		return err
	}
	if !dirty || v != dirtyAt {
		return nil
	}
	return dbDrv.SetVersion(clean, false)
}

// asQueryError finds golang-migrate's database.Error (returned by value or
// by pointer, depending on the driver) in err.
func asQueryError(err error) (database.Error, bool) {
	var p *database.Error
	if errors.As(err, &p) && p != nil {
		return *p, true
	}
	var v database.Error
	if errors.As(err, &v) {
		return v, true
	}
	return database.Error{}, false
}

// readBody reads the up or down file of version.
func readBody(srcDrv source.Driver, version uint, up bool) ([]byte, error) {
	var (
		r   io.ReadCloser
		err error
	)
	if up {
		r, _, err = srcDrv.ReadUp(version)
	} else {
		r, _, err = srcDrv.ReadDown(version)
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = r.Close() }()
	return io.ReadAll(r)
}

// migrationName shows a migration as "1 (register_provider)".
func migrationName(srcDrv source.Driver, version uint, up bool) string {
	var (
		r   io.ReadCloser
		id  string
		err error
	)
	if up {
		r, id, err = srcDrv.ReadUp(version)
	} else {
		r, id, err = srcDrv.ReadDown(version)
	}
	if err != nil {
		return fmt.Sprint(version)
	}
	_ = r.Close()
	return fmt.Sprintf("%d (%s)", version, id)
}

// versionString shows a migration version, "none" for database.NilVersion.
func versionString(v int) string {
	if v == database.NilVersion {
		return "none"
	}
	return fmt.Sprint(v)
}

// countMigrations counts the golang-migrate files at the root of src.
func countMigrations(src fs.FS) (int, error) {
	entries, err := fs.ReadDir(src, ".")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if _, err := source.DefaultParse(e.Name()); err == nil {
			n++
		}
	}
	return n, nil
}

// privatePool opens a small pool with the connection settings of db, which
// must use the pgx v5 database/sql driver. Settings applied with SET on a
// live session are not carried over; put them (e.g. search_path) in the DSN.
func privatePool(ctx context.Context, db *sql.DB) (*sql.DB, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	defer func() { _ = conn.Close() }()
	var cfg *pgx.ConnConfig
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("postgres *sql.DB must use the pgx v5 stdlib driver (got %T)", dc)
		}
		cfg = c.Conn().Config()
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A migration may rewrite a large table: no statement timeout here.
	cfg.RuntimeParams["statement_timeout"] = "0"
	own := stdlib.OpenDB(*cfg)
	// The pgx migrate driver pins one connection and pings on another.
	own.SetMaxOpenConns(2)
	if err := own.PingContext(ctx); err != nil {
		_ = own.Close()
		return nil, fmt.Errorf("connect to postgres database %q: %w", cfg.Database, err)
	}
	return own, nil
}
