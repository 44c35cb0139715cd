package dbmigrate

import (
	"context"
	"net/url"
	"os"
	"testing"
	"testing/fstest"
	"time"

	"github.com/magicads/r2storage/internal/faultproxy"
)

func testPostgresURL(t *testing.T) *url.URL {
	t.Helper()
	base := os.Getenv("MAGICADS_TEST_POSTGRES")
	if base == "" {
		base = defaultTestPostgres
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func showStatementTimeout(t *testing.T, dsn string) string {
	t.Helper()
	db, _, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got string
	if err := db.QueryRow("SHOW statement_timeout").Scan(&got); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestOpenPostgresBoundsWaits: finding 7 — a PostgreSQL DSN without
// connect_timeout waited forever on a blackholed server, and statements had
// no timeout. Open now adds connect_timeout and statement_timeout unless the
// DSN sets them; migrations run without the statement timeout.
func TestOpenPostgresBoundsWaits(t *testing.T) {
	u := testPostgresURL(t)
	if got := showStatementTimeout(t, u.String()); got != "30s" {
		t.Errorf("statement_timeout of a DSN without one = %q, want 30s", got)
	}
	q := u.Query()
	q.Set("statement_timeout", "5s")
	own := *u
	own.RawQuery = q.Encode()
	if got := showStatementTimeout(t, own.String()); got != "5s" {
		t.Errorf("statement_timeout of a DSN that sets 5s = %q", got)
	}

	// Migrations are not cut by the statement timeout.
	tdb := newPostgres(t)
	src := fstest.MapFS{
		"000001_check.up.sql": &fstest.MapFile{Data: []byte(`DO $$ BEGIN
			IF current_setting('statement_timeout') <> '0' THEN
				RAISE EXCEPTION 'migrations run with statement_timeout %', current_setting('statement_timeout');
			END IF; END $$;`)},
		"000001_check.down.sql": &fstest.MapFile{Data: []byte(`SELECT 1`)},
	}
	if err := Up(context.Background(), tdb.db, Postgres, src, "schema_migrations_timeouts"); err != nil {
		t.Errorf("a migration checking its statement timeout: %v", err)
	}

	// A server that accepts the connection and never answers.
	p, err := faultproxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetMode(faultproxy.Blackhole)
	blackholed := *u
	blackholed.Host = p.Addr()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		db, _, err := Open(context.Background(), blackholed.String())
		if err == nil {
			db.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Open through a blackholed server succeeded")
		}
		if took := time.Since(start); took > 15*time.Second {
			t.Errorf("Open through a blackholed server took %v", took)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Open through a blackholed server had not returned after 20s (no connect timeout)")
	}
}
