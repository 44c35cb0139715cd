package dbmigrate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// pluginID is what a plugin id may be (the manifest's id pattern).
var pluginID = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,62}$`)

// PluginDBFile is the name of a plugin's SQLite database inside its folder
// of the plugins dir (<dir>/<id>/plugin.db).
const PluginDBFile = "plugin.db"

// Namespaces runs each plugin's migrations in a namespace of its own, from
// which the host's tables cannot be read or changed:
//
//   - PostgreSQL: a schema ("plugin_<id>", hyphens as underscores, prefixed
//     with "<host schema>_" when the host does not use public) and a NOLOGIN
//     role ("<schema>_<hash>", roles being per cluster) with USAGE and
//     CREATE on that schema and no other right. Each migration file runs in
//     a session of its own, in one transaction, as the body of a SECURITY
//     DEFINER function owned by the role with search_path set to the
//     schema: the SQL runs with the role's rights only, and PostgreSQL
//     refuses SET ROLE, RESET ROLE and SET SESSION AUTHORIZATION inside it
//     (a plain SET ROLE could be undone by the migration with RESET ROLE).
//     The function is made for that one call and dropped; the transaction
//     commits only if the role then owns nothing outside its schema. The
//     session is closed afterwards, so nothing the migration set or made
//     (settings, temporary objects, locks) outlives it.
//   - SQLite: a database file of its own, <dir>/<id>/plugin.db (mode 0600).
//     Each migration file runs in one transaction on a connection that
//     attaches no other database (SQLITE_LIMIT_ATTACHED is 0) and whose
//     authorizer refuses ATTACH, DETACH, transaction statements (a COMMIT
//     would end the file's transaction early) and load_extension.
//
// The plugin's migrations table (PluginTable) stays in the host database,
// written by the host only, so a plugin cannot rewrite its own history and
// the host never reads a table the plugin owns.
//
// The host's PostgreSQL user needs CREATEROLE (to make each plugin's role)
// and CREATE on the database (to make its schema).
type Namespaces struct {
	db      *sql.DB
	dialect Dialect
	dir     string
}

// NewNamespaces returns the plugin namespaces of the host database db. dir
// is the plugins dir, which holds each plugin's SQLite database (unused on
// PostgreSQL).
func NewNamespaces(db *sql.DB, dialect Dialect, dir string) *Namespaces {
	return &Namespaces{db: db, dialect: dialect, dir: dir}
}

// pgNames are a plugin's PostgreSQL schema and role.
type pgNames struct{ schema, role string }

// names returns a plugin's schema and role, derived from the host's schema
// and database so that hosts sharing a PostgreSQL cluster never collide.
func (n *Namespaces) names(ctx context.Context, id string) (pgNames, error) {
	var host, database sql.NullString
	if err := n.db.QueryRowContext(ctx, `SELECT current_schema(), current_database()`).Scan(&host, &database); err != nil {
		return pgNames{}, fmt.Errorf("dbmigrate: plugin %s: reading the host's schema: %w", id, err)
	}
	if !host.Valid || host.String == "" {
		return pgNames{}, fmt.Errorf("dbmigrate: plugin %s: the host's search_path names no existing schema: set search_path in the database URL", id)
	}
	schema := "plugin_" + strings.ReplaceAll(id, "-", "_")
	if host.String != "public" {
		schema = host.String + "_" + schema
	}
	if len(schema) > 63 {
		sum := sha256.Sum256([]byte(host.String + "\x00" + id))
		schema = schema[:54] + "_" + hex.EncodeToString(sum[:4])
	}
	sum := sha256.Sum256([]byte(database.String + "\x00" + schema))
	role := schema
	if len(role) > 54 {
		role = role[:54]
	}
	return pgNames{schema: schema, role: role + "_" + hex.EncodeToString(sum[:4])}, nil
}

// dbFile is a plugin's SQLite database.
func (n *Namespaces) dbFile(id string) string {
	return filepath.Join(n.dir, id, PluginDBFile)
}

// check validates the arguments shared by every call.
func (n *Namespaces) check(id string) error {
	if n == nil || n.db == nil {
		return errors.New("dbmigrate: plugin namespaces without a database")
	}
	if n.dialect != SQLite && n.dialect != Postgres {
		return fmt.Errorf("dbmigrate: unknown dialect %q (want %q or %q)", n.dialect, SQLite, Postgres)
	}
	if !pluginID.MatchString(id) {
		return fmt.Errorf("dbmigrate: invalid plugin id %q (want 2–63 lowercase letters, digits or hyphens)", id)
	}
	if n.dialect == SQLite && n.dir == "" {
		return fmt.Errorf("dbmigrate: plugin %s: no plugins dir to keep its SQLite database in", id)
	}
	return nil
}

// Location describes a plugin's namespace for messages: its PostgreSQL
// schema and role, or its SQLite file.
func (n *Namespaces) Location(ctx context.Context, id string) (string, error) {
	if err := n.check(id); err != nil {
		return "", err
	}
	if n.dialect == SQLite {
		return "SQLite database " + n.dbFile(id), nil
	}
	nm, err := n.names(ctx, id)
	if err != nil {
		return "", err
	}
	return "PostgreSQL schema " + nm.schema + " as role " + nm.role, nil
}

// Version reads what the plugin's migrations table records.
func (n *Namespaces) Version(ctx context.Context, id string) (Status, error) {
	if err := n.check(id); err != nil {
		return Status{}, err
	}
	return Version(ctx, n.db, n.dialect, PluginTable(id))
}

// Up applies the plugin's pending migrations (src as for the package Up) in
// its namespace, creating the namespace first. A plugin without migration
// files gets no namespace. Errors are reported like Up's; a file that tries
// to reach beyond its namespace fails and is rolled back.
func (n *Namespaces) Up(ctx context.Context, id string, src fs.FS) error {
	return n.run(ctx, id, src, true, -1)
}

// DownTo reverts the plugin's migrations newer than to (see the package
// DownTo), in its namespace.
func (n *Namespaces) DownTo(ctx context.Context, id string, src fs.FS, to Status) error {
	target := int64(-1)
	if to.Applied {
		target = int64(to.Version)
	}
	return n.run(ctx, id, src, false, target)
}

// Down reverts every migration of the plugin, in its namespace.
func (n *Namespaces) Down(ctx context.Context, id string, src fs.FS) error {
	return n.run(ctx, id, src, false, -1)
}

func (n *Namespaces) run(ctx context.Context, id string, src fs.FS, up bool, downTo int64) error {
	if err := n.check(id); err != nil {
		return err
	}
	if src == nil {
		return fmt.Errorf("dbmigrate: plugin %s: nil migrations fs.FS", id)
	}
	count, err := countMigrations(src)
	if err != nil {
		return fmt.Errorf("dbmigrate: plugin %s: read migrations: %w", id, err)
	}
	if count == 0 {
		return nil
	}
	if !up {
		// Nothing recorded: nothing to revert, and no namespace to make.
		st, err := n.Version(ctx, id)
		if err != nil {
			return err
		}
		if !st.Applied && !st.Dirty {
			return nil
		}
	}
	// The namespace is made on the first migration with a statement in it,
	// so a plugin whose migrations are empty (R2's) needs none, and on
	// PostgreSQL no role is created for it.
	var exec func(body []byte) error
	switch n.dialect {
	case Postgres:
		var nm *pgNames
		exec = func(body []byte) error {
			if noStatements(body) {
				return nil
			}
			if nm == nil {
				made, err := n.ensurePostgres(ctx, id)
				if err != nil {
					return err
				}
				nm = &made
			}
			return n.execPostgres(ctx, *nm, body)
		}
	default:
		file := ""
		exec = func(body []byte) error {
			if noStatements(body) {
				return nil
			}
			if file == "" {
				made, err := n.ensureSQLite(id)
				if err != nil {
					return err
				}
				file = made
			}
			return execSQLite(ctx, file, body)
		}
	}
	return run(ctx, n.db, n.dialect, src, PluginTable(id), up, downTo, exec)
}

// noStatements reports whether a migration holds only blank lines and
// "--" comments.
func noStatements(body []byte) bool {
	for _, line := range strings.Split(string(body), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "--") {
			return false
		}
	}
	return true
}

// Drop removes the plugin's namespace (on PostgreSQL its schema, everything
// its role owns, and the role; on SQLite its database file) and its
// migrations table. Run the down migrations first where they matter; Drop
// removes whatever they leave. A missing namespace is not an error.
func (n *Namespaces) Drop(ctx context.Context, id string) error {
	if err := n.check(id); err != nil {
		return err
	}
	table := PluginTable(id)
	if n.dialect == SQLite {
		file := n.dbFile(id)
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			if err := os.Remove(file + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("dbmigrate: plugin %s: removing its database: %w", id, err)
			}
		}
		// The plugin's folder goes too if nothing else is in it.
		_ = os.Remove(filepath.Dir(file))
		if _, err := n.db.ExecContext(ctx, `DROP TABLE IF EXISTS `+table); err != nil {
			return fmt.Errorf("dbmigrate: plugin %s: dropping its migrations table %s: %w", id, table, err)
		}
		return nil
	}
	nm, err := n.names(ctx, id)
	if err != nil {
		return err
	}
	tx, err := n.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("dbmigrate: plugin %s: drop namespace: %w", id, err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('magicads plugin namespace ' || $1, 0))`, nm.role); err != nil {
		return fmt.Errorf("dbmigrate: plugin %s: drop namespace: lock: %w", id, err)
	}
	var roleExists bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)`, nm.role).Scan(&roleExists); err != nil {
		return fmt.Errorf("dbmigrate: plugin %s: drop namespace: %w", id, err)
	}
	schema, role := pgx.Identifier{nm.schema}.Sanitize(), pgx.Identifier{nm.role}.Sanitize()
	steps := []string{}
	if roleExists {
		steps = append(steps, `DROP OWNED BY `+role)
	}
	steps = append(steps, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`)
	if roleExists {
		steps = append(steps, `DROP ROLE `+role)
	}
	steps = append(steps, `DROP TABLE IF EXISTS `+table)
	for _, q := range steps {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("dbmigrate: plugin %s: drop namespace (%s): %w", id, q, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("dbmigrate: plugin %s: drop namespace: commit: %w", id, err)
	}
	return nil
}

// ensurePostgres creates the plugin's role and schema unless they exist.
func (n *Namespaces) ensurePostgres(ctx context.Context, id string) (pgNames, error) {
	nm, err := n.names(ctx, id)
	if err != nil {
		return pgNames{}, err
	}
	tx, err := n.db.BeginTx(ctx, nil)
	if err != nil {
		return pgNames{}, fmt.Errorf("dbmigrate: plugin %s: create namespace: %w", id, err)
	}
	defer func() { _ = tx.Rollback() }()
	// Serialises hosts creating or dropping the same namespace.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('magicads plugin namespace ' || $1, 0))`, nm.role); err != nil {
		return pgNames{}, fmt.Errorf("dbmigrate: plugin %s: create namespace: lock: %w", id, err)
	}
	var roleExists bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)`, nm.role).Scan(&roleExists); err != nil {
		return pgNames{}, fmt.Errorf("dbmigrate: plugin %s: create namespace: %w", id, err)
	}
	schema, role := pgx.Identifier{nm.schema}.Sanitize(), pgx.Identifier{nm.role}.Sanitize()
	if !roleExists {
		if _, err := tx.ExecContext(ctx, `CREATE ROLE `+role+` NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS`); err != nil {
			var user string
			_ = n.db.QueryRowContext(ctx, `SELECT current_user`).Scan(&user)
			return pgNames{}, fmt.Errorf("dbmigrate: plugin %s: creating its database role %s failed; the host's database user %q needs CREATEROLE to give each plugin a role of its own (ALTER ROLE %s CREATEROLE): %w", id, nm.role, user, user, err)
		}
	}
	for _, q := range []string{
		// The host must be able to hand the role the migration function
		// and to drop what the role owns.
		`GRANT ` + role + ` TO CURRENT_USER`,
		`CREATE SCHEMA IF NOT EXISTS ` + schema,
		`REVOKE ALL ON SCHEMA ` + schema + ` FROM PUBLIC`,
		`GRANT USAGE, CREATE ON SCHEMA ` + schema + ` TO ` + role,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return pgNames{}, fmt.Errorf("dbmigrate: plugin %s: creating its schema %s failed (the host's database user needs CREATE on the database): %s: %w", id, nm.schema, q, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return pgNames{}, fmt.Errorf("dbmigrate: plugin %s: create namespace: commit: %w", id, err)
	}
	return nm, nil
}

// execPostgres runs one migration file as the plugin's role, confined to
// its schema, in a session and transaction of its own.
func (n *Namespaces) execPostgres(ctx context.Context, nm pgNames, body []byte) (err error) {
	pool, err := privatePool(ctx, n.db)
	if err != nil {
		return err
	}
	// Closing the pool ends the session with everything the migration set.
	defer func() { _ = pool.Close() }()
	pool.SetMaxOpenConns(1)
	conn, err := pool.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer func() { _ = conn.Close() }()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	var suffix [8]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return err
	}
	schema, role := pgx.Identifier{nm.schema}.Sanitize(), pgx.Identifier{nm.role}.Sanitize()
	fn := schema + "." + pgx.Identifier{"magicads_migrate_" + hex.EncodeToString(suffix[:])}.Sanitize()
	for _, q := range []string{
		`CREATE FUNCTION ` + fn + `(body pg_catalog.text) RETURNS pg_catalog.void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ` + schema + ` AS $magicads$ BEGIN EXECUTE body; END $magicads$`,
		`REVOKE ALL ON FUNCTION ` + fn + `(pg_catalog.text) FROM PUBLIC`,
		`ALTER FUNCTION ` + fn + `(pg_catalog.text) OWNER TO ` + role,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("preparing the plugin's migration function in %s: %w", nm.schema, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `SELECT `+fn+`($1)`, string(body)); err != nil {
		return fmt.Errorf("ran confined to schema %s as role %s, which has no rights on the host's tables: %w", nm.schema, nm.role, pgMessage(err))
	}
	// From here on only the host's statements run in this session; they name
	// everything with its schema and search only pg_catalog.
	if _, err := tx.ExecContext(ctx, `SET LOCAL search_path TO pg_catalog, pg_temp`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DROP FUNCTION IF EXISTS `+fn+`(pg_catalog.text)`); err != nil {
		return fmt.Errorf("dropping the plugin's migration function: %w", err)
	}
	var outside sql.NullString
	err = tx.QueryRowContext(ctx, `SELECT pg_catalog.string_agg(o.type || ' ' || o.identity, ', ')
FROM pg_catalog.pg_shdepend d CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) o
WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
  AND d.refobjid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $1::pg_catalog.text)
  AND d.deptype = 'o'
  AND d.dbid = (SELECT b.oid FROM pg_catalog.pg_database b WHERE b.datname = pg_catalog.current_database())
  AND o.schema IS DISTINCT FROM $2::pg_catalog.text`, nm.role, nm.schema).Scan(&outside)
	if err != nil {
		return fmt.Errorf("checking what the migration created: %w", err)
	}
	if outside.Valid {
		return fmt.Errorf("the migration created objects outside its schema %s (%s); a plugin's migrations may only create objects in its own schema", nm.schema, outside.String)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// pgMessage shortens a PostgreSQL error to its message and code (the
// context would repeat the whole migration).
func pgMessage(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %s (SQLSTATE %s)", pe.Severity, pe.Message, pe.Code)
	}
	return err
}

// ensureSQLite creates the plugin's database file (mode 0600) unless it
// exists and returns its path.
func (n *Namespaces) ensureSQLite(id string) (string, error) {
	file := n.dbFile(id)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", fmt.Errorf("dbmigrate: plugin %s: creating the folder of its database: %w", id, err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if err := f.Close(); err != nil {
			return "", fmt.Errorf("dbmigrate: plugin %s: creating its database: %w", id, err)
		}
	case errors.Is(err, fs.ErrExist):
	default:
		return "", fmt.Errorf("dbmigrate: plugin %s: creating its database: %w", id, err)
	}
	fi, err := os.Lstat(file)
	if err != nil {
		return "", fmt.Errorf("dbmigrate: plugin %s: its database: %w", id, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("dbmigrate: plugin %s: its database %s is not a regular file (a link?): remove it and reinstall the plugin", id, file)
	}
	return file, nil
}

// confine is the authorizer of a plugin's SQLite migration: no other
// database may be attached (or detached), the file's transaction may not
// be ended or nested, and no extension may be loaded.
func confine(action sqlite.AuthorizerActionCode, arg1, arg2, _, _ string) sqlite.AuthorizerReturnCode {
	switch action {
	case sqlite.AuthAttach, sqlite.AuthDetach, sqlite.AuthTransaction:
		return sqlite.AuthorizerDeny
	case sqlite.AuthFunction:
		if strings.EqualFold(arg2, "load_extension") {
			return sqlite.AuthorizerDeny
		}
	}
	return sqlite.AuthorizerOK
}

// execSQLite runs one migration file in the plugin's own database file, in
// one transaction, on a connection confined by confine and by an ATTACH
// limit of zero.
func execSQLite(ctx context.Context, file string, body []byte) (err error) {
	pdb, _, err := Open(ctx, file)
	if err != nil {
		return err
	}
	defer func() { _ = pdb.Close() }()
	conn, err := pdb.Conn(ctx)
	if err != nil {
		return fmt.Errorf("open %s: %w", file, err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_ATTACHED, 0); err != nil {
		return fmt.Errorf("limiting attached databases: %w", err)
	}
	setAuth := func(fn sqlite.AuthorizerFn) error {
		return conn.Raw(func(dc any) error {
			r, ok := dc.(sqlite.AuthorizerRegisterer)
			if !ok {
				return fmt.Errorf("the SQLite driver offers no authorizer (%T)", dc)
			}
			return r.RegisterAuthorizer(fn)
		})
	}
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := setAuth(confine); err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
		return err
	}
	_, runErr := conn.ExecContext(ctx, string(body))
	if err := setAuth(nil); err != nil {
		// The connection is closed below without a COMMIT: SQLite rolls back.
		return errors.Join(runErr, err)
	}
	if runErr != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
		return fmt.Errorf("ran in the plugin's own database %s, which holds none of the host's tables and may attach no other: %w", filepath.Base(file), runErr)
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
