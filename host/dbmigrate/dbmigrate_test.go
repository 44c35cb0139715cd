package dbmigrate

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/magicads/r2storage/host/migrations"
)

const defaultTestPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

const providerEntry = "storage.provider.cloudflare-r2"

// testDB is one fresh database for a test.
type testDB struct {
	db      *sql.DB
	dialect Dialect
	// appName is the application_name of every postgres connection of this
	// test (and of dbmigrate's private pools, which copy the settings).
	appName string
}

// forEachDB runs fn against a fresh SQLite file and a fresh PostgreSQL
// schema. PostgreSQL must be reachable: the test fails, never skips.
func forEachDB(t *testing.T, fn func(t *testing.T, tdb testDB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, newSQLite(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, newPostgres(t))
	})
}

func newSQLite(t *testing.T) testDB {
	t.Helper()
	ctx := context.Background()
	db, d, err := Open(ctx, filepath.Join(t.TempDir(), "magicads.db"))
	if err != nil {
		t.Fatalf("Open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if d != SQLite {
		t.Fatalf("dialect = %q", d)
	}
	return testDB{db: db, dialect: d}
}

func randomName(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

func newPostgres(t *testing.T) testDB {
	t.Helper()
	ctx := context.Background()
	base := os.Getenv("MAGICADS_TEST_POSTGRES")
	if base == "" {
		base = defaultTestPostgres
	}
	admin, d, err := Open(ctx, base)
	if err != nil {
		t.Fatalf("PostgreSQL at MAGICADS_TEST_POSTGRES (default %s) is required: %v", defaultTestPostgres, err)
	}
	if d != Postgres {
		t.Fatalf("dialect = %q", d)
	}
	schema := randomName(t, "dbmigrate_test_")
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		_ = admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", schema)
	u.RawQuery = q.Encode()
	db, _, err := Open(ctx, u.String())
	if err != nil {
		t.Fatalf("Open postgres schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		_ = db.Close()
		if _, err := admin.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		_ = admin.Close()
	})
	return testDB{db: db, dialect: Postgres, appName: schema}
}

func hostFS(t *testing.T, d Dialect) fs.FS {
	t.Helper()
	src, err := migrations.FS(string(d))
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// pluginFS is a plugin migration that registers a settings entry in the
// host's settings table, as plugins did before their migrations ran in a
// namespace of their own: these tests exercise migrations tables in one
// database, which the package's Up and Down still provide.
func pluginFS(t *testing.T) fs.FS {
	t.Helper()
	return fstest.MapFS{
		"000001_register_provider.up.sql":   {Data: []byte(`INSERT INTO settings (name, owner) VALUES ('storage.provider.cloudflare-r2', 'cloudflare-r2') ON CONFLICT (name) DO NOTHING;`)},
		"000001_register_provider.down.sql": {Data: []byte(`DELETE FROM settings WHERE name = 'storage.provider.cloudflare-r2' AND owner = 'cloudflare-r2';`)},
	}
}

func tableExists(t *testing.T, tdb testDB, name string) bool {
	t.Helper()
	var ok bool
	var err error
	if tdb.dialect == SQLite {
		err = tdb.db.QueryRow(`SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)`, name).Scan(&ok)
	} else {
		err = tdb.db.QueryRow(`SELECT to_regclass(quote_ident(current_schema()) || '.' || $1) IS NOT NULL`, name).Scan(&ok)
	}
	if err != nil {
		t.Fatalf("table %s exists: %v", name, err)
	}
	return ok
}

func wantVersion(t *testing.T, tdb testDB, table string, want Status) {
	t.Helper()
	got, err := Version(context.Background(), tdb.db, tdb.dialect, table)
	if err != nil {
		t.Fatalf("Version(%s): %v", table, err)
	}
	if got != want {
		t.Fatalf("Version(%s) = %+v, want %+v", table, got, want)
	}
}

// settingsRow is a row of the host settings table.
type settingsRow struct {
	owner string
	value []byte
	null  bool
	keyID string
}

func readEntry(t *testing.T, tdb testDB, name string) (settingsRow, bool) {
	t.Helper()
	var r settingsRow
	var v []byte
	q := `SELECT owner, value, key_id FROM settings WHERE name = ?`
	if tdb.dialect == Postgres {
		q = `SELECT owner, value, key_id FROM settings WHERE name = $1`
	}
	err := tdb.db.QueryRow(q, name).Scan(&r.owner, &v, &r.keyID)
	if err == sql.ErrNoRows {
		return r, false
	}
	if err != nil {
		t.Fatalf("read settings %s: %v", name, err)
	}
	r.value, r.null = v, v == nil
	return r, true
}

func countRows(t *testing.T, tdb testDB) int {
	t.Helper()
	var n int
	if err := tdb.db.QueryRow(`SELECT count(*) FROM settings`).Scan(&n); err != nil {
		t.Fatalf("count settings: %v", err)
	}
	return n
}

// checkNoLeak verifies the caller's pool is idle and, on postgres, that the
// server has no connection of this test beyond the caller's pool: the
// migrate instance's private pool was closed.
func checkNoLeak(t *testing.T, tdb testDB) {
	t.Helper()
	if err := tdb.db.Ping(); err != nil {
		t.Fatalf("caller's *sql.DB no longer usable: %v", err)
	}
	if st := tdb.db.Stats(); st.InUse != 0 {
		t.Fatalf("caller's pool has %d connections in use after a migration", st.InUse)
	}
	if tdb.dialect != Postgres {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		// Counting from the caller's pool uses one of its own connections.
		err := tdb.db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, tdb.appName).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		open := tdb.db.Stats().OpenConnections
		if n <= open {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d server connections for this test, caller's pool has %d: a migration leaked connections", n, open)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLifecycle(t *testing.T) {
	forEachDB(t, func(t *testing.T, tdb testDB) {
		ctx := context.Background()
		pluginTable := PluginTable("cloudflare-r2")
		if pluginTable != "schema_migrations_cloudflare_r2" {
			t.Fatalf("PluginTable = %q", pluginTable)
		}

		// Host up.
		if err := Up(ctx, tdb.db, tdb.dialect, hostFS(t, tdb.dialect), HostTable); err != nil {
			t.Fatalf("host up: %v", err)
		}
		wantVersion(t, tdb, HostTable, Status{Applied: true, Version: hostLatest})
		checkNoLeak(t, tdb)
		if _, err := tdb.db.Exec(`INSERT INTO settings (name, value, key_id) VALUES ('general.default_storage', 'ciphertext', 'k1')`); err != nil {
			t.Fatalf("host entry: %v", err)
		}

		// Plugin up registers its entry, not configured yet.
		if err := Up(ctx, tdb.db, tdb.dialect, pluginFS(t), pluginTable); err != nil {
			t.Fatalf("plugin up: %v", err)
		}
		wantVersion(t, tdb, pluginTable, Status{Applied: true, Version: 1})
		checkNoLeak(t, tdb)
		row, ok := readEntry(t, tdb, providerEntry)
		if !ok {
			t.Fatal("provider entry missing after plugin up")
		}
		if row.owner != "cloudflare-r2" || !row.null || row.keyID != "" {
			t.Fatalf("provider entry = %+v, want owner cloudflare-r2, NULL value, empty key_id", row)
		}

		// Plugin up again: nothing to do.
		if err := Up(ctx, tdb.db, tdb.dialect, pluginFS(t), pluginTable); err != nil {
			t.Fatalf("plugin up again: %v", err)
		}
		wantVersion(t, tdb, pluginTable, Status{Applied: true, Version: 1})
		if n := countRows(t, tdb); n != 2 {
			t.Fatalf("settings rows = %d, want 2", n)
		}
		// Re-running the SQL itself (e.g. a reinstall after the version
		// table was lost) keeps a configured entry as it is.
		if _, err := tdb.db.Exec(`UPDATE settings SET value = 'secret-ciphertext', key_id = 'k1' WHERE name = '` + providerEntry + `'`); err != nil {
			t.Fatal(err)
		}
		upSQL, err := fs.ReadFile(pluginFS(t), "000001_register_provider.up.sql")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tdb.db.Exec(string(upSQL)); err != nil {
			t.Fatalf("register SQL is not idempotent: %v", err)
		}
		if row, _ := readEntry(t, tdb, providerEntry); !bytes.Equal(row.value, []byte("secret-ciphertext")) {
			t.Fatalf("re-registering overwrote the stored value: %+v", row)
		}

		// Plugin down: entry gone, host table and host entries intact.
		if err := Down(ctx, tdb.db, tdb.dialect, pluginFS(t), pluginTable); err != nil {
			t.Fatalf("plugin down: %v", err)
		}
		wantVersion(t, tdb, pluginTable, Status{})
		checkNoLeak(t, tdb)
		if _, ok := readEntry(t, tdb, providerEntry); ok {
			t.Fatal("provider entry still there after plugin down")
		}
		if row, ok := readEntry(t, tdb, "general.default_storage"); !ok || row.owner != "host" || string(row.value) != "ciphertext" {
			t.Fatalf("host entry after plugin down = %+v, %v", row, ok)
		}
		wantVersion(t, tdb, HostTable, Status{Applied: true, Version: hostLatest})

		// Plugin down again: nothing to do.
		if err := Down(ctx, tdb.db, tdb.dialect, pluginFS(t), pluginTable); err != nil {
			t.Fatalf("plugin down again: %v", err)
		}

		// Plugin up again (reinstall).
		if err := Up(ctx, tdb.db, tdb.dialect, pluginFS(t), pluginTable); err != nil {
			t.Fatalf("plugin reinstall: %v", err)
		}
		if row, ok := readEntry(t, tdb, providerEntry); !ok || !row.null {
			t.Fatalf("provider entry after reinstall = %+v, %v", row, ok)
		}

		// Host down.
		if err := Down(ctx, tdb.db, tdb.dialect, hostFS(t, tdb.dialect), HostTable); err != nil {
			t.Fatalf("host down: %v", err)
		}
		wantVersion(t, tdb, HostTable, Status{})
		if tableExists(t, tdb, "settings") {
			t.Fatal("settings table survived host down")
		}
		checkNoLeak(t, tdb)
	})
}

func TestPluginUpWithoutHostTable(t *testing.T) {
	forEachDB(t, func(t *testing.T, tdb testDB) {
		ctx := context.Background()
		table := PluginTable("cloudflare-r2")
		err := Up(ctx, tdb.db, tdb.dialect, pluginFS(t), table)
		if err == nil {
			t.Fatal("plugin migration ran without the host settings table")
		}
		msg := err.Error()
		for _, want := range []string{table, "up migration 1", "settings"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
		t.Logf("error: %v", err)
		// Clean failure: not left dirty, nothing applied.
		wantVersion(t, tdb, table, Status{})
		checkNoLeak(t, tdb)

		// Once the host has migrated, the same install works.
		if err := Up(ctx, tdb.db, tdb.dialect, hostFS(t, tdb.dialect), HostTable); err != nil {
			t.Fatalf("host up: %v", err)
		}
		if err := Up(ctx, tdb.db, tdb.dialect, pluginFS(t), table); err != nil {
			t.Fatalf("plugin up after host up: %v", err)
		}
		if _, ok := readEntry(t, tdb, providerEntry); !ok {
			t.Fatal("provider entry missing")
		}
	})
}

func TestSettingsTable(t *testing.T) {
	forEachDB(t, func(t *testing.T, tdb testDB) {
		if err := Up(context.Background(), tdb.db, tdb.dialect, hostFS(t, tdb.dialect), HostTable); err != nil {
			t.Fatalf("host up: %v", err)
		}
		ph := func(i int) string {
			if tdb.dialect == Postgres {
				return "$" + string(rune('0'+i))
			}
			return "?"
		}
		blob := []byte{0, 1, 2, 0xff, 'x'}
		if _, err := tdb.db.Exec(`INSERT INTO settings (name, value, key_id) VALUES (`+ph(1)+`, `+ph(2)+`, 'k1')`, "a.b", blob); err != nil {
			t.Fatalf("insert: %v", err)
		}
		var (
			owner, keyID         string
			value                []byte
			createdAt, updatedAt time.Time
		)
		err := tdb.db.QueryRow(`SELECT owner, value, key_id, created_at, updated_at FROM settings WHERE name = 'a.b'`).Scan(&owner, &value, &keyID, &createdAt, &updatedAt)
		if err != nil {
			t.Fatalf("select: %v", err)
		}
		if owner != "host" || !bytes.Equal(value, blob) || keyID != "k1" {
			t.Errorf("row = %q %v %q", owner, value, keyID)
		}
		if d := time.Since(createdAt); d < -time.Minute || d > time.Minute || updatedAt.IsZero() {
			t.Errorf("created_at %v updated_at %v", createdAt, updatedAt)
		}
		for name, stmt := range map[string]string{
			"duplicate name": `INSERT INTO settings (name) VALUES ('a.b')`,
			"empty name":     `INSERT INTO settings (name) VALUES ('')`,
			"null name":      `INSERT INTO settings (name) VALUES (NULL)`,
			"empty owner":    `INSERT INTO settings (name, owner) VALUES ('c', '')`,
			"null key_id":    `INSERT INTO settings (name, key_id) VALUES ('d', NULL)`,
		} {
			if _, err := tdb.db.Exec(stmt); err == nil {
				t.Errorf("%s accepted", name)
			}
		}
	})
}

func TestFailedMigrationRollsBack(t *testing.T) {
	forEachDB(t, func(t *testing.T, tdb testDB) {
		ctx := context.Background()
		file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
		broken := fstest.MapFS{
			"000001_a.up.sql":   file(`CREATE TABLE a (x INTEGER);`),
			"000001_a.down.sql": file(`DROP TABLE a;`),
			"000002_b.up.sql":   file("CREATE TABLE b (x INTEGER);\nINSERT INTO missing_table VALUES (1);"),
			"000002_b.down.sql": file(`DROP TABLE b;`),
			"README.md":         file("not a migration"),
		}
		const table = "schema_migrations_test"
		err := Up(ctx, tdb.db, tdb.dialect, broken, table)
		if err == nil || !strings.Contains(err.Error(), "up migration 2") || !strings.Contains(err.Error(), table) || !strings.Contains(err.Error(), "missing_table") {
			t.Fatalf("Up error = %v", err)
		}
		wantVersion(t, tdb, table, Status{Applied: true, Version: 1})
		if !tableExists(t, tdb, "a") || tableExists(t, tdb, "b") {
			t.Fatalf("migration 2 was not rolled back as a whole: a=%v b=%v", tableExists(t, tdb, "a"), tableExists(t, tdb, "b"))
		}

		fixed := fstest.MapFS{}
		for k, v := range broken {
			fixed[k] = v
		}
		fixed["000002_b.up.sql"] = file(`CREATE TABLE b (x INTEGER);`)
		fixed["000002_b.down.sql"] = file("DROP TABLE b;\nDROP TABLE missing_table;")
		if err := Up(ctx, tdb.db, tdb.dialect, fixed, table); err != nil {
			t.Fatalf("Up after fix: %v", err)
		}
		wantVersion(t, tdb, table, Status{Applied: true, Version: 2})

		err = Down(ctx, tdb.db, tdb.dialect, fixed, table)
		if err == nil || !strings.Contains(err.Error(), "down migration 2") || !strings.Contains(err.Error(), table) {
			t.Fatalf("Down error = %v", err)
		}
		wantVersion(t, tdb, table, Status{Applied: true, Version: 2})
		if !tableExists(t, tdb, "b") {
			t.Fatal("failed down migration 2 was not rolled back")
		}
		checkNoLeak(t, tdb)

		fixed["000002_b.down.sql"] = file(`DROP TABLE b;`)
		if err := Down(ctx, tdb.db, tdb.dialect, fixed, table); err != nil {
			t.Fatalf("Down after fix: %v", err)
		}
		wantVersion(t, tdb, table, Status{})
		if tableExists(t, tdb, "a") || tableExists(t, tdb, "b") {
			t.Fatal("tables left after down")
		}
	})
}

func TestDirtyTableIsReported(t *testing.T) {
	forEachDB(t, func(t *testing.T, tdb testDB) {
		ctx := context.Background()
		src := fstest.MapFS{"000001_a.up.sql": {Data: []byte(`CREATE TABLE a (x INTEGER);`)}}
		const table = "schema_migrations_dirty"
		if err := Up(ctx, tdb.db, tdb.dialect, src, table); err != nil {
			t.Fatal(err)
		}
		if _, err := tdb.db.Exec(`UPDATE ` + table + ` SET dirty = true`); err != nil {
			t.Fatal(err)
		}
		wantVersion(t, tdb, table, Status{Applied: true, Version: 1, Dirty: true})
		err := Up(ctx, tdb.db, tdb.dialect, src, table)
		if err == nil || !strings.Contains(err.Error(), "dirty at version 1") || !strings.Contains(err.Error(), table) {
			t.Fatalf("Up on dirty table = %v", err)
		}
	})
}

func TestNoMigrationsIsNoChange(t *testing.T) {
	forEachDB(t, func(t *testing.T, tdb testDB) {
		if err := Up(context.Background(), tdb.db, tdb.dialect, fstest.MapFS{}, "schema_migrations_empty"); err != nil {
			t.Fatalf("Up with no files: %v", err)
		}
	})
}

func TestCancelledContext(t *testing.T) {
	forEachDB(t, func(t *testing.T, tdb testDB) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := Up(ctx, tdb.db, tdb.dialect, hostFS(t, tdb.dialect), HostTable)
		if err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("Up with cancelled context = %v", err)
		}
		if tableExists(t, tdb, "settings") {
			t.Fatal("migration ran despite the cancelled context")
		}
	})
}

func TestBadArguments(t *testing.T) {
	tdb := newSQLite(t)
	ctx := context.Background()
	src := hostFS(t, SQLite)
	for _, table := range []string{"", "Schema_Migrations", "bad-name", "x; DROP TABLE y", strings.Repeat("a", 64)} {
		if err := Up(ctx, tdb.db, SQLite, src, table); err == nil || !strings.Contains(err.Error(), "table name") {
			t.Errorf("table %q: %v", table, err)
		}
	}
	if err := Up(ctx, tdb.db, "mysql", src, HostTable); err == nil || !strings.Contains(err.Error(), "dialect") {
		t.Errorf("dialect mysql: %v", err)
	}
	if err := Up(ctx, nil, SQLite, src, HostTable); err == nil {
		t.Error("nil db accepted")
	}
	if err := Up(ctx, tdb.db, SQLite, nil, HostTable); err == nil {
		t.Error("nil fs accepted")
	}
	if _, err := migrations.FS("mysql"); err == nil {
		t.Error("migrations.FS(mysql) accepted")
	}
	// A postgres migration on a *sql.DB of another driver is refused.
	if err := Up(ctx, tdb.db, Postgres, src, HostTable); err == nil || !strings.Contains(err.Error(), "pgx") {
		t.Errorf("postgres dialect on a sqlite db: %v", err)
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	if _, _, err := Open(ctx, ""); err == nil {
		t.Error("empty DSN accepted")
	}
	if _, _, err := Open(ctx, filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")); err == nil || !strings.Contains(err.Error(), "x.db") {
		t.Errorf("missing folder: %v", err)
	}
	if _, _, err := Open(ctx, "postgres://postgres:hunter2@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"); err == nil {
		t.Error("unreachable postgres accepted")
	} else if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error leaks the password: %v", err)
	}

	tdb := newSQLite(t)
	for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "5000"} {
		var got string
		if err := tdb.db.QueryRow(`PRAGMA ` + pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %q, want %q", pragma, got, want)
		}
	}
	// A DSN that sets its own value keeps it.
	db, _, err := Open(ctx, filepath.Join(t.TempDir(), "y.db")+"?_pragma=busy_timeout(100)")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	var got string
	if err := db.QueryRow(`PRAGMA busy_timeout`).Scan(&got); err != nil || got != "100" {
		t.Errorf("busy_timeout = %q, %v", got, err)
	}
}

func TestHostMigrationFiles(t *testing.T) {
	for _, d := range []Dialect{SQLite, Postgres} {
		src := hostFS(t, d)
		for _, name := range []string{"000001_settings.up.sql", "000001_settings.down.sql"} {
			if _, err := fs.Stat(src, name); err != nil {
				t.Errorf("%s: %s: %v", d, name, err)
			}
		}
	}
}

func TestConcurrentUpOnPostgres(t *testing.T) {
	tdb := newPostgres(t)
	ctx := context.Background()
	src := fstest.MapFS{}
	for i, stmt := range []string{"CREATE TABLE c1 (x INTEGER)", "CREATE TABLE c2 (x INTEGER)", "CREATE TABLE c3 (x INTEGER)"} {
		src[fmt.Sprintf("%06d_c.up.sql", i+1)] = &fstest.MapFile{Data: []byte(stmt)}
		src[fmt.Sprintf("%06d_c.down.sql", i+1)] = &fstest.MapFile{Data: []byte(fmt.Sprintf("DROP TABLE c%d", i+1))}
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- Up(ctx, tdb.db, Postgres, src, "schema_migrations_concurrent") }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Up: %v", err)
		}
	}
	wantVersion(t, tdb, "schema_migrations_concurrent", Status{Applied: true, Version: 3})
	checkNoLeak(t, tdb)
}

func TestPluginTable(t *testing.T) {
	if got := PluginTable("cloudflare-r2"); got != "schema_migrations_cloudflare_r2" {
		t.Errorf("PluginTable(cloudflare-r2) = %q", got)
	}
	long := strings.Repeat("a", 60) + "-x"
	got := PluginTable(long)
	if len(got) > 63 || !tableName.MatchString(got) {
		t.Errorf("PluginTable(%q) = %q: not a valid table name", long, got)
	}
	if other := PluginTable(strings.Repeat("a", 60) + "-y"); other == got {
		t.Errorf("two long ids share the table %q", got)
	}
}

func TestOpenPostgresBadDSN(t *testing.T) {
	_, _, err := Open(context.Background(), "postgres://u:hunter2@127.0.0.1:notaport/db")
	if err == nil {
		t.Fatal("bad DSN accepted")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error leaks the password: %v", err)
	}
}

// hostLatest is the newest host migration version.
const hostLatest = 15

func TestDownToStopsAtAVersion(t *testing.T) {
	ctx := context.Background()
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, mk := range []func(*testing.T) testDB{newSQLite, newPostgres} {
		tdb := mk(t)
		src := fstest.MapFS{
			"000001_a.up.sql":   file("CREATE TABLE a (x INTEGER);"),
			"000001_a.down.sql": file("DROP TABLE a;"),
			"000002_b.up.sql":   file("CREATE TABLE b (x INTEGER);"),
			"000002_b.down.sql": file("DROP TABLE b;"),
			"000003_c.up.sql":   file("CREATE TABLE c (x INTEGER);"),
			"000003_c.down.sql": file("DROP TABLE c;"),
		}
		const table = "schema_migrations_downto"
		if err := Up(ctx, tdb.db, tdb.dialect, src, table); err != nil {
			t.Fatal(err)
		}
		if err := DownTo(ctx, tdb.db, tdb.dialect, src, table, Status{Applied: true, Version: 1}); err != nil {
			t.Fatal(err)
		}
		wantVersion(t, tdb, table, Status{Applied: true, Version: 1})
		if !tableExists(t, tdb, "a") || tableExists(t, tdb, "b") || tableExists(t, tdb, "c") {
			t.Fatal("DownTo(1) did not keep exactly migration 1")
		}
		if err := DownTo(ctx, tdb.db, tdb.dialect, src, table, Status{}); err != nil {
			t.Fatal(err)
		}
		wantVersion(t, tdb, table, Status{})
	}
}
