package httpapi

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// retryAfter is the Retry-After of a 503 for a passing fault, in seconds.
const retryAfter = "5"

// defaultDBTimeout bounds a request's database calls when the API has no
// results service to take results.Service.DBTimeout from.
const defaultDBTimeout = 5 * time.Second

// dbTimeout is how long one database step of a request may wait.
func (a *API) dbTimeout() time.Duration {
	if a.results == nil {
		return defaultDBTimeout
	}
	return a.results.DBTimeout()
}

// dbContext bounds a request's database calls by dbTimeout.
func (a *API) dbContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), a.dbTimeout())
}

// fault is what a failure of the host's own resources means for a client.
type fault int

const (
	noFault    fault = iota
	diskFull         // the results disk (or the database's) has no room: 507
	diskRO           // the results disk is read-only: 503
	dbDown           // the database did not answer or refused for now: 503
	dbTimedOut       // the database did not answer within dbTimeout: 503
)

// classify tells a failure of the database or the disk from other errors.
// A deadline is the database's only when the request itself is still
// alive (every deadline on these paths bounds database calls).
func classify(r *http.Request, err error) fault {
	var pgErr *pgconn.PgError
	var sqErr *sqlite.Error
	var netErr net.Error
	var connErr *pgconn.ConnectError
	switch {
	case err == nil:
		return noFault
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return diskFull
	case errors.Is(err, syscall.EROFS):
		return diskRO
	case errors.As(err, &pgErr):
		switch {
		case pgErr.Code == "53100": // disk_full
			return diskFull
		case pgErr.Code == "57014": // query_canceled: statement_timeout
			return dbTimedOut
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"),  // insufficient resources
			strings.HasPrefix(pgErr.Code, "57P"), // shutdown, cannot connect now
			strings.HasPrefix(pgErr.Code, "40"),  // serialization failure, deadlock
			strings.HasPrefix(pgErr.Code, "58"),  // system (I/O) error
			pgErr.Code == "55P03",                // lock_not_available
			pgErr.Code == "25006":                // read-only transaction (a standby)
			return dbDown
		}
		return noFault
	case errors.As(err, &sqErr):
		switch sqErr.Code() & 0xff {
		case sqlite3.SQLITE_FULL:
			return diskFull
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR,
			sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_PROTOCOL:
			return dbDown
		}
		return noFault
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		return dbTimedOut
	case errors.As(err, &connErr), errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &netErr), pgconn.Timeout(err):
		return dbDown
	}
	return noFault
}

// hostFault answers a failure of the database or the disk and reports
// whether err was one: 507 for a full disk, 503 with Retry-After for a
// read-only disk or a database that is down or slow. op names what failed.
func (a *API) hostFault(w http.ResponseWriter, r *http.Request, op string, err error) bool {
	var msg string
	status := http.StatusServiceUnavailable
	switch classify(r, err) {
	case noFault:
		return false
	case diskFull:
		status = http.StatusInsufficientStorage
		msg = fmt.Sprintf("%s: the host's disk is full (%v); the host's operator must free space on the data disk, then retry", op, err)
	case diskRO:
		msg = fmt.Sprintf("%s: the host's results disk is read-only (%v); the host's operator must make it writable, then retry", op, err)
	case dbTimedOut:
		msg = fmt.Sprintf("%s: the database did not answer within %v (%v); retry shortly, and if it persists the host's operator must check the database", op, a.dbTimeout(), err)
	case dbDown:
		msg = fmt.Sprintf("%s: the database is unavailable (%v); retry shortly, and if it persists the host's operator must check the database", op, err)
	}
	a.opts.Logger.Warn(op+" failed", "status", status, "error", err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeError(w, status, msg)
	return true
}

// fail answers err: a fault of the host's database or disk as hostFault
// does, anything else as an internal error.
func (a *API) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	if !a.hostFault(w, r, op, err) {
		a.internalError(w, op, err)
	}
}
