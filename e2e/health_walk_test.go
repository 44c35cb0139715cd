package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// bannerShown reloads path until the storage problem banner is shown (want
// true) or gone (want false), and returns its text.
func bannerShown(t *testing.T, ctx context.Context, sh *shots, url string, want bool, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		must(t, ctx, sh, "open "+url, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.ID("page-title")))
		text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => { const b = document.getElementById('storage-problem'); return b ? b.textContent.replace(/\s+/g, ' ').trim() : '' })()`))
		if err != nil {
			t.Fatal(err)
		}
		if (text != "") == want {
			return text
		}
		if time.Now().After(deadline) {
			sh.take(ctx, "failed-banner")
			if want {
				t.Fatalf("%s: no storage problem banner within %s", url, within)
			}
			t.Fatalf("%s: the storage problem banner stays after the fix: %q", url, text)
		}
		time.Sleep(2 * time.Second)
	}
}

// TestStorageProblemBannerWalk: R2 is the Default Storage, then its secret
// is replaced by a wrong one. A new result cannot be offloaded: every admin
// page shows the banner naming the cause and the fix, the R2 card shows it,
// and the result's card says its upload failed. Entering the right secret
// again (Test connection saves it) and retrying makes the banner go and the
// result land in R2. Moving the public URL then re-points the older images,
// which still display.
func TestStorageProblemBannerWalk(t *testing.T) {
	s := newStack(t, "extended")
	ctx := browser(t)
	sh := newShots(t)
	base := s.host.URL
	signInAndInstall(t, ctx, sh, s)
	logs := watchConsole(t, ctx)

	s.useR2(t, nil)
	storageURL := base + "/app/admin/general"
	bannerShown(t, ctx, sh, storageURL, false, 5*time.Second)

	// A wrong secret, saved (Save does not probe).
	cfg := base + "/app/admin/general/plugins/cloudflare-r2"
	must(t, ctx, sh, "wrong secret", chromedp.Navigate(cfg), chromedp.WaitVisible(chromedp.ID("field-secret_access_key")),
		chromedp.SendKeys(chromedp.ID("field-secret_access_key"), strings.Repeat("0", len(s.s3.SecretKey))), chromedp.Click(chromedp.ID("save")))
	toast(t, ctx, sh, "ok")

	// A new result cannot be offloaded.
	r := generate(t, ctx, sh, base)
	if !strings.HasPrefix(r, "local") {
		t.Fatalf("a result with a wrong secret: %q", r)
	}

	// The banner, on every admin page and the results page, names the cause and the fix.
	text := bannerShown(t, ctx, sh, storageURL, true, 90*time.Second)
	sh.take(ctx, "walk-banner-default-storage")
	if !strings.Contains(text, "Cause:") || !strings.Contains(text, "Fix:") {
		t.Errorf("banner %q names no cause or fix", text)
	}
	for _, path := range []string{"/app/admin/general/plugins", "/app/admin/general/plugins/cloudflare-r2", "/app/results"} {
		if got := bannerShown(t, ctx, sh, base+path, true, 5*time.Second); got != text {
			t.Errorf("%s: banner %q, Default Storage's %q", path, got, text)
		}
		if !evalBool(t, ctx, `!!document.getElementById('storage-problem-link')`) {
			t.Errorf("%s: the banner has no link to the fix", path)
		}
	}
	if !evalBool(t, ctx, `[...document.querySelectorAll('li.result .result-upload')].some(p => /upload to Cloudflare R2 Storage failed/.test(p.textContent))`) {
		t.Error("no result card says its upload failed")
	}
	sh.take(ctx, "walk-banner-results")
	must(t, ctx, sh, "plugins", chromedp.Navigate(base+"/app/admin/general/plugins"), chromedp.WaitVisible(chromedp.ID("card-health-cloudflare-r2")))
	sh.take(ctx, "walk-card")

	// The fix: the right secret, tested (the test saves it).
	must(t, ctx, sh, "right secret", chromedp.Navigate(cfg), chromedp.WaitVisible(chromedp.ID("field-secret_access_key")),
		chromedp.SendKeys(chromedp.ID("field-secret_access_key"), s.s3.SecretKey), chromedp.Click(chromedp.ID("test-connection")))
	if msg := toast(t, ctx, sh, "ok"); !strings.Contains(msg, "successful") {
		t.Fatalf("test with the right secret: %q", msg)
	}
	// Retry what failed, if anything waits for it.
	must(t, ctx, sh, "default storage", chromedp.Navigate(storageURL), chromedp.WaitVisible(chromedp.ID("default-storage")))
	if evalBool(t, ctx, `!!document.querySelector('button[data-action="retry"]')`) {
		must(t, ctx, sh, "retry", chromedp.Click(chromedp.CSS(`button[data-action="retry"]`)))
		toast(t, ctx, sh, "ok")
	}
	bannerShown(t, ctx, sh, storageURL, false, 90*time.Second)
	for _, path := range []string{"/app/admin/general/plugins", "/app/results"} {
		bannerShown(t, ctx, sh, base+path, false, 5*time.Second)
	}
	sh.take(ctx, "walk-fixed")
	waitKeys := time.Now().Add(60 * time.Second)
	for len(s.s3.Keys(t, bucketName)) == 0 {
		if time.Now().After(waitKeys) {
			t.Fatal("the result that failed was never offloaded after the fix")
		}
		time.Sleep(time.Second)
	}
	// The result that failed now lives in R2 and displays from the public URL.
	must(t, ctx, sh, "results page", chromedp.Navigate(base+"/app/results"), chromedp.WaitVisible(chromedp.ID("generate")))
	waitTrue(t, ctx, sh, "the result that failed to be in R2 and display from its public URL",
		fmt.Sprintf(`(() => { const li = document.querySelector('li.result'); const i = li && li.querySelector('img.result-image');
			return !!i && li.dataset.storage === 'cloudflare-r2' && i.src.startsWith(%q) && i.complete && i.naturalWidth > 0 })()`, s.publicURL+"/"))

	// Moving the public URL (to another address of the same bucket front,
	// as an r2.dev address moves to a custom domain) re-points the older
	// images, which still display.
	movedURL := strings.Replace(s.publicURL, "127.0.0.1", "localhost", 1)
	if movedURL == s.publicURL {
		t.Fatalf("the public URL stand-in %s is not on 127.0.0.1; the walk cannot move it", s.publicURL)
	}
	must(t, ctx, sh, "move the public URL", chromedp.Navigate(cfg), chromedp.WaitVisible(chromedp.ID("field-public_url")),
		fill(map[string]string{"public_url": movedURL}, nil), chromedp.Click(chromedp.ID("save")))
	toast(t, ctx, sh, "ok")
	must(t, ctx, sh, "results page", chromedp.Navigate(base+"/app/results"), chromedp.WaitVisible(chromedp.ID("generate")))
	waitTrue(t, ctx, sh, "the older images to display from the moved public URL",
		fmt.Sprintf(`(() => { const imgs = [...document.querySelectorAll('li.result[data-storage="cloudflare-r2"] img.result-image')];
			return imgs.length > 0 && imgs.every(i => i.src.startsWith(%q) && i.complete && i.naturalWidth > 0) })()`, movedURL+"/"))
	sh.take(ctx, "walk-moved-public-url")
	noConsoleErrors(t, logs, fmt.Sprintf("during the walk (%s)", t.Name()))
}
