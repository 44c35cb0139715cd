package e2e_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestStorageOverviewOffloadWalk: three results made while Default Storage
// is local stay local when R2 becomes the Default Storage. On the Storage
// overview (linked from Default Storage), Offload existing results shows
// its dry run (how many, bytes, estimated time), then Start runs it with a
// progress bar that reaches 100 %; the overview then counts no local-only
// result and the three only in R2 (delete local copy is on), the local
// disk reclaimed, and the bucket holds them. The Uninstall confirmation
// then says they live only in R2 and offers Bring back to local first,
// which leads to the overview's Bring back. Bring back to
// local then runs the same way and the overview counts them local only
// again. The console
// logs no error and no CSP violation.
func TestStorageOverviewOffloadWalk(t *testing.T) {
	s := newStack(t, "extended")
	ctx := browser(t)
	sh := newShots(t)
	base := s.host.URL
	signInAndInstall(t, ctx, sh, s)
	logs := watchConsole(t, ctx)

	const made = 3
	for i := 0; i < made; i++ {
		if r := generate(t, ctx, sh, base); !strings.HasPrefix(r, "local") {
			t.Fatalf("a result made while Default Storage is local: %q", r)
		}
	}

	s.useR2(t, map[string]any{"delete_local": true})

	// Default Storage links the overview; choosing R2 moved nothing.
	must(t, ctx, sh, "default storage", chromedp.Navigate(base+"/app/admin/general"), chromedp.WaitVisible(chromedp.ID("overview-link")),
		chromedp.Click(chromedp.ID("overview-link")), chromedp.WaitVisible(chromedp.ID("location-chart")))
	if got := evalString(t, ctx, `document.getElementById('count-local-only').dataset.results`); got != fmt.Sprint(made) {
		t.Fatalf("local-only results before the offload: %s, want %d (choosing a Default Storage must move nothing)", got, made)
	}
	if n := len(s.s3.Keys(t, bucketName)); n != 0 {
		t.Fatalf("the bucket holds %d objects before the offload", n)
	}
	sh.take(ctx, "overview-before")

	// The dry run first: how many, bytes, estimated time.
	must(t, ctx, sh, "dry run", chromedp.Click(chromedp.ID("offload-plan")), chromedp.WaitVisible(chromedp.ID("bulk-plan-text")))
	plan := evalString(t, ctx, `document.getElementById('bulk-plan-text').textContent`)
	if !strings.Contains(plan, fmt.Sprintf("Offload %d results", made)) || !strings.Contains(plan, "Estimated time") {
		t.Fatalf("dry run says %q; want how many results and the estimated time", plan)
	}
	sh.take(ctx, "overview-dry-run")

	// Start, then the progress bar refreshes to 100 %.
	must(t, ctx, sh, "start", chromedp.Click(chromedp.ID("bulk-start")), chromedp.WaitVisible(chromedp.ID("bulk-progress")))
	waitTrue(t, ctx, sh, "the offload's progress bar to reach 100 % and the run to be done",
		`(() => { const p = document.getElementById('bulk-progress'); const st = document.getElementById('bulk-state');
			return !!p && p.value === 100 && !!st && st.textContent === 'done' })()`)
	waitTrue(t, ctx, sh, "the overview's counts to show every result only in R2, its local disk reclaimed",
		fmt.Sprintf(`(() => { const n = id => { const e = document.getElementById(id); return e ? Number(e.dataset.results) : -1 };
			const r = document.getElementById('reclaimed');
			return n('count-local-only') === 0 && n('count-copy-cloudflare-r2') === 0 && n('count-only-cloudflare-r2') === %d && !!r && Number(r.dataset.bytes) > 0 })()`, made))
	if got := evalString(t, ctx, `document.getElementById('bulk-percent').textContent`); got != "100 %" {
		t.Errorf("percent after the run: %q, want 100 %%", got)
	}
	sh.take(ctx, "overview-done")
	if n := len(s.s3.Keys(t, bucketName)); n != made {
		t.Errorf("the bucket holds %d objects after the offload, want %d", n, made)
	}

	// Uninstall tells the truth: how many results live only in R2, that
	// they keep serving from its public URL, that deleting them later needs
	// the plugin; it offers Bring back to local first, which leads back here.
	must(t, ctx, sh, "plugins", chromedp.Navigate(base+"/app/admin/general/plugins"), chromedp.WaitVisible(chromedp.ID("uninstall-cloudflare-r2")),
		chromedp.Click(chromedp.ID("uninstall-cloudflare-r2")), chromedp.WaitVisible(chromedp.ID("confirm-alt")))
	msg := evalString(t, ctx, `document.getElementById('confirm-message').textContent`)
	for _, want := range []string{fmt.Sprintf("%d results live only in Cloudflare R2 Storage", made), "keep serving from its public URL", "deleting them later needs the plugin"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the Uninstall confirmation %q does not say %q", msg, want)
		}
	}
	sh.take(ctx, "uninstall-confirm")
	must(t, ctx, sh, "bring back first", chromedp.Click(chromedp.ID("confirm-alt")), chromedp.WaitVisible(chromedp.ID("bring-back-cloudflare-r2")))
	if !evalBool(t, ctx, `document.activeElement && document.activeElement.id === 'bring-back-cloudflare-r2'`) {
		t.Error("Bring back to local first did not lead to the provider's Bring back")
	}

	// Bring back to local, the same way: dry run, Start, 100 %.
	must(t, ctx, sh, "bring back dry run", chromedp.Click(chromedp.ID("bring-back-cloudflare-r2")))
	waitTrue(t, ctx, sh, "the bring back's dry run", fmt.Sprintf(`(() => { const p = document.getElementById('bulk-plan');
		return !!p && !p.hidden && document.getElementById('bulk-plan-text').textContent.includes('Bring back %d results') })()`, made))
	must(t, ctx, sh, "start bring back", chromedp.Click(chromedp.ID("bulk-start")))
	waitTrue(t, ctx, sh, "the bring back's progress bar to reach 100 % and the run to be done",
		`(() => { const p = document.getElementById('bulk-progress'); const st = document.getElementById('bulk-state'); const t = document.getElementById('bulk-title');
			return !!p && p.value === 100 && !!st && st.textContent === 'done' && !!t && t.textContent.startsWith('Bringing back') })()`)
	waitTrue(t, ctx, sh, "the overview's counts to show every result local only",
		fmt.Sprintf(`(() => { const e = document.getElementById('count-local-only'); return !!e && Number(e.dataset.results) === %d })()`, made))
	sh.take(ctx, "overview-brought-back")
	noConsoleErrors(t, logs, fmt.Sprintf("during the walk (%s)", t.Name()))
}
