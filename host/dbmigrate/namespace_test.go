package dbmigrate

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// widgetsFS is a plugin whose migration makes a table of its own.
func widgetsFS(extra ...string) fstest.MapFS {
	src := fstest.MapFS{
		"000001_widgets.up.sql":   {Data: []byte("CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\nINSERT INTO widgets (id, name) VALUES (1, 'first');")},
		"000001_widgets.down.sql": {Data: []byte("DROP TABLE widgets;")},
	}
	if len(extra) == 2 {
		src["000002_extra.up.sql"] = &fstest.MapFile{Data: []byte(extra[0])}
		src["000002_extra.down.sql"] = &fstest.MapFile{Data: []byte(extra[1])}
	}
	return src
}

// hostSchema is "" on SQLite, "<schema>." on PostgreSQL.
func hostSchema(t *testing.T, tdb testDB) string {
	t.Helper()
	if tdb.dialect == SQLite {
		return ""
	}
	var s string
	if err := tdb.db.QueryRow(`SELECT current_schema()`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s + "."
}

// widgetName reads row 1 of the plugin's widgets table in its namespace.
func widgetName(t *testing.T, tdb testDB, ns *Namespaces, id string) (string, error) {
	t.Helper()
	var name string
	if tdb.dialect == SQLite {
		pdb, err := sql.Open("sqlite", ns.dbFile(id))
		if err != nil {
			t.Fatal(err)
		}
		defer pdb.Close()
		return name, pdb.QueryRow(`SELECT name FROM widgets WHERE id = 1`).Scan(&name)
	}
	nm, err := ns.names(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return name, tdb.db.QueryRow(`SELECT name FROM ` + nm.schema + `.widgets WHERE id = 1`).Scan(&name)
}

// namespaceExists reports whether the plugin's schema or role (PostgreSQL)
// or database file (SQLite) exists.
func namespaceExists(t *testing.T, tdb testDB, ns *Namespaces, id string) bool {
	t.Helper()
	if tdb.dialect == SQLite {
		_, err := os.Stat(ns.dbFile(id))
		return !errors.Is(err, fs.ErrNotExist)
	}
	nm, err := ns.names(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tdb.db.QueryRow(`SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = $1) + (SELECT count(*) FROM pg_roles WHERE rolname = $2)`, nm.schema, nm.role).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestNamespaces: a plugin's migrations make and use tables in a namespace
// of their own, never in the host schema; migrations that reach for host
// tables (qualified, or by leaving their role, or by leaving objects
// outside their schema) fail and are rolled back as a whole; Down and Drop
// remove everything, the migrations table included.
func TestNamespaces(t *testing.T) {
	forEachDB(t, func(t *testing.T, tdb testDB) {
		ctx := context.Background()
		if err := Up(ctx, tdb.db, tdb.dialect, hostFS(t, tdb.dialect), HostTable); err != nil {
			t.Fatal(err)
		}
		if _, err := tdb.db.Exec(`INSERT INTO purchases (plugin_id, receipt) VALUES ('other', 'r')`); err != nil {
			t.Fatal(err)
		}
		const id = "example-plugin"
		ns := NewNamespaces(tdb.db, tdb.dialect, t.TempDir())
		t.Cleanup(func() { _ = ns.Drop(context.Background(), id) })
		if namespaceExists(t, tdb, ns, id) {
			t.Fatal("namespace exists before the first migration")
		}

		if err := ns.Up(ctx, id, widgetsFS()); err != nil {
			t.Fatalf("up: %v", err)
		}
		if st, _ := ns.Version(ctx, id); !st.Applied || st.Version != 1 {
			t.Fatalf("version after up: %+v", st)
		}
		if tableExists(t, tdb, "widgets") {
			t.Fatal("the plugin's table was made in the host schema")
		}
		if name, err := widgetName(t, tdb, ns, id); err != nil || name != "first" {
			t.Fatalf("the plugin's own table: %q %v", name, err)
		}
		if loc, err := ns.Location(ctx, id); err != nil || !strings.Contains(loc, "plugin") {
			t.Fatalf("location: %q %v", loc, err)
		}

		q := hostSchema(t, tdb)
		hostile := []struct{ name, up string }{
			{"drop", "DROP TABLE " + q + "purchases;"},
			{"read", "CREATE TABLE loot AS SELECT * FROM " + q + "settings;"},
			{"reset role", "RESET ROLE; DELETE FROM " + q + "purchases;"},
			{"session authorization", "SET SESSION AUTHORIZATION DEFAULT; DELETE FROM " + q + "purchases;"},
			{"attach", "ATTACH DATABASE '" + filepath.Join(t.TempDir(), "evil.db") + "' AS evil;"},
			{"commit", "CREATE TABLE kept (x INTEGER); COMMIT;"},
		}
		if tdb.dialect == Postgres {
			// On SQLite a temporary table lives in the migration's own
			// connection, which is closed right after; on PostgreSQL it is
			// an object outside the plugin's schema, which is refused.
			hostile = append(hostile, struct{ name, up string }{"temporary object", "CREATE TABLE kept (x INTEGER); CREATE TEMP TABLE outside (x INTEGER);"})
		}
		for _, h := range hostile {
			err := ns.Up(ctx, id, widgetsFS(h.up, "SELECT 1;"))
			if err == nil {
				t.Fatalf("%s: the migration ran", h.name)
			}
			if !strings.Contains(err.Error(), "up migration 2") || !strings.Contains(err.Error(), "rolled back") {
				t.Errorf("%s: error %q does not name the migration and its rollback", h.name, err)
			}
			t.Logf("%s: %v", h.name, err)
			if st, _ := ns.Version(ctx, id); !st.Applied || st.Version != 1 || st.Dirty {
				t.Fatalf("%s: version after a refused migration: %+v", h.name, st)
			}
			var n int
			if err := tdb.db.QueryRow(`SELECT count(*) FROM purchases`).Scan(&n); err != nil || n != 1 {
				t.Fatalf("%s: host purchases after a refused migration: %d %v", h.name, n, err)
			}
		}
		if tdb.dialect == Postgres {
			nm, _ := ns.names(ctx, id)
			var n int
			tdb.db.QueryRow(`SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'kept'`, nm.schema).Scan(&n)
			if n != 0 {
				t.Fatal("a refused migration's table was kept")
			}
		}

		if err := ns.Down(ctx, id, widgetsFS()); err != nil {
			t.Fatalf("down: %v", err)
		}
		if _, err := widgetName(t, tdb, ns, id); err == nil {
			t.Fatal("the plugin's table survived down")
		}
		if err := ns.Drop(ctx, id); err != nil {
			t.Fatalf("drop: %v", err)
		}
		if namespaceExists(t, tdb, ns, id) {
			t.Fatal("namespace left after drop")
		}
		if tableExists(t, tdb, PluginTable(id)) {
			t.Fatal("migrations table left after drop")
		}
		if err := ns.Drop(ctx, id); err != nil {
			t.Fatalf("drop again: %v", err)
		}
		// A plugin without migrations gets no namespace.
		if err := ns.Up(ctx, id, fstest.MapFS{}); err != nil || namespaceExists(t, tdb, ns, id) {
			t.Fatalf("up without migrations: %v, namespace %v", err, namespaceExists(t, tdb, ns, id))
		}
		if err := ns.Up(ctx, "../etc", widgetsFS()); err == nil {
			t.Fatal("an invalid plugin id was accepted")
		}
	})
}

// TestSQLiteConfinement: each of the two SQLite guards stops ATTACH on its
// own — the authorizer (with the transaction statements and load_extension)
// and the ATTACH limit — inside a transaction and out of one; VACUUM INTO
// (which attaches its target) is stopped too. No file is created.
func TestSQLiteConfinement(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "plugin.db")
	evil := filepath.Join(dir, "evil.db")
	for _, body := range []string{
		"ATTACH DATABASE '" + evil + "' AS evil;",
		"CREATE TABLE a (x INTEGER); COMMIT; ATTACH DATABASE '" + evil + "' AS evil;",
		"SELECT load_extension('" + evil + "');",
		"VACUUM INTO '" + evil + "';",
		"DETACH DATABASE main;",
	} {
		if err := execSQLite(ctx, file, []byte(body)); err == nil {
			t.Errorf("%q ran", body)
		} else {
			t.Logf("%q: %v", body, err)
		}
	}

	db, _, err := Open(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The limit alone, outside a transaction.
	limited, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Limit(limited, sqlite3.SQLITE_LIMIT_ATTACHED, 0); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"ATTACH DATABASE '" + evil + "' AS evil", "VACUUM INTO '" + evil + "'"} {
		if _, err := limited.ExecContext(ctx, q); err == nil {
			t.Errorf("%q ran with SQLITE_LIMIT_ATTACHED 0", q)
		}
	}
	limited.Close()
	// The authorizer alone, outside a transaction.
	authorized, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = authorized.Raw(func(dc any) error { return dc.(sqlite.AuthorizerRegisterer).RegisterAuthorizer(confine) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := authorized.ExecContext(ctx, "ATTACH DATABASE '"+evil+"' AS evil"); err == nil || !strings.Contains(err.Error(), "not authorized") {
		t.Errorf("ATTACH under the authorizer: %v", err)
	}
	authorized.Raw(func(dc any) error { return dc.(sqlite.AuthorizerRegisterer).RegisterAuthorizer(nil) })
	authorized.Close()
	if _, err := os.Stat(evil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a confined connection created %s (%v)", evil, err)
	}
	// What did run, ran in the plugin's own file.
	if err := execSQLite(ctx, file, []byte("CREATE TABLE own (x INTEGER); INSERT INTO own VALUES (1);")); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM own`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("own table: %d %v", n, err)
	}
}

// TestEmptyMigrationsMakeNoNamespace: a plugin whose migrations hold only
// comments (R2's) is recorded as migrated without a namespace: no schema or
// role on PostgreSQL (so no CREATEROLE is needed for it), no database file
// on SQLite; uninstalling it needs none either.
func TestEmptyMigrationsMakeNoNamespace(t *testing.T) {
	forEachDB(t, func(t *testing.T, tdb testDB) {
		ctx := context.Background()
		const id = "empty-plugin"
		ns := NewNamespaces(tdb.db, tdb.dialect, t.TempDir())
		t.Cleanup(func() { _ = ns.Drop(context.Background(), id) })
		src := fstest.MapFS{
			"000001_nothing.up.sql":   {Data: []byte("-- This plugin keeps nothing in the database.\n\n")},
			"000001_nothing.down.sql": {Data: []byte("-- Nothing to undo.\n")},
		}
		if err := ns.Up(ctx, id, src); err != nil {
			t.Fatalf("up: %v", err)
		}
		if st, _ := ns.Version(ctx, id); !st.Applied || st.Version != 1 {
			t.Fatalf("version after up: %+v", st)
		}
		if namespaceExists(t, tdb, ns, id) {
			t.Fatal("empty migrations made a namespace")
		}
		if err := ns.Down(ctx, id, src); err != nil {
			t.Fatalf("down: %v", err)
		}
		if namespaceExists(t, tdb, ns, id) {
			t.Fatal("down made a namespace")
		}
	})
}
