package results

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// timeLayout is how every timestamp is sent to the database: UTC, fixed
// width, microsecond precision. PostgreSQL parses it into TIMESTAMPTZ; SQLite
// stores the text as is, so equal instants compare equal and text order is
// time order (the lease token and the due-job query rely on both).
const timeLayout = "2006-01-02 15:04:05.000000+00:00"

// dbTime formats t for a query parameter.
func dbTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// micro truncates t to what the database keeps.
func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// dbBool scans a boolean column: BOOLEAN on PostgreSQL, INTEGER on SQLite.
type dbBool bool

// Scan accepts bool, integer and text representations.
func (b *dbBool) Scan(v any) error {
	switch x := v.(type) {
	case bool:
		*b = dbBool(x)
	case int64:
		*b = x != 0
	case []byte:
		return b.Scan(string(x))
	case string:
		switch strings.ToLower(x) {
		case "1", "t", "true":
			*b = true
		case "0", "f", "false":
			*b = false
		default:
			return fmt.Errorf("results: %q is not a boolean", x)
		}
	case nil:
		*b = false
	default:
		return fmt.Errorf("results: cannot scan %T as a boolean", v)
	}
	return nil
}

// dbTimeValue scans a timestamp column, as time.Time or as text.
type dbTimeValue time.Time

// Scan accepts time.Time and the text layouts the drivers return.
func (t *dbTimeValue) Scan(v any) error {
	switch x := v.(type) {
	case time.Time:
		*t = dbTimeValue(x.UTC())
		return nil
	case []byte:
		return t.Scan(string(x))
	case string:
		for _, layout := range []string{timeLayout, "2006-01-02 15:04:05.999999999-07:00", time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05"} {
			if p, err := time.Parse(layout, x); err == nil {
				*t = dbTimeValue(p.UTC())
				return nil
			}
		}
		return fmt.Errorf("results: %q is not a timestamp", x)
	default:
		return fmt.Errorf("results: cannot scan %T as a timestamp", v)
	}
}

// row is one results row.
type row struct {
	id, path, contentType, sha256, storage, objectKey, url, owner, localReason string
	size                                                                       int64
	localPresent, deleted                                                      bool
	createdAt                                                                  time.Time
}

// rowColumns are the columns scanRow reads, in order.
const rowColumns = "id, path, content_type, size, sha256, storage, object_key, url, local_present, deleted, created_at, owner, local_reason"

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanRow reads rowColumns.
func scanRow(sc scanner) (row, error) {
	var r row
	var lp, del dbBool
	var created dbTimeValue
	if err := sc.Scan(&r.id, &r.path, &r.contentType, &r.size, &r.sha256, &r.storage, &r.objectKey, &r.url, &lp, &del, &created, &r.owner, &r.localReason); err != nil {
		return row{}, err
	}
	r.localPresent, r.deleted, r.createdAt = bool(lp), bool(del), time.Time(created)
	return r, nil
}

// loadRow reads the row of id, deleted or not; sql.ErrNoRows when missing.
func loadRow(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}, id string) (row, error) {
	return scanRow(q.QueryRowContext(ctx, "SELECT "+rowColumns+" FROM results WHERE id = $1", id))
}

// result converts a row to the public Result.
func (r row) result() Result {
	return Result{ID: r.id, Path: r.path, Storage: r.storage, URL: r.url, ContentType: r.contentType,
		SHA256: r.sha256, Size: r.size, LocalPresent: r.localPresent, CreatedAt: r.createdAt, Owner: r.owner,
		LocalReason: r.localReason}
}

// rollback ends tx if it was not committed.
func rollback(tx *sql.Tx) { _ = tx.Rollback() }

// isNoRows reports whether err says a query found nothing.
func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
