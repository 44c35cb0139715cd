// Package auth guards the admin console and the admin API: the admin user's
// password sign-in (/login, /logout) with server-side sessions and CSRF
// tokens, the MAGICADS_ADMIN_TOKEN bearer token for automation, and
// sign-in rate limits.
//
// Sign-in limits never lock the admin out: failures count per client
// address and per (address, user name), and an address over its limit gets
// 429 with Retry-After; failures for a user name from every address only
// add a growing server-side delay (at most MaxLoginDelay) before the
// password is checked, so the right password from a clean address always
// signs in.
//
// The client address is the peer address, or, when the peer is one of the
// trusted proxies, the right-most X-Forwarded-For address that is not a
// trusted proxy (ClientIP). Cookies are Secure on a TLS connection and on
// requests through a trusted proxy unless it sends X-Forwarded-Proto: http.
//
// Sessions have random 32-byte ids and end after 12 hours unused or 7 days
// after sign-in; when the store is full (MaxSessions) the least recently
// used one ends. With Options.DB (the host) sessions, sign-in windows and
// sign-in delays are kept in the host database (migration 000013), so
// every host node on that database accepts a session, counts failures
// together, and a restart signs no one out. A session's row is keyed by
// the SHA-256 of its id and its CSRF token is an HMAC under the id, so the
// tables hold nothing that signs in or forges a request. A session's last
// use is written at most once a minute (the idle timeout may end it up to
// a minute early), and expired rows are swept in bounded batches as
// sessions start and attempts are counted. A sign-in attempt is counted in
// one transaction, so nodes counting the same client at once never both
// pass its limit. If the database cannot be reached, session checks and
// sign-ins answer 503. Without Options.DB all of it lives in this
// process's memory.
//
// A session authorizes safe methods (GET, HEAD, OPTIONS) by its cookie alone;
// any other method also needs the session's CSRF token in the X-CSRF-Token
// header (the magicads_csrf cookie holds it for the pages' scripts). The
// bearer token needs no CSRF token: browsers never send it by themselves.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"time"
)

// msgStoreDown answers a request whose session or sign-in limits could not
// be read or written.
const msgStoreDown = "sessions are unavailable: the host cannot reach its database; try again shortly (the host log names the cause)"

// Names the pages and scripts rely on.
const (
	// SessionCookie holds the session id (HttpOnly, SameSite=Lax).
	SessionCookie = "magicads_session"
	// CSRFCookie holds the session's CSRF token (readable by scripts, SameSite=Strict).
	CSRFCookie = "magicads_csrf"
	// CSRFHeader carries the CSRF token on state-changing calls.
	CSRFHeader = "X-CSRF-Token"
	// CSRFField carries the CSRF token in HTML form posts (/logout, pages).
	CSRFField = "csrf_token"
	// AdminUser is the one user's name.
	AdminUser = "admin"
	// RoleAdmin is the role allowed to administer; sessions of any other role are refused.
	RoleAdmin = "admin"
	// DefaultNext is where a sign-in without a next path lands.
	DefaultNext = "/app/admin/general/plugins"
)

// Options configure an Auth; zero values take the defaults named.
type Options struct {
	// Password verifies the admin user's password (see LoadPassword); nil refuses every sign-in.
	Password *Password
	// Token is MAGICADS_ADMIN_TOKEN, accepted as "Authorization: Bearer TOKEN"; "" accepts none.
	Token string
	// Logger receives sign-in events; it never gets a password, token or session id.
	Logger *slog.Logger
	// IdleTimeout ends a session unused this long (12h).
	IdleTimeout time.Duration
	// MaxAge ends a session this long after sign-in (7 days).
	MaxAge time.Duration
	// LoginLimit is how many failed sign-ins a client address gets per user
	// name per LoginWindow (5); beyond it the address gets 429 for that name.
	// It is also how many failures a user name gets from all addresses,
	// leaking away over each LoginWindow, before its sign-ins are delayed.
	LoginLimit int
	// AddressLimit is how many failed sign-ins a client address gets per
	// LoginWindow across every user name (2×LoginLimit).
	AddressLimit int
	// LoginWindow is the rate-limit window (1 minute).
	LoginWindow time.Duration
	// LoginDelay is the first delay added to a user name's sign-ins once it
	// has more than LoginLimit recent failures (250ms); it doubles per
	// further failure up to MaxLoginDelay (4s). The delay never refuses.
	LoginDelay, MaxLoginDelay time.Duration
	// MaxSessions bounds the session store (10,000); when full, the least recently used session ends.
	MaxSessions int
	// MaxLimitKeys bounds the rate limiter's keys (10,000), and the sign-in
	// delay's user names.
	MaxLimitKeys int
	// DB, when set, is the migrated host database (SQLite or PostgreSQL)
	// that keeps sessions and sign-in limits (tables admin_sessions and
	// login_attempts), so every node on it accepts a session and counts
	// failures together, and a restart signs no one out; nil keeps them in
	// this process's memory.
	DB *sql.DB
	// TrustedProxies are the reverse proxies (--trusted-proxies) whose
	// X-Forwarded-For names the client and whose requests get Secure cookies.
	TrustedProxies []netip.Prefix
	// ClientIP, when set, replaces Auth.ClientIP (tests).
	ClientIP func(*http.Request) string
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Auth authenticates admin requests; it is safe for concurrent use.
type Auth struct {
	opts     Options
	tokenSum [32]byte
	store    store
	wait     func(context.Context, time.Duration) error // sleeps a sign-in's delay
	slow     chan struct{}                              // bounds concurrent PBKDF2 checks
	log      *slog.Logger
	handler  http.Handler
	page     *template.Template
}

// New returns an Auth.
func New(opts Options) *Auth {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 12 * time.Hour
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 7 * 24 * time.Hour
	}
	if opts.LoginLimit <= 0 {
		opts.LoginLimit = 5
	}
	if opts.AddressLimit <= 0 {
		opts.AddressLimit = 2 * opts.LoginLimit
	}
	if opts.LoginWindow <= 0 {
		opts.LoginWindow = time.Minute
	}
	if opts.LoginDelay <= 0 {
		opts.LoginDelay = 250 * time.Millisecond
	}
	if opts.MaxLoginDelay <= 0 {
		opts.MaxLoginDelay = 4 * time.Second
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 10_000
	}
	if opts.MaxLimitKeys <= 0 {
		opts.MaxLimitKeys = 10_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Auth{
		opts:     opts,
		tokenSum: sha256.Sum256([]byte(opts.Token)),
		store: memStore{sessions: newSessions(opts.IdleTimeout, opts.MaxAge, opts.MaxSessions),
			limits:  newLimiter(opts.LoginWindow, opts.MaxLimitKeys),
			backoff: newBackoff(opts.LoginLimit, opts.LoginWindow, opts.LoginDelay, opts.MaxLoginDelay, opts.MaxLimitKeys)},
		wait: sleep,
		slow: make(chan struct{}, max(1, runtime.NumCPU()/2)),
		log:  opts.Logger,
		page: template.Must(template.New("login").Parse(loginHTML)),
	}
	if opts.DB != nil {
		a.store = &dbStore{db: opts.DB, idle: opts.IdleTimeout, maxAge: opts.MaxAge, window: opts.LoginWindow,
			maxSessions: opts.MaxSessions, maxKeys: opts.MaxLimitKeys,
			free: opts.LoginLimit, leak: opts.LoginWindow / time.Duration(opts.LoginLimit), base: opts.LoginDelay, maxDelay: opts.MaxLoginDelay}
	}
	cop := http.NewCrossOriginProtection()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", a.loginPage)
	mux.Handle("POST /login", cop.Handler(http.HandlerFunc(a.login)))
	mux.Handle("POST /logout", cop.Handler(http.HandlerFunc(a.logout)))
	a.handler = mux
	return a
}

// Handler serves GET and POST /login and POST /logout; mount it at both paths.
func (a *Auth) Handler() http.Handler { return a.handler }

// Identity is who an authorized request comes from.
type Identity struct {
	// User is the signed-in user's name (AdminUser for the bearer token).
	User string
	// Role is the user's role (RoleAdmin).
	Role string
	// Bearer is true when the request carried MAGICADS_ADMIN_TOKEN rather than a session.
	Bearer bool
}

type identityKey struct{}

// IdentityFrom returns the identity Require or RequirePage put in an
// authorized request's context.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// refusal is why a request is not authorized.
type refusal int

const (
	allowed refusal = iota
	noCredentials
	badToken
	badSession
	notAdmin
	badCSRF
	storeDown
)

func (f refusal) status() int {
	switch f {
	case notAdmin, badCSRF:
		return http.StatusForbidden
	case storeDown:
		return http.StatusServiceUnavailable
	}
	return http.StatusUnauthorized
}

func (a *Auth) message(f refusal) string {
	switch f {
	case badToken:
		if a.opts.Token == "" {
			return "bearer tokens are not accepted: MAGICADS_ADMIN_TOKEN is not set"
		}
		return "wrong admin token"
	case badSession:
		return "session expired or unknown: sign in again at /login"
	case notAdmin:
		return "admin role required"
	case badCSRF:
		return "missing or wrong CSRF token"
	case storeDown:
		return msgStoreDown
	}
	return "admin credentials required: sign in at /login or send Authorization: Bearer $MAGICADS_ADMIN_TOKEN"
}

// refusalHeaders sets the headers of a refusal's answer: WWW-Authenticate
// on 401, Retry-After on 503.
func refusalHeaders(w http.ResponseWriter, f refusal) {
	switch f.status() {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="magicads"`)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "5")
	}
}

// safeMethod reports whether a method changes no state (no CSRF token needed).
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// equal compares two secrets in constant time, whatever their lengths.
func equal(a, b string) bool {
	x, y := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(x[:], y[:]) == 1
}

// authorize checks a request's bearer token or session, its role and, for a
// session on a state-changing method, its CSRF token (the header; also the
// form field when formCSRF).
func (a *Auth) authorize(r *http.Request, formCSRF bool) (Identity, refusal) {
	if h := r.Header.Get("Authorization"); h != "" {
		token, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || a.opts.Token == "" {
			return Identity{}, badToken
		}
		sum := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) != 1 {
			return Identity{}, badToken
		}
		return Identity{User: AdminUser, Role: RoleAdmin, Bearer: true}, allowed
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return Identity{}, noCredentials
	}
	s, ok, err := a.store.session(r.Context(), c.Value, a.opts.Now())
	if err != nil {
		a.log.Error("admin session lookup failed", "error", err)
		return Identity{}, storeDown
	}
	if !ok {
		return Identity{}, badSession
	}
	if s.role != RoleAdmin {
		return Identity{}, notAdmin
	}
	if !safeMethod(r.Method) {
		got := r.Header.Get(CSRFHeader)
		if got == "" && formCSRF {
			got = r.PostFormValue(CSRFField)
		}
		if got == "" || !equal(got, s.csrf) {
			return Identity{}, badCSRF
		}
	}
	return Identity{User: s.user, Role: s.role}, allowed
}

// Require guards an API handler: the bearer token, or a live admin session
// (plus the X-CSRF-Token header on state-changing methods). It answers 401
// {"error"} without valid credentials and 403 for a non-admin session or a
// missing or wrong CSRF token.
func (a *Auth) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, f := a.authorize(r, false)
		if f != allowed {
			refusalHeaders(w, f)
			writeError(w, f.status(), a.message(f))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

// RoleService is the identity of requests carrying the service token.
const RoleService = "service"

// RequireService guards a results API handler: the studios' service token
// (MAGICADS_SERVICE_TOKEN; "" accepts none) or, as Require, admin
// credentials. Its 401 names both tokens.
func (a *Auth) RequireService(next http.Handler, serviceToken string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && serviceToken != "" {
			if equal(token, serviceToken) {
				id := Identity{User: RoleService, Role: RoleService, Bearer: true}
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
				return
			}
		}
		id, f := a.authorize(r, false)
		if f != allowed {
			msg := a.message(f)
			switch f {
			case noCredentials:
				msg = "credentials required: send Authorization: Bearer $MAGICADS_SERVICE_TOKEN (the studios) or $MAGICADS_ADMIN_TOKEN, or sign in at /login"
			case badToken:
				msg = "wrong token: the results API takes MAGICADS_SERVICE_TOKEN or MAGICADS_ADMIN_TOKEN"
			}
			refusalHeaders(w, f)
			writeError(w, f.status(), msg)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

// RequirePage guards an HTML page: without a live session (or the bearer
// token) it redirects (303) to /login?next=<this path>; a non-admin session
// or a state-changing request without the CSRF token (header or csrf_token
// form field) gets a plain-text 403.
func (a *Auth) RequirePage(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, f := a.authorize(r, true)
		switch f {
		case allowed:
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
		case noCredentials, badSession:
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		default:
			refusalHeaders(w, f)
			http.Error(w, a.message(f), f.status())
		}
	})
}

// CSRFToken returns the CSRF token of the request's live session, or "" if
// it has none; pages embed it for their scripts and forms.
func (a *Auth) CSRFToken(r *http.Request) string {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return ""
	}
	s, ok, err := a.store.session(r.Context(), c.Value, a.opts.Now())
	if err != nil {
		a.log.Error("admin session lookup failed", "error", err)
		return ""
	}
	if !ok {
		return ""
	}
	return s.csrf
}

// StartSession signs the request's client in as user with role: it ends
// the session the request carried, if any, and sets the session and CSRF
// cookies. /login calls it for the admin user. It fails, setting nothing,
// when the session store (the database) cannot be written.
func (a *Auth) StartSession(w http.ResponseWriter, r *http.Request, user, role string) error {
	if c, err := r.Cookie(SessionCookie); err == nil {
		if err := a.store.deleteSession(r.Context(), c.Value); err != nil {
			return err
		}
	}
	id, csrf, err := a.store.createSession(r.Context(), user, role, a.opts.Now())
	if err != nil {
		return err
	}
	maxAge := int(a.opts.MaxAge / time.Second)
	secure := a.secure(r)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", MaxAge: maxAge, HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode})
	http.SetCookie(w, &http.Cookie{Name: CSRFCookie, Value: csrf, Path: "/", MaxAge: maxAge, Secure: secure, SameSite: http.SameSiteStrictMode})
	return nil
}

// clearCookies expires both cookies in the browser.
func (a *Auth) clearCookies(w http.ResponseWriter, r *http.Request) {
	secure := a.secure(r)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode})
	http.SetCookie(w, &http.Cookie{Name: CSRFCookie, Value: "", Path: "/", MaxAge: -1, Secure: secure, SameSite: http.SameSiteStrictMode})
}

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
