package results

import (
	"context"
	"testing"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/migrations"
	"github.com/magicads/r2storage/internal/testdb"
)

// TestCustodyMigration: migration 000010 keeps the rows of an older host
// working (legacy rows, queued jobs), and its down migration gives an
// older host keys it can use.
func TestCustodyMigration(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		ctx := context.Background()
		db := testdb.Open(t, d)
		src, err := migrations.FS(string(d))
		if err != nil {
			t.Fatal(err)
		}
		if err := dbmigrate.DownTo(ctx, db.DB, d, src, dbmigrate.HostTable, dbmigrate.Status{Applied: true, Version: 9}); err != nil {
			t.Fatalf("down to 9: %v", err)
		}
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := db.ExecContext(ctx, q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		// What a host before 000010 recorded: an offloaded result (relative
		// key), its delete job, and a queued offload.
		exec(`INSERT INTO results (id, path, content_type, size, sha256, storage, object_key, url, local_present, deleted)
			VALUES ('r1', 'images/g/r1.png', 'image/png', 1, 'x', 'cloudflare-r2', 'images/g/r1.png', 'https://pub/m/images/g/r1.png', $1, $2)`, false, true)
		exec(`INSERT INTO jobs (kind, result_id, provider, object_key, attempts) VALUES ('delete', 'r1', 'cloudflare-r2', 'images/g/r1.png', 3)`)
		exec(`INSERT INTO results (id, path, content_type, size, sha256) VALUES ('r2', 'images/g/r2.png', 'image/png', 1, 'x')`)
		exec(`INSERT INTO jobs (kind, result_id, provider, object_key) VALUES ('offload', 'r2', 'cloudflare-r2', 'images/g/r2.png')`)
		if err := dbmigrate.Up(ctx, db.DB, d, src, dbmigrate.HostTable); err != nil {
			t.Fatalf("up: %v", err)
		}
		var bucket, key string
		if err := db.QueryRowContext(ctx, `SELECT bucket, object_key FROM results WHERE id = 'r1'`).Scan(&bucket, &key); err != nil || bucket != "" || key != "images/g/r1.png" {
			t.Fatalf("legacy result after up: %q %q, %v", bucket, key, err)
		}
		var state, code string
		if err := db.QueryRowContext(ctx, `SELECT state, last_code, bucket FROM jobs WHERE result_id = 'r1'`).Scan(&state, &code, &bucket); err != nil || state != "queued" || code != "" || bucket != "" {
			t.Fatalf("legacy job after up: %q %q %q, %v", state, code, bucket, err)
		}
		if _, err := db.ExecContext(ctx, `UPDATE jobs SET state = 'parked' WHERE result_id = 'r2'`); err == nil {
			t.Fatal("a job state other than queued or failed was accepted")
		}

		// Adopted rows and a failed job, then down: keys the older host
		// reads as given to Put.
		exec(`UPDATE results SET bucket = 'r2:acc/b', object_key = 'm/images/g/r1.png' WHERE id = 'r1'`)
		exec(`UPDATE jobs SET bucket = 'r2:acc/b', object_key = 'm/images/g/r1.png', state = 'failed', last_code = 'permission denied' WHERE result_id = 'r1'`)
		if err := dbmigrate.DownTo(ctx, db.DB, d, src, dbmigrate.HostTable, dbmigrate.Status{Applied: true, Version: 9}); err != nil {
			t.Fatalf("down to 9 again: %v", err)
		}
		if err := db.QueryRowContext(ctx, `SELECT object_key FROM results WHERE id = 'r1'`).Scan(&key); err != nil || key != "images/g/r1.png" {
			t.Fatalf("result after down: %q, %v", key, err)
		}
		if err := db.QueryRowContext(ctx, `SELECT object_key FROM jobs WHERE result_id = 'r1'`).Scan(&key); err != nil || key != "images/g/r1.png" {
			t.Fatalf("delete job after down: %q, %v", key, err)
		}
		if err := dbmigrate.Up(ctx, db.DB, d, src, dbmigrate.HostTable); err != nil {
			t.Fatalf("up again: %v", err)
		}
	})
}
