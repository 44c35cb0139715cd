package auth

import (
	"context"
	"time"
)

// store keeps the sessions and the sign-in limiter's windows: in this
// process's memory (memStore, when Options.DB is nil) or in the host
// database (dbStore), where every node sharing the database sees them and
// a restart keeps them.
type store interface {
	// createSession stores a new session and returns its id and CSRF token.
	createSession(ctx context.Context, user, role string, now time.Time) (id, csrf string, err error)
	// session returns the live session with this id and marks it used.
	session(ctx context.Context, id string, now time.Time) (session, bool, error)
	// deleteSession ends the session with this id, if any.
	deleteSession(ctx context.Context, id string) error
	// take records one attempt for every check's key, unless one of them
	// already used its limit in the current window: then nothing is
	// recorded and it returns how long until every such key may try again.
	take(ctx context.Context, now time.Time, checks ...check) (retry time.Duration, ok bool, err error)
	// reset forgets the keys' attempts (after a successful sign-in).
	reset(ctx context.Context, keys ...string) error
	// attempt scores one sign-in attempt for a user name key and returns
	// how long it waits before its password is checked (see backoff).
	attempt(ctx context.Context, now time.Time, key string) (time.Duration, error)
	// success takes back the point of an attempt whose password was right.
	success(ctx context.Context, now time.Time, key string) error
}

// memStore is the in-memory store: one process's sessions and limits.
type memStore struct {
	sessions *sessions
	limits   *limiter
	backoff  *backoff
}

func (m memStore) createSession(_ context.Context, user, role string, now time.Time) (string, string, error) {
	id, csrf := m.sessions.create(user, role, now)
	return id, csrf, nil
}

func (m memStore) session(_ context.Context, id string, now time.Time) (session, bool, error) {
	s, ok := m.sessions.get(id, now)
	return s, ok, nil
}

func (m memStore) deleteSession(_ context.Context, id string) error {
	m.sessions.delete(id)
	return nil
}

func (m memStore) take(_ context.Context, now time.Time, checks ...check) (time.Duration, bool, error) {
	retry, ok := m.limits.take(now, checks...)
	return retry, ok, nil
}

func (m memStore) reset(_ context.Context, keys ...string) error {
	m.limits.reset(keys...)
	return nil
}

func (m memStore) attempt(_ context.Context, now time.Time, key string) (time.Duration, error) {
	return m.backoff.attempt(now, key), nil
}

func (m memStore) success(_ context.Context, now time.Time, key string) error {
	m.backoff.success(now, key)
	return nil
}
