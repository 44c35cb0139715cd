package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"
)

// session is one signed-in browser. The store keys it by the sha256 of its
// id, so the ids themselves are never kept and lookups leak no timing about
// them.
type session struct {
	user, role string
	csrf       string
	created    time.Time
	lastSeen   time.Time
}

// sessions is the in-memory session store of an Auth without Options.DB;
// it lives in one process (dbStore is the host's, shared by its nodes).
type sessions struct {
	mu      sync.Mutex
	m       map[[32]byte]*session
	idle    time.Duration
	maxAge  time.Duration
	maxSize int
}

func newSessions(idle, maxAge time.Duration, maxSize int) *sessions {
	return &sessions{m: make(map[[32]byte]*session), idle: idle, maxAge: maxAge, maxSize: maxSize}
}

// randomToken is 32 random bytes, base64url without padding.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) expired(ss *session, now time.Time) bool {
	return now.Sub(ss.lastSeen) >= s.idle || now.Sub(ss.created) >= s.maxAge
}

// create stores a new session and returns its id and CSRF token.
func (s *sessions) create(user, role string, now time.Time) (id, csrf string) {
	id, csrf = randomToken(), randomToken()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	if len(s.m) >= s.maxSize { // full of live sessions: drop the least recently used
		var oldest [32]byte
		var seen time.Time
		first := true
		for k, ss := range s.m {
			if first || ss.lastSeen.Before(seen) {
				oldest, seen, first = k, ss.lastSeen, false
			}
		}
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(id))] = &session{user: user, role: role, csrf: csrf, created: now, lastSeen: now}
	return id, csrf
}

// get returns a copy of the live session with this id and marks it used.
func (s *sessions) get(id string, now time.Time) (session, bool) {
	if id == "" {
		return session{}, false
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[k]
	if ss == nil {
		return session{}, false
	}
	if s.expired(ss, now) {
		delete(s.m, k)
		return session{}, false
	}
	ss.lastSeen = now
	return *ss, true
}

// delete ends the session with this id, if any.
func (s *sessions) delete(id string) {
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
}

// sweep drops expired sessions; s.mu is held.
func (s *sessions) sweep(now time.Time) {
	for k, ss := range s.m {
		if s.expired(ss, now) {
			delete(s.m, k)
		}
	}
}

func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
