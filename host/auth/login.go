package auth

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// safeNext returns next if it is a path on this site ("/…", not "//…", no
// backslash or control character, no scheme or host), else DefaultNext.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsRune(next, '\\') {
		return DefaultNext
	}
	for _, c := range next {
		if c < 0x20 || c == 0x7f {
			return DefaultNext
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return DefaultNext
	}
	return next
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// pageHeaders keep the login page out of caches and frames.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
}

type loginView struct {
	Error string
	Next  string
}

func (a *Auth) renderLogin(w http.ResponseWriter, status int, v loginView) {
	pageHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := a.page.Execute(w, v); err != nil {
		a.log.Error("rendering the sign-in page", "error", err)
	}
}

// loginPage is GET /login: the form, or straight to next with a live admin session.
func (a *Auth) loginPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	next := safeNext(q.Get("next"))
	if c, err := r.Cookie(SessionCookie); err == nil {
		if s, ok, _ := a.store.session(r.Context(), c.Value, a.opts.Now()); ok && s.role == RoleAdmin {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
	}
	v := loginView{Next: next}
	if q.Get("error") != "" {
		v.Error = "Wrong username or password."
	}
	a.renderLogin(w, http.StatusOK, v)
}

// verify checks a password, bounding how many slow checks run at once.
func (a *Auth) verify(ctx context.Context, password string) bool {
	p := a.opts.Password
	if p.slow() {
		select {
		case a.slow <- struct{}{}:
			defer func() { <-a.slow }()
		case <-ctx.Done():
			return false
		}
	}
	return p.Verify(password)
}

// login is POST /login.
func (a *Auth) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		if wantsJSON(r) {
			writeError(w, http.StatusBadRequest, "the sign-in form could not be read")
		} else {
			http.Error(w, "the sign-in form could not be read", http.StatusBadRequest)
		}
		return
	}
	user, password := r.PostForm.Get("username"), r.PostForm.Get("password")
	next := safeNext(r.PostForm.Get("next"))
	ip := a.ClientIP(r)
	knownUser := subtle.ConstantTimeCompare([]byte(user), []byte(AdminUser)) == 1
	userKey := "user:?" // every unknown name shares one bucket, so the maps stay small
	if knownUser {
		userKey = "user:" + AdminUser
	}
	addrKey := "ip:" + limitKey(ip)
	pairKey := addrKey + "|" + userKey
	retry, ok, err := a.store.take(r.Context(), a.opts.Now(), check{addrKey, a.opts.AddressLimit}, check{pairKey, a.opts.LoginLimit})
	if err != nil {
		a.storeDown(w, r, next, err)
		return
	}
	if !ok {
		secs := int((retry + time.Second - 1) / time.Second)
		a.log.Warn("admin sign-in rate limited", "ip", ip, "known_user", knownUser, "retry_after_s", secs)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		msg := fmt.Sprintf("Too many failed sign-ins: try again in %d seconds.", secs)
		if wantsJSON(r) {
			writeError(w, http.StatusTooManyRequests, msg)
		} else {
			a.renderLogin(w, http.StatusTooManyRequests, loginView{Error: msg, Next: next})
		}
		return
	}
	// Failures for this name from anywhere slow it down; they never refuse it.
	delay, err := a.store.attempt(r.Context(), a.opts.Now(), userKey)
	if err != nil {
		a.storeDown(w, r, next, err)
		return
	}
	if delay > 0 {
		if err := a.wait(r.Context(), delay); err != nil {
			return // the client went away
		}
	}
	ok = a.verify(r.Context(), password) // always run, so timing does not tell whether the name was right
	if !ok || !knownUser {
		a.log.Warn("admin sign-in failed", "ip", ip, "known_user", knownUser, "delay_ms", delay.Milliseconds())
		if wantsJSON(r) {
			writeError(w, http.StatusUnauthorized, "wrong username or password")
			return
		}
		loc := "/login?error=1"
		if next != DefaultNext {
			loc += "&next=" + url.QueryEscape(next)
		}
		http.Redirect(w, r, loc, http.StatusSeeOther)
		return
	}
	if err := a.store.success(r.Context(), a.opts.Now(), userKey); err != nil {
		a.storeDown(w, r, next, err)
		return
	}
	if err := a.store.reset(r.Context(), addrKey, pairKey); err != nil {
		a.storeDown(w, r, next, err)
		return
	}
	if err := a.StartSession(w, r, AdminUser, RoleAdmin); err != nil {
		a.storeDown(w, r, next, err)
		return
	}
	a.log.Info("admin signed in", "ip", ip)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// storeDown answers 503 when the session store failed; the cause goes
// to the log only.
func (a *Auth) storeDown(w http.ResponseWriter, r *http.Request, next string, err error) {
	a.log.Error("admin sign-in: the session store failed", "error", err)
	w.Header().Set("Retry-After", "5")
	if wantsJSON(r) || r.URL.Path != "/login" {
		writeError(w, http.StatusServiceUnavailable, msgStoreDown)
		return
	}
	a.renderLogin(w, http.StatusServiceUnavailable, loginView{Error: msgStoreDown, Next: next})
}

// logout is POST /logout: it ends the session (CSRF token required), clears
// the cookies and redirects to /login (204 for JSON clients).
func (a *Auth) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		s, ok, err := a.store.session(r.Context(), c.Value, a.opts.Now())
		if err != nil {
			a.storeDown(w, r, "", err)
			return
		}
		if ok {
			got := r.Header.Get(CSRFHeader)
			if got == "" {
				got = r.PostFormValue(CSRFField)
			}
			if got == "" || !equal(got, s.csrf) {
				if wantsJSON(r) {
					writeError(w, http.StatusForbidden, a.message(badCSRF))
				} else {
					http.Error(w, a.message(badCSRF), http.StatusForbidden)
				}
				return
			}
			if err := a.store.deleteSession(r.Context(), c.Value); err != nil {
				a.storeDown(w, r, "", err)
				return
			}
			a.log.Info("admin signed out", "ip", a.ClientIP(r))
		}
	}
	a.clearCookies(w, r)
	if wantsJSON(r) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

const loginHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · MagicAds</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center;color:#1f2328}
main{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:2rem;width:min(22rem,90vw)}
h1{font-size:1.25rem;margin:0 0 1.25rem}
label{display:block;margin:0 0 1rem;font-size:.9rem}
input{display:block;box-sizing:border-box;width:100%;margin-top:.35rem;padding:.5rem;border:1px solid #d0d7de;border-radius:6px;font-size:1rem}
button{width:100%;padding:.6rem;border:0;border-radius:6px;background:#1f6feb;color:#fff;font-size:1rem;cursor:pointer}
.error{background:#ffebe9;border:1px solid #ff8182;border-radius:6px;padding:.5rem .75rem;margin:0 0 1rem}
</style>
</head>
<body>
<main>
<h1>MagicAds admin</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<label>Username<input name="username" value="admin" autocomplete="username" required></label>
<label>Password<input type="password" name="password" autocomplete="current-password" required autofocus></label>
<input type="hidden" name="next" value="{{.Next}}">
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
`
