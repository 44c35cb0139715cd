package auth

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// limiter counts login attempts per key (client IP, username) in fixed
// windows that start at a key's first attempt. It holds at most max keys:
// when full it drops expired windows, then the oldest one.
type limiter struct {
	mu     sync.Mutex
	limit  int
	window time.Duration
	max    int
	m      map[string]*attempts
}

type attempts struct {
	start time.Time
	n     int
}

func newLimiter(limit int, window time.Duration, max int) *limiter {
	return &limiter{limit: limit, window: window, max: max, m: make(map[string]*attempts)}
}

// take records one attempt for every key, unless one of them already used
// its limit in the current window: then nothing is recorded and it returns
// how long until that key may try again.
func (l *limiter) take(now time.Time, keys ...string) (retry time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if a := l.m[k]; a != nil && now.Sub(a.start) < l.window && a.n >= l.limit {
			if d := a.start.Add(l.window).Sub(now); d > retry {
				retry = d
			}
		}
	}
	if retry > 0 {
		return retry, false
	}
	for _, k := range keys {
		a := l.m[k]
		if a == nil || now.Sub(a.start) >= l.window {
			if a == nil && len(l.m) >= l.max {
				l.evict(now)
			}
			a = &attempts{start: now}
			l.m[k] = a
		}
		a.n++
	}
	return 0, true
}

// reset forgets the keys' attempts (after a successful login).
func (l *limiter) reset(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		delete(l.m, k)
	}
}

// evict makes room for one key; l.mu is held.
func (l *limiter) evict(now time.Time) {
	var oldest string
	var oldestStart time.Time
	for k, a := range l.m {
		if now.Sub(a.start) >= l.window {
			delete(l.m, k)
			continue
		}
		if oldest == "" || a.start.Before(oldestStart) {
			oldest, oldestStart = k, a.start
		}
	}
	if len(l.m) >= l.max && oldest != "" {
		delete(l.m, oldest)
	}
}

func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// remoteIP is the request's peer address; an IPv6 client is keyed by its
// /64, which one client usually owns whole.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}
