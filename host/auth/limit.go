package auth

import (
	"math"
	"sync"
	"time"
)

// limiter counts sign-in attempts per key in fixed windows that start at a
// key's first attempt; each check names its key and that key's limit. It
// holds at most max keys: when full it drops expired windows, then the
// oldest one.
type limiter struct {
	mu     sync.Mutex
	window time.Duration
	max    int
	m      map[string]*attempts
}

type attempts struct {
	start time.Time
	n     int
}

// check is one key a sign-in attempt counts against, and its limit.
type check struct {
	key   string
	limit int
}

func newLimiter(window time.Duration, max int) *limiter {
	return &limiter{window: window, max: max, m: make(map[string]*attempts)}
}

// take records one attempt for every check's key, unless one of them
// already used its limit in the current window: then nothing is recorded
// and it returns how long until every such key may try again.
func (l *limiter) take(now time.Time, checks ...check) (retry time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range checks {
		if a := l.m[c.key]; a != nil && now.Sub(a.start) < l.window && a.n >= c.limit {
			if d := a.start.Add(l.window).Sub(now); d > retry {
				retry = d
			}
		}
	}
	if retry > 0 {
		return retry, false
	}
	for _, c := range checks {
		a := l.m[c.key]
		if a == nil || now.Sub(a.start) >= l.window {
			if a == nil && len(l.m) >= l.max {
				l.evict(now)
			}
			a = &attempts{start: now}
			l.m[c.key] = a
		}
		a.n++
	}
	return 0, true
}

// reset forgets the keys' attempts (after a successful sign-in).
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

// backoff slows sign-ins for a user name down, whatever address they come
// from, and never refuses one. Each name has a score: every attempt adds
// one, a correct password takes its own point back, and free points leak
// away per window. While the score is below free an attempt waits nothing;
// from there each attempt waits base, doubled per point, at most maxDelay.
// It holds at most max names, dropping the lowest score when full.
type backoff struct {
	mu             sync.Mutex
	free           int
	leak           time.Duration // one point leaks away per leak
	base, maxDelay time.Duration
	max            int
	m              map[string]*score
}

type score struct {
	n  float64
	at time.Time
}

func newBackoff(free int, window, base, maxDelay time.Duration, max int) *backoff {
	return &backoff{free: free, leak: window / time.Duration(free), base: base, maxDelay: maxDelay, max: max, m: make(map[string]*score)}
}

// decayed is s's score at now; b.mu is held.
func (b *backoff) decayed(s *score, now time.Time) float64 {
	if el := now.Sub(s.at); el > 0 {
		return math.Max(0, s.n-float64(el)/float64(b.leak))
	}
	return s.n
}

// attempt records one attempt for key and returns how long it waits first.
func (b *backoff) attempt(now time.Time, key string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.m[key]
	if s == nil {
		if len(b.m) >= b.max {
			b.evict(now)
		}
		s = &score{at: now}
		b.m[key] = s
	}
	n := b.decayed(s, now)
	s.n, s.at = n+1, now
	return backoffDelay(n, b.free, b.base, b.maxDelay)
}

// backoffDelay is how long an attempt waits when its name's score was n:
// nothing below free, then base doubled per point over free, at most
// maxDelay.
func backoffDelay(n float64, free int, base, maxDelay time.Duration) time.Duration {
	over := int(n) - free
	if over < 0 {
		return 0
	}
	if over >= 30 {
		return maxDelay
	}
	return min(base<<over, maxDelay)
}

// success takes back the point of an attempt whose password was right; the
// other attempts' points stay, since they may be an attack still under way.
func (b *backoff) success(now time.Time, key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.m[key]; s != nil {
		s.n, s.at = math.Max(0, b.decayed(s, now)-1), now
	}
}

// evict makes room for one key; b.mu is held.
func (b *backoff) evict(now time.Time) {
	var weakest string
	var low float64
	for k, s := range b.m {
		n := b.decayed(s, now)
		if n == 0 {
			delete(b.m, k)
			continue
		}
		if weakest == "" || n < low {
			weakest, low = k, n
		}
	}
	if len(b.m) >= b.max && weakest != "" {
		delete(b.m, weakest)
	}
}

func (b *backoff) size() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
