package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// touchEvery is how stale a session's stored last use may get: a request
// writes last_seen_ms only when the stored value is at least this old, so
// a busy console does not write the database on every request. The idle
// timeout therefore counts from a use at most this much earlier than the
// last one, and may end a session up to this much early.
const touchEvery = time.Minute

// sweepBatch bounds the expired rows one request deletes.
const sweepBatch = 500

// dbStore keeps sessions, sign-in windows and sign-in delays in the host
// database (migration 000013: admin_sessions, login_attempts,
// login_backoff), in SQL that SQLite and PostgreSQL both run. Rows hold
// only the SHA-256 of a session id, and the CSRF token is derived from the
// id (csrfFor), so a read of the tables lets no one use a session or forge
// a request. Times are Unix milliseconds.
type dbStore struct {
	db                   *sql.DB
	idle, maxAge, window time.Duration
	maxSessions, maxKeys int
	// The sign-in delay (backoff): free points, one leaking away per
	// leak, then base doubled per point up to maxDelay.
	free                 int
	leak, base, maxDelay time.Duration
}

// idHash is the key of a session id's row: its SHA-256, in hex.
func idHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// csrfFor is the CSRF token of the session with this id: an HMAC-SHA256
// under the id, so it needs no storage and the stored hash of the id
// does not give it away.
func csrfFor(id string) string {
	m := hmac.New(sha256.New, []byte(id))
	m.Write([]byte("magicads admin session csrf token"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// ms, fromMS and msOf convert to and from the tables' Unix milliseconds.
func ms(t time.Time) int64       { return t.UnixMilli() }
func fromMS(v int64) time.Time   { return time.UnixMilli(v) }
func msOf(d time.Duration) int64 { return d.Milliseconds() }

// dbErr wraps a failed statement: what it did, the cause and the fix.
func dbErr(what string, err error) error {
	return fmt.Errorf("%s in the host database: %w (check that the database is reachable; signing in needs it)", what, err)
}

func (s *dbStore) createSession(ctx context.Context, user, role string, now time.Time) (string, string, error) {
	n := ms(now)
	// Expired sessions go first, a bounded batch per sign-in.
	if _, err := s.db.ExecContext(ctx, `DELETE FROM admin_sessions WHERE id_hash IN (
		SELECT id_hash FROM admin_sessions WHERE last_seen_ms <= $1 OR created_ms <= $2 LIMIT $3)`,
		n-msOf(s.idle), n-msOf(s.maxAge), sweepBatch); err != nil {
		return "", "", dbErr("sweeping expired admin sessions", err)
	}
	// Full of live sessions: the least recently used ones end (by
	// last_seen_ms, which may lag a use by up to touchEvery). Nodes
	// signing in at the same moment may each pass this check, so the
	// table can briefly hold a few more than maxSessions.
	var count int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM admin_sessions`).Scan(&count); err != nil {
		return "", "", dbErr("counting admin sessions", err)
	}
	if count >= s.maxSessions {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM admin_sessions WHERE id_hash IN (
			SELECT id_hash FROM admin_sessions ORDER BY last_seen_ms, created_ms LIMIT $1)`, count-s.maxSessions+1); err != nil {
			return "", "", dbErr("ending the least recently used admin sessions", err)
		}
	}
	id := randomToken()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO admin_sessions (id_hash, user_name, role, created_ms, last_seen_ms)
		VALUES ($1, $2, $3, $4, $4)`, idHash(id), user, role, n); err != nil {
		return "", "", dbErr("storing the admin session", err)
	}
	return id, csrfFor(id), nil
}

func (s *dbStore) session(ctx context.Context, id string, now time.Time) (session, bool, error) {
	if id == "" {
		return session{}, false, nil
	}
	k := idHash(id)
	var ss session
	var created, seen int64
	err := s.db.QueryRowContext(ctx, `SELECT user_name, role, created_ms, last_seen_ms FROM admin_sessions WHERE id_hash = $1`, k).
		Scan(&ss.user, &ss.role, &created, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return session{}, false, nil
	}
	if err != nil {
		return session{}, false, dbErr("reading the admin session", err)
	}
	ss.created, ss.lastSeen = fromMS(created), fromMS(seen)
	if now.Sub(ss.lastSeen) >= s.idle || now.Sub(ss.created) >= s.maxAge {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM admin_sessions WHERE id_hash = $1`, k); err != nil {
			return session{}, false, dbErr("ending an expired admin session", err)
		}
		return session{}, false, nil
	}
	// Written at most once per touchEvery (see there), not per request.
	if now.Sub(ss.lastSeen) >= touchEvery {
		if _, err := s.db.ExecContext(ctx, `UPDATE admin_sessions SET last_seen_ms = $2 WHERE id_hash = $1 AND last_seen_ms < $2`, k, ms(now)); err != nil {
			return session{}, false, dbErr("recording the admin session's use", err)
		}
		ss.lastSeen = now
	}
	ss.csrf = csrfFor(id)
	return ss, true, nil
}

func (s *dbStore) deleteSession(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM admin_sessions WHERE id_hash = $1`, idHash(id)); err != nil {
		return dbErr("ending the admin session", err)
	}
	return nil
}

// take counts the attempt in one transaction: each key's row is upserted
// (a new window when its window is over) and returned; if one is over its
// limit the transaction rolls back and nothing is recorded. The upsert
// locks the row (PostgreSQL) or the database (SQLite, BEGIN IMMEDIATE)
// until commit, and keys are taken in sorted order, so nodes counting the
// same keys at once wait for each other and never both pass a limit.
func (s *dbStore) take(ctx context.Context, now time.Time, checks ...check) (retry time.Duration, ok bool, err error) {
	n, w := ms(now), msOf(s.window)
	if _, err := s.db.ExecContext(ctx, `DELETE FROM login_attempts WHERE limit_key IN (
		SELECT limit_key FROM login_attempts WHERE window_start_ms <= $1 LIMIT $2)`, n-w, sweepBatch); err != nil {
		return 0, false, dbErr("sweeping expired sign-in windows", err)
	}
	sorted := slices.Clone(checks)
	slices.SortFunc(sorted, func(a, b check) int { return strings.Compare(a.key, b.key) })
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, dbErr("counting a sign-in attempt", err)
	}
	defer tx.Rollback()
	fresh := false
	for _, c := range sorted {
		var start int64
		var count int
		if err := tx.QueryRowContext(ctx, `INSERT INTO login_attempts (limit_key, window_start_ms, attempts) VALUES ($1, $2, 1)
			ON CONFLICT (limit_key) DO UPDATE SET
				attempts = CASE WHEN login_attempts.window_start_ms <= $3 THEN 1 ELSE login_attempts.attempts + 1 END,
				window_start_ms = CASE WHEN login_attempts.window_start_ms <= $3 THEN $2 ELSE login_attempts.window_start_ms END
			RETURNING window_start_ms, attempts`, c.key, n, n-w).Scan(&start, &count); err != nil {
			return 0, false, dbErr("counting a sign-in attempt", err)
		}
		if count > c.limit {
			retry = max(retry, fromMS(start).Add(s.window).Sub(now))
		}
		fresh = fresh || count == 1
	}
	if retry > 0 {
		return retry, false, nil // the rollback records nothing
	}
	if err := tx.Commit(); err != nil {
		return 0, false, dbErr("counting a sign-in attempt", err)
	}
	if fresh { // a key started a window: keep the table within maxKeys, dropping the oldest windows
		var keys int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM login_attempts`).Scan(&keys); err != nil {
			return 0, false, dbErr("counting sign-in windows", err)
		}
		if keys > s.maxKeys {
			if _, err := s.db.ExecContext(ctx, `DELETE FROM login_attempts WHERE limit_key IN (
				SELECT limit_key FROM login_attempts ORDER BY window_start_ms LIMIT $1)`, keys-s.maxKeys); err != nil {
				return 0, false, dbErr("dropping the oldest sign-in windows", err)
			}
		}
	}
	return 0, true, nil
}

func (s *dbStore) reset(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM login_attempts WHERE limit_key = $1`, k); err != nil {
			return dbErr("clearing sign-in attempts", err)
		}
	}
	return nil
}

// decayedScore is the SQL of a login_backoff row's score at $2 (Unix
// milliseconds), one point leaking away per $3 milliseconds, as
// backoff.decayed computes it.
const decayedScore = `(CASE WHEN $2 > login_backoff.at_ms THEN
	(CASE WHEN login_backoff.score - CAST($2 - login_backoff.at_ms AS DOUBLE PRECISION) / $3 > 0
		THEN login_backoff.score - CAST($2 - login_backoff.at_ms AS DOUBLE PRECISION) / $3 ELSE 0 END)
	ELSE login_backoff.score END)`

// leakMS is how many milliseconds one point takes to leak away (at least 1).
func (s *dbStore) leakMS() float64 { return float64(max(1, msOf(s.leak))) }

// attempt adds the attempt's point in one statement (an upsert, atomic
// on both databases) and returns the delay of the score before it. The
// table needs no bound: login keys its user names "user:admin" or
// "user:?".
func (s *dbStore) attempt(ctx context.Context, now time.Time, key string) (time.Duration, error) {
	var score float64
	if err := s.db.QueryRowContext(ctx, `INSERT INTO login_backoff (user_key, score, at_ms) VALUES ($1, 1, $2)
		ON CONFLICT (user_key) DO UPDATE SET score = `+decayedScore+` + 1, at_ms = $2
		RETURNING score`, key, ms(now), s.leakMS()).Scan(&score); err != nil {
		return 0, dbErr("scoring a sign-in attempt", err)
	}
	return backoffDelay(score-1, s.free, s.base, s.maxDelay), nil
}

func (s *dbStore) success(ctx context.Context, now time.Time, key string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE login_backoff SET
		score = CASE WHEN `+decayedScore+` - 1 > 0 THEN `+decayedScore+` - 1 ELSE 0 END, at_ms = $2
		WHERE user_key = $1`, key, ms(now), s.leakMS()); err != nil {
		return dbErr("scoring a sign-in", err)
	}
	return nil
}
