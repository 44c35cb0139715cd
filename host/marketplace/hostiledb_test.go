package marketplace_test

import (
	"archive/tar"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/internal/testdb"
)

// schemaOf returns the host's PostgreSQL schema ("" on SQLite).
func (h *host) schemaOf() string {
	h.t.Helper()
	if h.db.Dialect != dbmigrate.Postgres {
		return ""
	}
	var s string
	if err := h.db.QueryRow(`SELECT current_schema()`).Scan(&s); err != nil {
		h.t.Fatal(err)
	}
	return s
}

// q names a host table the way a hostile migration would: schema-qualified
// on PostgreSQL (so only privileges can stop it), plain on SQLite.
func (h *host) q(table string) string {
	if s := h.schemaOf(); s != "" {
		return s + "." + table
	}
	return table
}

// seed puts a row in every host table a hostile migration goes after.
func (h *host) seed() {
	h.t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO results (id, path, content_type, size, sha256) VALUES ('r-1', '2026/01/r-1.png', 'image/png', 3, 'abc')`,
		`INSERT INTO purchases (plugin_id, buyer, receipt) VALUES ('other-plugin', 'alice', 'a-receipt')`,
		// Due in the far future, so the retry worker leaves it alone.
		`INSERT INTO jobs (kind, result_id, provider, next_attempt_at) VALUES ('offload', 'r-1', 'other-plugin', '2999-01-01 00:00:00')`,
	} {
		if _, err := h.db.ExecContext(ctx, q); err != nil {
			h.t.Fatalf("seeding: %v", err)
		}
	}
	if err := h.app.Settings.Save(ctx, "storage.provider.other-plugin", "other-plugin", map[string]any{"secret_access_key": base64.StdEncoding.EncodeToString(randBytes(18))}); err != nil {
		h.t.Fatal(err)
	}
}

// dump renders the host's database: every table, column, index, trigger
// and function of the host schema, and every row, sorted.
func (h *host) dump() string {
	h.t.Helper()
	var b strings.Builder
	var tables []string
	if h.db.Dialect == dbmigrate.SQLite {
		for _, r := range h.queryRows(`SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name`) {
			fmt.Fprintln(&b, "schema:", r)
			if strings.HasPrefix(r, "table|") {
				tables = append(tables, strings.Split(r, "|")[1])
			}
		}
	} else {
		for _, q := range []string{
			`SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1`,
			`SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '') FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1, ordinal_position`,
			`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1`,
			`SELECT trigger_name, event_object_table FROM information_schema.triggers WHERE trigger_schema = current_schema() ORDER BY 1`,
			`SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = current_schema() ORDER BY 1`,
		} {
			for _, r := range h.queryRows(q) {
				fmt.Fprintln(&b, "schema:", r)
			}
		}
		for _, r := range h.queryRows(`SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1`) {
			tables = append(tables, r)
		}
	}
	for _, t := range tables {
		if t == "nodes" {
			continue // the node's heartbeat rewrites its row every few seconds
		}
		rows := h.queryRows(`SELECT * FROM "` + t + `"`)
		sort.Strings(rows)
		for _, r := range rows {
			fmt.Fprintf(&b, "%s: %s\n", t, r)
		}
	}
	return b.String()
}

// queryRows runs q and renders each row as its values joined by "|".
func (h *host) queryRows(q string) []string {
	h.t.Helper()
	rows, err := h.db.Query(q)
	if err != nil {
		h.t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			h.t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			switch v := v.(type) {
			case []byte:
				parts[i] = hex.EncodeToString(v)
			case time.Time:
				parts[i] = v.UTC().Format(time.RFC3339Nano)
			default:
				parts[i] = fmt.Sprint(v)
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// pgNamespaces lists the PostgreSQL schemas and roles named after the host
// schema (where plugin namespaces live); nil on SQLite, whose plugin
// databases are files in the plugins dir.
func (h *host) pgNamespaces() []string {
	h.t.Helper()
	if h.db.Dialect != dbmigrate.Postgres {
		return nil
	}
	s := h.schemaOf()
	out := h.queryRows(`SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname LIKE '` + s + `\_%' ORDER BY 1`)
	return append(out, h.queryRows(`SELECT 'role ' || rolname FROM pg_roles WHERE rolname LIKE '`+s+`\_%' ORDER BY 1`)...)
}

// withMigration adds migration 000002 (up and down SQL) to an archive's files.
func withMigration(files []file, up, down string) []file {
	return append(files,
		file{Name: "migrations/000002_extra.up.sql", Mode: 0o644, Data: []byte(up)},
		file{Name: "migrations/000002_extra.down.sql", Mode: 0o644, Data: []byte(down)})
}

// editManifest edits the manifest of an archive's files, leaving every
// other file (the binary at its usual path included) as it is.
func editManifest(t testing.TB, files []file, edit func(man map[string]any)) []file {
	t.Helper()
	for i := range files {
		if files[i].Name != "manifest.json" {
			continue
		}
		var man map[string]any
		if err := json.Unmarshal(files[i].Data, &man); err != nil {
			t.Fatal(err)
		}
		edit(man)
		files[i].Data, _ = json.Marshal(man)
	}
	return files
}

// TestHostileMigrations is the hostile signed-archive corpus for plugin
// migrations and executables, on SQLite and PostgreSQL. Every archive is
// signed with the marketplace's key, so only the install's own checks can
// stop it: migrations that drop, alter, update, empty or read host tables
// (schema-qualified on PostgreSQL), step out of their role, attach the host
// database or a new file, or do their damage in the down migration an
// install rollback runs; and manifests whose executable is a symlink, lies
// outside the bundle or is a folder. Each is refused at the step named,
// the host database is exactly as it was (a dump of every host table before
// and after), and no process, file or namespace is left.
func TestHostileMigrations(t *testing.T) {
	good := func(t testing.TB) []byte { return readFile(t, bin100.Build(t, "./plugin/cmd/cloudflare-r2")) }
	crash := []byte("#!/bin/sh\nexit 3\n")
	type env struct {
		h    *host
		evil string // a file no migration may create
	}
	cases := []struct {
		name  string
		files func(t testing.TB, e env) []file
		step  string
	}{
		{"drops a host table", func(t testing.TB, e env) []file {
			return withMigration(bundle(t, "1.0.0", good(t), nil), "DROP TABLE "+e.h.q("purchases")+";", "SELECT 1;")
		}, "migrations"},
		{"alters a host table", func(t testing.TB, e env) []file {
			return withMigration(bundle(t, "1.0.0", good(t), nil), "ALTER TABLE "+e.h.q("settings")+" ADD COLUMN stolen TEXT;", "SELECT 1;")
		}, "migrations"},
		{"updates results", func(t testing.TB, e env) []file {
			return withMigration(bundle(t, "1.0.0", good(t), nil), "UPDATE "+e.h.q("results")+" SET url = 'https://attacker.example/x';", "SELECT 1;")
		}, "migrations"},
		{"empties results", func(t testing.TB, e env) []file {
			return withMigration(bundle(t, "1.0.0", good(t), nil), "DELETE FROM "+e.h.q("results")+";", "SELECT 1;")
		}, "migrations"},
		{"copies settings into its own table", func(t testing.TB, e env) []file {
			return withMigration(bundle(t, "1.0.0", good(t), nil), "CREATE TABLE loot AS SELECT name, value FROM "+e.h.q("settings")+";", "DROP TABLE loot;")
		}, "migrations"},
		{"resets its role", func(t testing.TB, e env) []file {
			return withMigration(bundle(t, "1.0.0", good(t), nil), "RESET ROLE; DROP TABLE "+e.h.q("purchases")+";", "SELECT 1;")
		}, "migrations"},
		{"sets the role back with set_config", func(t testing.TB, e env) []file {
			return withMigration(bundle(t, "1.0.0", good(t), nil), "SELECT set_config('role', 'none', false); DELETE FROM "+e.h.q("results")+";", "SELECT 1;")
		}, "migrations"},
		{"attaches the host database", func(t testing.TB, e env) []file {
			hostDB := filepath.Join(e.h.dataDir, "no-such.db")
			if e.h.db.Dialect == dbmigrate.SQLite {
				hostDB = e.h.db.DSN
			}
			return withMigration(bundle(t, "1.0.0", good(t), nil), "ATTACH DATABASE '"+hostDB+"' AS host; DELETE FROM host.results;", "SELECT 1;")
		}, "migrations"},
		{"attaches a new file", func(t testing.TB, e env) []file {
			return withMigration(bundle(t, "1.0.0", good(t), nil), "ATTACH DATABASE '"+e.evil+"' AS evil; CREATE TABLE evil.t (x INTEGER);", "SELECT 1;")
		}, "migrations"},
		{"commits and attaches", func(t testing.TB, e env) []file {
			return withMigration(bundle(t, "1.0.0", good(t), nil), "COMMIT; ATTACH DATABASE '"+e.evil+"' AS evil; CREATE TABLE evil.t (x INTEGER); BEGIN;", "SELECT 1;")
		}, "migrations"},
		{"does its damage when rolled back", func(t testing.TB, e env) []file {
			// A harmless up, a down that drops a host table, and a binary
			// that fails its canary, so the install's rollback runs the down.
			return withMigration(bundle(t, "1.0.0", crash, nil), "CREATE TABLE own_table (x INTEGER);", "DROP TABLE "+e.h.q("purchases")+"; DROP TABLE own_table;")
		}, "canary start"},
		{"executable is a symlink", func(t testing.TB, e env) []file {
			files := bundle(t, "1.0.0", good(t), nil)
			files[len(files)-1] = file{Name: files[len(files)-1].Name, Typ: tar.TypeSymlink, Linkname: "/bin/sh"}
			return files
		}, "unpack"},
		{"executable outside the bundle", func(t testing.TB, e env) []file {
			return editManifest(t, bundle(t, "1.0.0", good(t), nil), func(man map[string]any) {
				man["executables"].(map[string]any)[platform] = "../../../../bin/sh"
			})
		}, "validate manifest"},
		{"executable is a folder", func(t testing.TB, e env) []file {
			return editManifest(t, bundle(t, "1.0.0", good(t), nil), func(man map[string]any) {
				man["executables"].(map[string]any)[platform] = "schema"
			})
		}, "validate manifest"},
	}
	for _, d := range testdb.Dialects() {
		for _, c := range cases {
			t.Run(string(d)+"/"+c.name, func(t *testing.T) {
				ctx := context.Background()
				m := newMarket(t)
				h := newHost(t, d, m, marketplace.LicenseRegular)
				h.seed()
				e := env{h: h, evil: filepath.Join(t.TempDir(), "evil.db")}
				m.publish(free, version("1.0.0", m.addArchive(pluginID, "1.0.0", tarGz(c.files(t, e)), archiveOpts{})))
				// The catalog's serial is accepted once (a write of its own,
				// not the install's); the dump is taken after that.
				if _, err := h.app.Market.Cards(ctx); err != nil {
					t.Fatal(err)
				}
				before := h.state()

				_, err := h.app.Market.Install(ctx, pluginID)
				var ie *marketplace.InstallError
				if !errors.As(err, &ie) || ie.Step != c.step {
					t.Fatalf("install error %v, want an InstallError at step %q", err, c.step)
				}
				h.unchanged(t, before, "the refused install")
				if ns := h.pgNamespaces(); len(ns) != 0 {
					t.Fatalf("refused install left its namespace: %v", ns)
				}
				if _, err := os.Stat(e.evil); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("a migration created %s (%v)", e.evil, err)
				}
			})
		}
	}
}

// TestPluginNamespace: a plugin's own migrations work, in a namespace of
// their own (a schema on PostgreSQL, a database file on SQLite) that holds
// its tables, none of which reach the host schema; uninstall removes the
// namespace, and a reinstall starts from a fresh one.
func TestPluginNamespace(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			m := newMarket(t)
			h := newHost(t, d, m, marketplace.LicenseRegular)
			files := withMigration(bundle(t, "1.0.0", readFile(t, bin100.Build(t, "./plugin/cmd/cloudflare-r2")), nil),
				"CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL); INSERT INTO widgets (id, name) VALUES (1, 'first');",
				"DROP TABLE widgets;")
			m.publish(free, version("1.0.0", m.addArchive(pluginID, "1.0.0", tarGz(files), archiveOpts{})))
			if _, err := h.app.Market.Cards(ctx); err != nil { // accepts the catalog's serial
				t.Fatal(err)
			}
			before := h.dump()
			if _, err := h.app.Market.Install(ctx, pluginID); err != nil {
				t.Fatalf("install: %v", err)
			}
			if strings.Contains(h.dump(), "widgets") {
				t.Fatal("the plugin's table is in the host schema")
			}
			// The plugin's table is in its namespace.
			var name string
			switch d {
			case dbmigrate.Postgres:
				err := h.db.QueryRow(`SELECT name FROM ` + h.schemaOf() + `_plugin_cloudflare_r2.widgets WHERE id = 1`).Scan(&name)
				if err != nil {
					t.Fatalf("reading the plugin's table in its schema: %v", err)
				}
				if ns := h.pgNamespaces(); len(ns) != 2 {
					t.Fatalf("want the plugin's schema and role, got %v", ns)
				}
			default:
				pdb, err := sql.Open("sqlite", filepath.Join(h.dataDir, "plugins", pluginID, "plugin.db"))
				if err != nil {
					t.Fatal(err)
				}
				err = pdb.QueryRow(`SELECT name FROM widgets WHERE id = 1`).Scan(&name)
				pdb.Close()
				if err != nil {
					t.Fatalf("reading the plugin's table in its database: %v", err)
				}
			}
			if name != "first" {
				t.Fatalf("the plugin's row: %q", name)
			}

			if err := h.app.Market.Uninstall(ctx, pluginID); err != nil {
				t.Fatal(err)
			}
			if entries := h.pluginsDirEntries(); len(entries) != 0 {
				t.Fatalf("uninstall left files: %v", entries)
			}
			if ns := h.pgNamespaces(); len(ns) != 0 {
				t.Fatalf("uninstall left the namespace: %v", ns)
			}
			// Only the settings retained for a reinstall differ from before.
			var lines []string
			for _, l := range strings.Split(h.dump(), "\n") {
				if !strings.Contains(l, "retained.") {
					lines = append(lines, l)
				}
			}
			if after := strings.Join(lines, "\n"); after != before {
				t.Fatalf("uninstall left the host database changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if _, err := h.app.Market.Install(ctx, pluginID); err != nil {
				t.Fatalf("reinstall: %v", err)
			}
			if !slices.Contains([]string{"installed"}, card(t, h).State) {
				t.Fatalf("card after reinstall: %+v", card(t, h))
			}
		})
	}
}
