package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	r2storage "github.com/magicads/r2storage"
	"github.com/magicads/r2storage/host/web"
)

// consoleLog collects what the page writes to the browser console.
type consoleLog struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

// watchConsole collects the console messages of the browser's tab from now
// until the test ends.
func watchConsole(t *testing.T, ctx context.Context) *consoleLog {
	t.Helper()
	l := &consoleLog{}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			l.mu.Lock()
			l.msgs = append(l.msgs, m)
			l.mu.Unlock()
		}
	}()
	return l
}

// errors returns the errors, exceptions and security messages (a CSP
// violation is one) logged so far, but for the failed API calls the page
// handles itself.
func (l *consoleLog) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.msgs {
		if m.Source == "network" && strings.Contains(m.URL, "/api/") {
			continue // an API answer the page handles (a 422 shown under its field)
		}
		if m.Type == chromedp.ConsoleError || m.IsException() || m.Source == "security" ||
			strings.Contains(m.Text, "Content Security Policy") || strings.Contains(m.Text, "Content-Security-Policy") {
			out = append(out, fmt.Sprintf("%s [%s] %s", m.Type, m.Source, m.Text))
		}
	}
	return out
}

// noConsoleErrors fails when the page logged an error or a CSP violation.
func noConsoleErrors(t *testing.T, l *consoleLog, when string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // let the last events arrive
	if errs := l.errors(); len(errs) > 0 {
		t.Errorf("browser console errors %s:\n  %s", when, strings.Join(errs, "\n  "))
	}
}

// toastsCoverNothing fails when the toast covers a visible control.
func toastsCoverNothing(t *testing.T, ctx context.Context, sh *shots, what string) {
	t.Helper()
	// A control's visible part is its box clipped by every scrolling
	// ancestor and the window; the toast must not overlap it.
	covered, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
		const toasts = [...document.querySelectorAll('#toasts .toast')].map(e => e.getBoundingClientRect());
		if (toasts.length === 0) return 'no toast';
		const clip = (r, c) => ({left: Math.max(r.left, c.left), top: Math.max(r.top, c.top), right: Math.min(r.right, c.right), bottom: Math.min(r.bottom, c.bottom)});
		const hit = [];
		for (const el of document.querySelectorAll('button, a, input, select, textarea, label')) {
			if (el.closest('#toasts') || el.offsetParent === null) continue;
			let r = el.getBoundingClientRect();
			for (let p = el.parentElement; p; p = p.parentElement) {
				const o = getComputedStyle(p).overflowY;
				if (o === 'auto' || o === 'scroll' || o === 'hidden') r = clip(r, p.getBoundingClientRect());
			}
			r = clip(r, {left: 0, top: 0, right: innerWidth, bottom: innerHeight});
			if (r.right <= r.left || r.bottom <= r.top) continue;
			for (const t of toasts) {
				if (r.left < t.right && r.right > t.left && r.top < t.bottom && r.bottom > t.top) hit.push(el.id || el.textContent.trim().slice(0, 30));
			}
		}
		return hit.join(', ');
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if covered == "no toast" {
		t.Errorf("%s: no toast to check", what)
		return
	}
	if covered != "" {
		sh.take(ctx, "toast-covers-"+strings.ReplaceAll(what, " ", "-"))
		t.Errorf("%s: the toast covers %s", what, covered)
	}
}

// toastGoesAway waits for the toasts to dismiss themselves.
func toastGoesAway(t *testing.T, ctx context.Context, sh *shots, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for evalBool(t, ctx, `document.querySelectorAll('#toasts .toast').length > 0`) {
		if time.Now().After(deadline) {
			sh.take(ctx, "failed-toast-stays")
			t.Fatalf("the toast did not dismiss itself within %s", within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readToast waits for a toast of kind ("ok" or "error") and returns its
// text, leaving it in place.
func readToast(t *testing.T, ctx context.Context, sh *shots, kind string) string {
	t.Helper()
	sel := chromedp.CSS(".toast.toast-" + kind + " .toast-text")
	must(t, ctx, sh, "waiting for a "+kind+" toast", chromedp.WaitVisible(sel))
	text, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// fakeConsoleAPI is the host's JSON API as the console sees it, with a
// failing Default Storage, for the console's browser test.
type fakeConsoleAPI struct {
	t      *testing.T
	schema json.RawMessage

	mu      sync.Mutex
	results []map[string]any
	failed  int
	deleted []string
	retried []string
}

func (f *fakeConsoleAPI) storage() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return map[string]any{
		"default": "cloudflare-r2",
		"options": []map[string]any{
			{"id": "local", "name": "Local server (this machine)"},
			{"id": "cloudflare-r2", "name": "Cloudflare R2 Storage", "status": "failing", "last_error": "upload: bad credentials (403 SignatureDoesNotMatch)",
				"last_error_at": "2026-11-30T07:00:00Z", "pending": 1, "failed": f.failed},
		},
		"unavailable": []map[string]any{{"id": "wasabi", "name": "Wasabi", "reason": "not enabled", "fix": "Turn on Enable and Save.", "fix_url": "/app/admin/general/plugins/wasabi"}},
		"problem": map[string]any{"provider": "cloudflare-r2", "name": "Cloudflare R2 Storage", "status": "failing",
			"cause": "uploads fail: bad credentials (403 SignatureDoesNotMatch)", "fix": "re-enter the Secret Access Key, then Test connection.",
			"message": "Cloudflare R2 Storage is failing: new results stay on this server", "fix_url": "/app/admin/general/plugins/cloudflare-r2"},
	}
}

func (f *fakeConsoleAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	switch p := r.URL.Path; {
	case r.Method == "GET" && p == "/api/v1/admin/storage":
		reply(200, f.storage())
	case r.Method == "GET" && p == "/api/v1/admin/plugins":
		reply(200, map[string]any{"plugins": []map[string]any{
			{"id": "cloudflare-r2", "name": "Cloudflare R2 Storage", "description": "Offload results to R2.", "version": "1.0.0", "installed_version": "1.0.0",
				"state": "installed", "cta": "uninstall", "price": "29.00 USD", "purchased": true, "configure_url": "/app/admin/general/plugins/cloudflare-r2"},
			{"id": "wasabi", "name": "Wasabi", "version": "1.0.0", "installed_version": "1.0.0", "state": "installed", "cta": "uninstall"},
		}})
	case r.Method == "GET" && p == "/api/v1/admin/plugins/cloudflare-r2/settings":
		reply(200, map[string]any{"schema": f.schema, "values": map[string]any{"enabled": true, "access_key_id": "AKIA", "bucket": "media",
			"account_id": "0123456789abcdef0123456789abcdef", "public_url": "https://media.example.com"}, "secrets_set": []string{"secret_access_key"}})
	case r.Method == "PUT" && p == "/api/v1/admin/plugins/cloudflare-r2/settings":
		reply(422, map[string]any{"error": "the settings are not valid: bucket must be 3–63 lowercase letters",
			"fields": map[string]string{"bucket": "must be 3–63 lowercase letters, digits or hyphens"}})
	case r.Method == "POST" && p == "/api/v1/admin/plugins/cloudflare-r2/test":
		reply(200, map[string]any{"ok": false, "step": "upload", "saved": true, "message": "Connection failed at upload: bad credentials (403 SignatureDoesNotMatch)"})
	case r.Method == "POST" && p == "/api/v1/admin/storage/cloudflare-r2/retry":
		f.mu.Lock()
		n := f.failed
		f.failed = 0
		f.retried = append(f.retried, "cloudflare-r2")
		f.mu.Unlock()
		reply(200, map[string]any{"retried": n})
	case r.Method == "GET" && p == "/api/v1/results":
		f.mu.Lock()
		list := append([]map[string]any(nil), f.results...)
		f.mu.Unlock()
		reply(200, map[string]any{"results": list})
	case r.Method == "DELETE" && strings.HasPrefix(p, "/api/v1/results/"):
		id := strings.TrimPrefix(p, "/api/v1/results/")
		f.mu.Lock()
		f.deleted = append(f.deleted, id)
		for i, res := range f.results {
			if res["id"] == id {
				f.results = append(f.results[:i], f.results[i+1:]...)
				break
			}
		}
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		reply(404, map[string]string{"error": "no such API path " + r.Method + " " + p})
	}
}

// pngPixel is a 1×1 PNG the fake results display.
const pngPixel = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82"

// TestConsoleShowsStorageHealth walks the console pages in Chromium with a
// failing Default Storage (canned API answers, so it needs no plugin): the
// banner on every page, the card and Default Storage texts, Retry, the
// r2.dev warning as it is typed, 422 messages under their fields, the Test
// toast saying the settings were saved, toasts that dismiss themselves and
// cover no control, the Delete confirmation saying what will happen, the
// favicon, and no console error or CSP violation, including after a page
// re-renders in place.
func TestConsoleShowsStorageHealth(t *testing.T) {
	schema, err := r2storage.SettingsSchema()
	if err != nil {
		t.Fatal(err)
	}
	api := &fakeConsoleAPI{t: t, schema: schema, failed: 3, results: []map[string]any{
		{"id": "gone", "path": "images/demo/gone.png", "storage": "gcs", "url": "/img/gone.png", "bucket": "old-bucket", "local_present": false},
		{"id": "waiting", "path": "images/demo/waiting.png", "storage": "local", "url": "/img/waiting.png", "local_present": true,
			"upload": map[string]any{"state": "retrying", "provider": "cloudflare-r2", "error": "bad credentials (403)", "attempts": 2, "next_attempt_at": "2026-11-30T07:05:00Z"}},
	}}
	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	mux.Handle("/app/", web.New(web.Options{API: api}))
	mux.HandleFunc("GET /img/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write([]byte(pngPixel))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	base := srv.URL

	ctx := browser(t)
	sh := newShots(t)
	logs := watchConsole(t, ctx)

	// The banner on every page, naming the cause and the fix with a link.
	for _, path := range []string{"/app/admin/general", "/app/admin/general/plugins", "/app/admin/general/plugins/cloudflare-r2", "/app/results"} {
		must(t, ctx, sh, "open "+path, chromedp.Navigate(base+path), chromedp.WaitVisible(chromedp.ID("page-title")))
		if !evalBool(t, ctx, `!!document.getElementById('storage-problem')`) {
			sh.take(ctx, "failed-no-banner")
			t.Fatalf("%s: no storage problem banner", path)
		}
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("storage-problem")))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Cloudflare R2 Storage is failing", "Cause: Uploads fail: bad credentials", "Fix: Re-enter the Secret Access Key"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: banner %q does not say %q", path, text, want)
			}
		}
		if !evalBool(t, ctx, `document.getElementById('storage-problem-link').getAttribute('href') === '/app/admin/general/plugins/cloudflare-r2'`) {
			t.Errorf("%s: the banner's fix link", path)
		}
	}
	sh.take(ctx, "console-banner-results")

	// The favicon: linked, served by the host, loaded.
	if !evalBool(t, ctx, `document.querySelector('link[rel="icon"]').href === location.origin + '/app/favicon.svg'`) {
		t.Error("the page links no host icon")
	}
	if got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch('/app/favicon.svg').then(r => r.status + ' ' + r.headers.get('content-type'))`, chromedp.EvalAwaitPromise)); err != nil || got != "200 image/svg+xml" {
		t.Errorf("favicon: %q %v", got, err)
	}

	// Plugins: the failing provider's card says so; Configure is primary; Purchased.
	must(t, ctx, sh, "plugins", chromedp.Navigate(base+"/app/admin/general/plugins"), chromedp.WaitVisible(chromedp.ID("card-health-cloudflare-r2")))
	card, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("plugin-cloudflare-r2")))
	for _, want := range []string{"Failing", "Uploads fail: bad credentials", "Purchased", "Configure"} {
		if !strings.Contains(card, want) {
			t.Errorf("R2 card %q does not say %q", card, want)
		}
	}
	if !evalBool(t, ctx, `(() => { const c = document.getElementById('configure-cloudflare-r2'); return c.classList.contains('button') && !c.classList.contains('secondary') })()`) {
		t.Error("Configure is not the primary button")
	}
	sh.take(ctx, "console-cards")

	// Default Storage: status, counts, last error, Retry; why Wasabi is not an option.
	must(t, ctx, sh, "default storage", chromedp.Navigate(base+"/app/admin/general"), chromedp.WaitVisible(chromedp.ID("health-cloudflare-r2")))
	row, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("health-cloudflare-r2")))
	for _, want := range []string{"Cloudflare R2 Storage", "Failing", "3", "Upload: bad credentials"} {
		if !strings.Contains(row, want) {
			t.Errorf("health row %q does not say %q", row, want)
		}
	}
	if u, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("unavailable-wasabi"))); !strings.Contains(u, "Wasabi: Not enabled") {
		t.Errorf("unavailable Wasabi: %q", u)
	}
	sh.take(ctx, "console-default-storage")
	must(t, ctx, sh, "retry", chromedp.Click(chromedp.ID("retry-cloudflare-r2")))
	if msg := readToast(t, ctx, sh, "ok"); msg != "3 failed uploads to Cloudflare R2 Storage are queued again." {
		t.Errorf("retry toast %q", msg)
	}
	waitTrue(t, ctx, sh, "the Retry button to go (no failed uploads left)", `document.getElementById('retry-cloudflare-r2') === null`)
	toastsCoverNothing(t, ctx, sh, "retry")
	sh.take(ctx, "console-retried")
	toastGoesAway(t, ctx, sh, 10*time.Second)
	noConsoleErrors(t, logs, "after Default Storage re-rendered in place")

	// Config: the r2.dev warning follows what is typed; 422 under the field;
	// the Test toast says the settings were saved.
	cfg := base + "/app/admin/general/plugins/cloudflare-r2"
	must(t, ctx, sh, "config", chromedp.Navigate(cfg), chromedp.WaitVisible(chromedp.ID("field-public_url")))
	if evalBool(t, ctx, `!document.getElementById('r2dev-public_url').hidden`) {
		t.Error("the r2.dev warning shows for a custom domain")
	}
	// (Blurred before the screenshot: a full-page screenshot taken while an
	// input has the focus makes the next click land after a scroll jump.)
	must(t, ctx, sh, "type an r2.dev URL", chromedp.Clear(chromedp.ID("field-public_url")),
		chromedp.SendKeys(chromedp.ID("field-public_url"), "https://pub-0123abcd.r2.dev"), chromedp.Blur(chromedp.ID("field-public_url")))
	waitTrue(t, ctx, sh, "the r2.dev warning", `!document.getElementById('r2dev-public_url').hidden`)
	if w, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("r2dev-public_url"))); !strings.Contains(w, "rate-limited") || !strings.Contains(w, "custom domain") {
		t.Errorf("r2.dev warning %q", w)
	}
	sh.take(ctx, "console-r2dev-warning")
	must(t, ctx, sh, "save", chromedp.Click(chromedp.ID("save")))
	if msg := readToast(t, ctx, sh, "error"); !strings.HasPrefix(msg, "The settings are not valid") {
		t.Errorf("422 toast %q", msg)
	}
	waitTrue(t, ctx, sh, "the bucket's error under its field", `!document.getElementById('error-bucket').hidden && document.getElementById('error-bucket').textContent.includes('lowercase')`)
	toastsCoverNothing(t, ctx, sh, "save")
	sh.take(ctx, "console-422")
	must(t, ctx, sh, "test", chromedp.Click(chromedp.ID("test-connection")))
	if msg := readToast(t, ctx, sh, "error"); !strings.Contains(msg, "bad credentials") || !strings.Contains(msg, "settings were saved") {
		t.Errorf("test toast %q does not say the settings were saved", msg)
	}
	toastsCoverNothing(t, ctx, sh, "test connection")
	sh.take(ctx, "console-test-saved")

	// Results: where each result lives and what happens on Delete.
	must(t, ctx, sh, "results", chromedp.Navigate(base+"/app/results"), chromedp.WaitVisible(chromedp.ID("result-waiting")))
	waiting, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("result-waiting")))
	for _, want := range []string{"The upload to Cloudflare R2 Storage failed (attempt 2): bad credentials (403). It will be retried at", "served from this server meanwhile"} {
		if !strings.Contains(waiting, want) {
			t.Errorf("retrying result %q does not say %q", waiting, want)
		}
	}
	must(t, ctx, sh, "delete: ask", chromedp.Click(chromedp.ID("delete-gone")), chromedp.WaitVisible(chromedp.ID("confirm-dialog")))
	msg, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("confirm-message")))
	if !strings.Contains(msg, "queued: the provider is not installed") || !strings.Contains(msg, "bucket old-bucket") {
		t.Errorf("delete confirmation %q", msg)
	}
	sh.take(ctx, "console-delete-confirm")
	must(t, ctx, sh, "delete: cancel", chromedp.Click(chromedp.ID("confirm-cancel")), chromedp.WaitNotVisible(chromedp.ID("confirm-dialog")))
	time.Sleep(300 * time.Millisecond)
	api.mu.Lock()
	n := len(api.deleted)
	api.mu.Unlock()
	if n != 0 {
		t.Fatal("Cancel deleted the result")
	}
	must(t, ctx, sh, "delete: confirm", chromedp.Click(chromedp.ID("delete-gone")), chromedp.WaitVisible(chromedp.ID("confirm-dialog")),
		chromedp.Click(chromedp.ID("confirm-ok")))
	if msg := readToast(t, ctx, sh, "ok"); msg != "Result deleted" {
		t.Errorf("delete toast %q", msg)
	}
	waitTrue(t, ctx, sh, "the deleted result to leave the list", `document.getElementById('result-gone') === null`)
	toastsCoverNothing(t, ctx, sh, "delete")
	sh.take(ctx, "console-deleted")
	toastGoesAway(t, ctx, sh, 10*time.Second)
	noConsoleErrors(t, logs, "after the results re-rendered in place")
}
