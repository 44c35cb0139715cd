package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts headless Chromium (Debian's, installed by
// scripts/install-test-tools) with the flags this closed network needs.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := os.Getenv("CHROMIUM")
	if exe == "" {
		exe = "/usr/bin/chromium"
	}
	if _, err := os.Stat(exe); err != nil {
		t.Fatalf("Chromium is required (apt-get install chromium; scripts/install-test-tools does it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return ctx
}

// shots saves screenshots where the test log says.
type shots struct {
	t   *testing.T
	dir string
	n   int
}

func newShots(t *testing.T) *shots {
	dir := os.Getenv("MAGICADS_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "magicads-golive-"+time.Now().Format("20060102-150405"))
	}
	os.MkdirAll(dir, 0o755)
	t.Logf("screenshots: %s", dir)
	return &shots{t: t, dir: dir}
}

func (s *shots) take(ctx context.Context, name string) {
	s.n++
	// The console scrolls its page inside .page (the toasts stay above it);
	// for the full-page picture the document scrolls instead, until taken.
	const unshell = `(() => { for (const e of [document.documentElement, document.body, document.querySelector('.page')]) { if (e) { e.style.height = 'auto'; e.style.overflow = 'visible'; } } if (document.body) document.body.style.display = 'block'; return document.documentElement.scrollHeight > 0 })()`
	const reshell = `(() => { for (const e of [document.documentElement, document.body, document.querySelector('.page')]) { if (e) { e.style.height = ''; e.style.overflow = ''; } } if (document.body) document.body.style.display = ''; return true })()`
	_, _ = chromedp.Run(ctx, chromedp.Evaluate[bool](unshell))
	defer chromedp.Run(ctx, chromedp.Evaluate[bool](reshell))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		s.t.Logf("screenshot %s: %v", name, err)
		return
	}
	os.WriteFile(filepath.Join(s.dir, fmt.Sprintf("%02d-%s.png", s.n, name)), png, 0o644)
}

func must(t *testing.T, ctx context.Context, sh *shots, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		sh.take(ctx, "failed-"+strings.ReplaceAll(what, " ", "-"))
		t.Fatalf("%s: %v", what, err)
	}
}

// clickButton clicks the first visible button whose text is label.
func clickButton(label string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		deadline := time.Now().Add(20 * time.Second)
		for {
			// Only once the page's script has run (readyState complete):
			// a click on a button parsed before it is lost.
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
				if (document.readyState !== 'complete') return false;
				const b = [...document.querySelectorAll('button, a')].find(e => e.textContent.trim() === %q && e.offsetParent !== null);
				if (!b) return false; b.click(); return true; })()`, label)))
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no visible button %q", label)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// toast waits for a toast of kind ("ok" or "error") and returns its text.
func toast(t *testing.T, ctx context.Context, sh *shots, kind string) string {
	t.Helper()
	sel := chromedp.CSS(".toast.toast-" + kind + " .toast-text")
	must(t, ctx, sh, "waiting for a "+kind+" toast", chromedp.WaitVisible(sel))
	text, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatal(err)
	}
	sh.take(ctx, "toast-"+kind)
	// Clear it so the next wait sees a fresh one.
	chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { document.querySelectorAll('.toast').forEach(e => e.remove()); return true })()`))
	return text
}

// toastSaying waits for a toast of kind whose text is want (other toasts,
// such as a late one of an earlier step, do not count), then clears the
// toasts. It fails the test with the toasts seen when none says want.
func toastSaying(t *testing.T, ctx context.Context, sh *shots, kind, want string) {
	t.Helper()
	js := fmt.Sprintf(`[...document.querySelectorAll('.toast.toast-%s .toast-text')].some(e => e.textContent.trim() === %q)`, kind, want)
	deadline := time.Now().Add(30 * time.Second)
	for !evalBool(t, ctx, js) {
		if time.Now().After(deadline) {
			seen, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('.toast .toast-text')].map(e => e.textContent.trim()).join(" | ")`))
			sh.take(ctx, "toast-missing")
			t.Fatalf("no %s toast %q; toasts: %q", kind, want, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sh.take(ctx, "toast-"+kind)
	chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { document.querySelectorAll('.toast').forEach(e => e.remove()); return true })()`))
}

// evalBool runs a JS expression returning a bool.
func evalBool(t *testing.T, ctx context.Context, js string) bool {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func waitTrue(t *testing.T, ctx context.Context, sh *shots, what, js string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !evalBool(t, ctx, js) {
		if time.Now().After(deadline) {
			sh.take(ctx, "failed-"+strings.ReplaceAll(what, " ", "-"))
			toasts, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('.toast')].map(e => e.textContent.trim()).join(' | ')`))
			t.Fatalf("timed out waiting for %s (toasts: %q)", what, toasts)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// fill types the R2 settings into the schema-rendered form.
func fill(values map[string]string, checks map[string]bool) chromedp.Action[chromedp.Void] {
	var steps []chromedp.Action[chromedp.Void]
	for k, v := range values {
		steps = append(steps, chromedp.SetValue(chromedp.ID("field-"+k), v))
	}
	for k, on := range checks {
		steps = append(steps, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const e = document.getElementById("field-%s"); e.checked = %v; e.dispatchEvent(new Event("change")); return true })()`, k, on)))
			return err
		}))
	}
	return chromedp.Steps(steps...)
}

// TestGoLiveChecklist runs the seed's go-live checklist, steps 1–8, in a
// real browser, with the troubleshooting rows "R2 doesn't appear in the
// Default Storage list" and "New results still stored locally", and a red
// toast for a wrong secret.
func TestGoLiveChecklist(t *testing.T) {
	s := newStack(t, "extended")
	ctx := browser(t)
	sh := newShots(t)
	base := s.host.URL

	// Sign in; 1. install the plugin from the marketplace card. From here
	// on, the browser console must stay free of errors and CSP violations.
	signInAndInstall(t, ctx, sh, s)
	logs := watchConsole(t, ctx)
	sh.take(ctx, "installed")
	// After the install, Configure is the card's primary button.
	if !evalBool(t, ctx, `(() => { const c = document.getElementById('configure-cloudflare-r2'); return !!c && !c.classList.contains('secondary') && c.offsetParent !== null })()`) {
		t.Error("after the install, Configure is not the card's primary button")
	}
	// The host serves the page's icon.
	if got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch(document.querySelector('link[rel="icon"]').href).then(r => r.status + ' ' + r.headers.get('content-type'))`, chromedp.EvalAwaitPromise)); err != nil || got != "200 image/svg+xml" {
		t.Errorf("favicon: %q %v", got, err)
	}

	// Troubleshooting: R2 doesn't appear in the Default Storage list (not enabled, no credentials).
	must(t, ctx, sh, "general page", chromedp.Navigate(base+"/app/admin/general"), chromedp.WaitVisible(chromedp.ID("default-storage")))
	if evalBool(t, ctx, `[...document.querySelectorAll('#default-storage option')].some(o => o.value === 'cloudflare-r2')`) {
		t.Fatal("R2 is a Default Storage option before it is enabled and configured")
	}
	sh.take(ctx, "r2-not-in-list")

	// 2–3. Bucket, token and public URL (versitygw + the public stand-in); enter the credentials.
	cfg := base + "/app/admin/general/plugins/cloudflare-r2"
	values := map[string]string{
		"access_key_id": s.s3.AccessKey, "secret_access_key": strings.Repeat("0", len(s.s3.SecretKey)),
		"bucket": bucketName, "endpoint": s.s3.Endpoint, "public_url": s.publicURL, "key_prefix": "magicads",
	}
	must(t, ctx, sh, "config page", chromedp.Navigate(cfg), chromedp.WaitVisible(chromedp.ID("field-bucket")))
	// On first setup nothing is stored: the secret's placeholder says so.
	if evalBool(t, ctx, `/stored —|keep/.test(document.getElementById('field-secret_access_key').placeholder)`) {
		t.Error("the first-setup secret placeholder speaks of a stored secret")
	}
	// An r2.dev public URL is warned about as it is typed.
	must(t, ctx, sh, "type an r2.dev public URL", chromedp.SendKeys(chromedp.ID("field-public_url"), "https://pub-0123abcd.r2.dev"))
	waitTrue(t, ctx, sh, "the r2.dev warning", `(() => { const w = document.getElementById('r2dev-public_url'); return !w.hidden && w.textContent.includes('rate-limited') })()`)
	sh.take(ctx, "r2dev-warning")
	must(t, ctx, sh, "fill in the settings", fill(values, map[string]bool{"use_path_style": true, "enabled": false}))

	// A wrong secret: red toast naming bad credentials.
	must(t, ctx, sh, "test with a wrong secret", chromedp.Click(chromedp.ID("test-connection")))
	if msg := toast(t, ctx, sh, "error"); !strings.Contains(msg, "bad credentials") {
		t.Fatalf("wrong secret toast: %q", msg)
	}

	// 4. Enable the provider and Save.
	values["secret_access_key"] = s.s3.SecretKey
	must(t, ctx, sh, "enable and save", fill(map[string]string{"secret_access_key": s.s3.SecretKey}, map[string]bool{"enabled": true}), chromedp.Click(chromedp.ID("save")))
	toast(t, ctx, sh, "ok")

	// 5. Test the connection: green toast. (The secret field is blank after a save: the stored one is kept.)
	must(t, ctx, sh, "test connection", chromedp.Click(chromedp.ID("test-connection")))
	if msg := toast(t, ctx, sh, "ok"); !strings.Contains(msg, "successful") {
		t.Fatalf("green toast: %q", msg)
	}

	// Troubleshooting: New results still stored locally (enabled but not the Default Storage).
	r := generate(t, ctx, sh, base)
	if !strings.Contains(r, "local") {
		t.Fatalf("a result before choosing R2 as default: %q", r)
	}

	// 6. Set Default Storage to Cloudflare R2.
	must(t, ctx, sh, "default storage", chromedp.Navigate(base+"/app/admin/general"), chromedp.WaitVisible(chromedp.ID("default-storage")),
		chromedp.SetValue(chromedp.ID("default-storage"), "cloudflare-r2"), chromedp.Click(chromedp.ID("save-storage")))
	toast(t, ctx, sh, "ok")

	// 7. Generate a result: it is in the bucket and displays from the public URL.
	r = generate(t, ctx, sh, base)
	if !strings.Contains(r, "cloudflare-r2") {
		t.Fatalf("a result after choosing R2: %q", r)
	}
	keys := s.s3.Keys(t, bucketName)
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "magicads/images/") {
		t.Fatalf("bucket after generating: %v", keys)
	}
	waitTrue(t, ctx, sh, "the offloaded image to display from its public URL",
		fmt.Sprintf(`[...document.querySelectorAll('img.result-image')].some(i => i.src.startsWith(%q) && i.complete && i.naturalWidth > 0)`, s.publicURL))
	sh.take(ctx, "displayed-from-bucket")

	// 8. Delete local copy after upload: on. The next result leaves no local file.
	must(t, ctx, sh, "delete local on", chromedp.Navigate(cfg), chromedp.WaitVisible(chromedp.ID("field-bucket")),
		fill(nil, map[string]bool{"delete_local": true}), chromedp.Click(chromedp.ID("save")))
	toast(t, ctx, sh, "ok")
	generate(t, ctx, sh, base)
	keys = s.s3.Keys(t, bucketName)
	if len(keys) != 2 {
		t.Fatalf("bucket after the second result: %v", keys)
	}
	local := filepath.Join(s.dataDir, "results", strings.TrimPrefix(keys[1], "magicads/"))
	if _, err := os.Stat(local); !os.IsNotExist(err) {
		local = filepath.Join(s.dataDir, "results", strings.TrimPrefix(keys[0], "magicads/"))
		if _, err := os.Stat(local); !os.IsNotExist(err) {
			t.Fatalf("delete_local on but both results still have local files")
		}
	}
	// Delete asks first and says what will happen; Cancel keeps the result.
	must(t, ctx, sh, "delete: ask", chromedp.Click(chromedp.CSS("li.result button.result-delete")), chromedp.WaitVisible(chromedp.ID("confirm-dialog")))
	msg, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("confirm-message")))
	if !strings.Contains(msg, "Its object is deleted from Cloudflare R2 Storage") || !strings.Contains(msg, "cannot be undone") {
		t.Errorf("delete confirmation %q", msg)
	}
	sh.take(ctx, "delete-confirm")
	must(t, ctx, sh, "delete: cancel", chromedp.Click(chromedp.ID("confirm-cancel")), chromedp.WaitNotVisible(chromedp.ID("confirm-dialog")))
	time.Sleep(500 * time.Millisecond)
	if n := len(s.s3.Keys(t, bucketName)); n != 2 {
		t.Fatalf("Cancel deleted the result: %d objects left", n)
	}
	must(t, ctx, sh, "delete: confirm", chromedp.Click(chromedp.CSS("li.result button.result-delete")), chromedp.WaitVisible(chromedp.ID("confirm-dialog")),
		chromedp.Click(chromedp.ID("confirm-ok")))
	toastSaying(t, ctx, sh, "ok", "Result deleted")
	waitTrue(t, ctx, sh, "the deleted result's object to go", fmt.Sprintf(`document.querySelectorAll('li.result').length === %d`, 2))
	if n := len(s.s3.Keys(t, bucketName)); n != 1 {
		t.Errorf("after deleting one of two offloaded results the bucket has %d objects", n)
	}
	noConsoleErrors(t, logs, "during the go-live checklist")

	// The stored secret never reaches a page or a log line.
	html, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		t.Fatal(err)
	}
	must(t, ctx, sh, "config page again", chromedp.Navigate(cfg), chromedp.WaitVisible(chromedp.ID("field-bucket")))
	cfgHTML, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	for where, text := range map[string]string{"results page": html, "config page": cfgHTML, "host log": s.logs.String()} {
		if strings.Contains(text, s.s3.SecretKey) {
			t.Errorf("the secret appears in the %s", where)
		}
	}
	sh.take(ctx, "done")
}

// signInAndInstall signs in as admin on the plugins page and installs the
// plugin from its marketplace card.
func signInAndInstall(t *testing.T, ctx context.Context, sh *shots, s *stack) {
	t.Helper()
	must(t, ctx, sh, "login",
		chromedp.Navigate(s.host.URL+"/app/admin/general/plugins"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="password"]`)),
		chromedp.SetValue(chromedp.CSS(`input[name="username"]`), "admin"),
		chromedp.SetValue(chromedp.CSS(`input[name="password"]`), s.password),
		chromedp.Submit(chromedp.CSS(`input[name="password"]`)),
	)
	must(t, ctx, sh, "install", clickButton("Install"))
	waitTrue(t, ctx, sh, "the install to finish", `[...document.querySelectorAll('button')].some(b => b.textContent.trim() === 'Uninstall')`)
}

// generate makes a demo result on the results page and returns the text
// of the newest result's row (which says where it lives).
func generate(t *testing.T, ctx context.Context, sh *shots, base string) string {
	t.Helper()
	before := 0
	must(t, ctx, sh, "results page", chromedp.Navigate(base+"/app/results"), chromedp.WaitVisible(chromedp.ID("generate")))
	time.Sleep(300 * time.Millisecond) // the list loads after the page
	b, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('img.result-image').length`))
	before = b
	must(t, ctx, sh, "generate", chromedp.Click(chromedp.ID("generate")))
	waitTrue(t, ctx, sh, "the new result to be listed", fmt.Sprintf(`document.querySelectorAll('img.result-image').length > %d`, before))
	// The newest result's card: where it lives (its storage id and the
	// name the card shows) and what it says.
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => { const li = document.querySelector('li.result'); return li ? li.dataset.storage + ' ' + li.textContent : '' })()`))
	if err != nil {
		t.Fatal(err)
	}
	return text
}
