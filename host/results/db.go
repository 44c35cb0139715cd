package results

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
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

// dbTimeValue scans a timestamp column of either dialect.
type dbTimeValue = dbmigrate.TimeValue

// row is one results row, with its offload job if it has one.
type row struct {
	id, path, contentType, sha256, storage, objectKey, url, owner, localReason string
	// bucket is where the object is ('' for local and legacy rows).
	bucket string
	// localNode is the node whose results folder holds the local copy
	// ("" for any node: a shared folder, or a row from before nodes).
	localNode             string
	size                  int64
	localPresent, deleted bool
	createdAt             time.Time
	// upload is the result's offload job, nil without one.
	upload *UploadStatus
}

// rowColumns are the columns scanRow reads, in order, from rowFrom.
const rowColumns = "r.id, r.path, r.content_type, r.size, r.sha256, r.storage, r.object_key, r.url, r.local_present, r.deleted, r.created_at, r.owner, r.local_reason, r.bucket, r.local_node, " +
	"j.id, j.state, j.provider, j.last_error, j.attempts, j.next_attempt_at"

// rowFrom is the results table with each result's offload job.
const rowFrom = "results r LEFT JOIN jobs j ON j.result_id = r.id AND j.kind = '" + kindOffload + "'"

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanRow reads rowColumns.
func scanRow(sc scanner) (row, error) {
	var r row
	var lp, del dbBool
	var created dbTimeValue
	var jobID, attempts sql.NullInt64
	var state, provider, lastErr sql.NullString
	var next any
	if err := sc.Scan(&r.id, &r.path, &r.contentType, &r.size, &r.sha256, &r.storage, &r.objectKey, &r.url, &lp, &del, &created, &r.owner, &r.localReason, &r.bucket, &r.localNode,
		&jobID, &state, &provider, &lastErr, &attempts, &next); err != nil {
		return row{}, err
	}
	r.localPresent, r.deleted, r.createdAt = bool(lp), bool(del), time.Time(created)
	if jobID.Valid {
		u := &UploadStatus{Provider: provider.String, Error: lastErr.String, Attempts: int(attempts.Int64)}
		switch {
		case state.String == jobFailed:
			u.State = UploadFailed
		case u.Attempts > 0:
			u.State = UploadRetrying
		default:
			u.State = UploadQueued
		}
		if u.State != UploadFailed && next != nil {
			var t dbTimeValue
			if err := t.Scan(next); err != nil {
				return row{}, err
			}
			u.NextAttemptAt = time.Time(t)
		}
		r.upload = u
	}
	return r, nil
}

// loadRow reads the row of id, deleted or not; sql.ErrNoRows when missing.
func loadRow(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}, id string) (row, error) {
	return scanRow(q.QueryRowContext(ctx, "SELECT "+rowColumns+" FROM "+rowFrom+" WHERE r.id = $1", id))
}

// loadResultRow is loadRow without the result's offload job (row.upload
// is nil): what a job that uploads the result reads.
func loadResultRow(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}, id string) (row, error) {
	return scanRow(q.QueryRowContext(ctx, "SELECT "+resultColumns+" FROM results r WHERE r.id = $1", id))
}

// resultColumns are rowColumns with the job's columns empty.
const resultColumns = "r.id, r.path, r.content_type, r.size, r.sha256, r.storage, r.object_key, r.url, r.local_present, r.deleted, r.created_at, r.owner, r.local_reason, r.bucket, r.local_node, " +
	"NULL, NULL, NULL, NULL, NULL, NULL"

// result converts a row to the public Result, with the URL it was
// recorded with (Service.present gives the URL it is served from).
func (r row) result() Result {
	return Result{ID: r.id, Path: r.path, Storage: r.storage, URL: r.url, ContentType: r.contentType,
		SHA256: r.sha256, Size: r.size, LocalPresent: r.localPresent, CreatedAt: r.createdAt, Owner: r.owner,
		LocalReason: r.localReason, ObjectKey: r.objectKey, Bucket: r.bucket, Upload: r.upload}
}

// rollback ends tx if it was not committed.
func rollback(tx *sql.Tx) { _ = tx.Rollback() }

// isNoRows reports whether err says a query found nothing.
func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
