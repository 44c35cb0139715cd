package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// problemStorage is a storage API answer whose Default Storage is failing.
func problemStorage() map[string]any {
	return map[string]any{
		"default": "cloudflare-r2",
		"options": []map[string]any{
			{"id": "local", "name": "Local server (this machine)"},
			{"id": "cloudflare-r2", "name": "Cloudflare R2 Storage", "status": "failing", "last_error": "upload: bad credentials (403 SignatureDoesNotMatch)",
				"last_error_at": "2026-11-30T07:00:00Z", "pending": 2, "failed": 3},
		},
		"unavailable": []map[string]any{
			{"id": "wasabi", "name": "Wasabi", "reason": "credentials incomplete: set the bucket", "fix": "Fill in the bucket on its settings screen.", "fix_url": "/app/admin/general/plugins/wasabi"},
			{"id": "s3", "name": "Amazon S3", "reason": "not enabled", "fix": "Turn on Enable and Save.", "fix_url": "/app/admin/general/plugins/s3"},
		},
		"problem": map[string]any{"provider": "cloudflare-r2", "name": "Cloudflare R2 Storage", "status": "failing",
			"cause": "uploads fail: bad credentials (403 SignatureDoesNotMatch)", "fix": "re-enter the Secret Access Key and Test connection.",
			"message": "Cloudflare R2 Storage is failing: new results stay on this server", "fix_url": "/app/admin/general/plugins/cloudflare-r2"},
	}
}

// consoleAPI answers every page's calls: storage (with problem), plugins,
// R2 settings and results.
func consoleAPI(t *testing.T, storage map[string]any) *fakeAPI {
	t.Helper()
	schema, err := r2Schema()
	if err != nil {
		t.Fatal(err)
	}
	api := newFakeAPI()
	api.set("/api/v1/admin/storage", 200, storage)
	api.set("/api/v1/admin/plugins", 200, map[string]any{"plugins": []map[string]any{
		{"id": "cloudflare-r2", "name": "Cloudflare R2 Storage", "version": "1.0.0", "installed_version": "1.0.0", "state": "installed", "cta": "uninstall",
			"price": "29.00 USD", "purchased": true},
		{"id": "wasabi", "name": "Wasabi", "version": "1.0.0", "installed_version": "1.0.0", "state": "installed", "cta": "uninstall"},
		{"id": "gcs", "name": "Google Cloud Storage", "version": "1.0.0", "state": "not_installed", "cta": "install"},
	}})
	api.set("/api/v1/admin/plugins/cloudflare-r2/settings", 200, map[string]any{
		"schema": json.RawMessage(schema), "values": map[string]any{"enabled": true, "access_key_id": "AKIA", "bucket": "media", "account_id": "0123456789abcdef0123456789abcdef"},
		"secrets_set": []string{"secret_access_key"},
	})
	api.set("/api/v1/results", 200, map[string]any{"results": []map[string]any{}})
	return api
}

// TestStorageProblemBannerOnEveryPage: with the Default Storage failing,
// every admin page and the results page carry a banner naming the cause
// and the fix, with a link to the fix; without a problem there is none.
func TestStorageProblemBannerOnEveryPage(t *testing.T) {
	h := New(Options{API: consoleAPI(t, problemStorage())})
	for _, path := range []string{StoragePath, PluginsPath, PluginsPath + "/cloudflare-r2", ResultsPath} {
		t.Run(path, func(t *testing.T) {
			res, _, doc := get(t, h, path)
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			b := byID(doc, "storage-problem")
			if b == nil {
				t.Fatal("no storage problem banner")
			}
			text := textOf(b)
			for _, want := range []string{"Cloudflare R2 Storage is failing: new results stay on this server",
				"Cause: Uploads fail: bad credentials (403 SignatureDoesNotMatch)", "Fix: Re-enter the Secret Access Key and Test connection."} {
				if !strings.Contains(text, want) {
					t.Errorf("banner %q does not say %q", text, want)
				}
			}
			link := mustID(t, doc, "storage-problem-link")
			if href, _ := attr(link, "href"); href != "/app/admin/general/plugins/cloudflare-r2" {
				t.Errorf("fix link %q", href)
			}
			if got := textOf(link); got != "Open its settings" {
				t.Errorf("fix link text %q", got)
			}
		})
	}

	healthy := problemStorage()
	delete(healthy, "problem")
	h = New(Options{API: consoleAPI(t, healthy)})
	for _, path := range []string{StoragePath, PluginsPath, PluginsPath + "/cloudflare-r2", ResultsPath} {
		if _, _, doc := get(t, h, path); byID(doc, "storage-problem") != nil {
			t.Errorf("%s: a banner without a problem", path)
		}
	}
}

// TestBannerWithoutMessageOrStorageAPI: a problem without message still
// names the provider, and a page whose storage API cannot be read (an
// older or failing host) renders without a banner.
func TestBannerWithoutMessageOrStorageAPI(t *testing.T) {
	s := problemStorage()
	s["problem"] = map[string]any{"provider": "cloudflare-r2", "name": "Cloudflare R2 Storage", "status": "failing", "cause": "not an option"}
	_, _, doc := get(t, New(Options{API: consoleAPI(t, s)}), PluginsPath)
	if got := textOf(mustID(t, doc, "storage-problem")); !strings.Contains(got, "The Default Storage, Cloudflare R2 Storage, cannot take new results") || !strings.Contains(got, "Cause: Not an option") {
		t.Errorf("banner %q", got)
	}
	if byID(doc, "storage-problem-link") != nil {
		t.Error("a fix link without fix_url")
	}

	api := consoleAPI(t, s)
	api.set("/api/v1/admin/storage", 403, map[string]string{"error": "admins only"})
	res, _, doc := get(t, New(Options{API: api}), ResultsPath)
	if res.StatusCode != 200 || byID(doc, "storage-problem") != nil || byID(doc, "page-error") != nil {
		t.Errorf("results page without the storage API: %d", res.StatusCode)
	}
}

// TestPluginCardShowsItsProviderHealth: the failing provider's card says
// so with the cause and the fix; an installed provider that is not an
// option says why; Configure is an installed card's primary button; a
// bought plugin's card says Purchased.
func TestPluginCardShowsItsProviderHealth(t *testing.T) {
	_, _, doc := get(t, New(Options{API: consoleAPI(t, problemStorage())}), PluginsPath)
	r2 := mustID(t, doc, "card-health-cloudflare-r2")
	if v, _ := attr(r2, "data-status"); v != "failing" {
		t.Errorf("R2 card health status %q", v)
	}
	text := textOf(r2)
	for _, want := range []string{"Failing", "Uploads fail: bad credentials", "Re-enter the Secret Access Key"} {
		if !strings.Contains(text, want) {
			t.Errorf("R2 card health %q does not say %q", text, want)
		}
	}
	w := textOf(mustID(t, doc, "card-health-wasabi"))
	if !strings.Contains(w, "Not a Default Storage option") || !strings.Contains(w, "Credentials incomplete: set the bucket") {
		t.Errorf("Wasabi card health %q", w)
	}
	if byID(doc, "card-health-gcs") != nil {
		t.Error("a card that is not installed shows storage health")
	}

	cfg := mustID(t, doc, "configure-cloudflare-r2")
	if !hasClass(cfg, "button") || hasClass(cfg, "secondary") {
		t.Errorf("Configure is not the primary button: class %v", cfg.Attr)
	}
	var primary []string
	walk(mustID(t, doc, "plugin-cloudflare-r2"), func(n *html.Node) {
		if hasClass(n, "button") && !hasClass(n, "secondary") && !hasClass(n, "danger") {
			primary = append(primary, textOf(n))
		}
	})
	if len(primary) != 1 || primary[0] != "Configure" {
		t.Errorf("primary buttons of an installed card: %q, want only Configure", primary)
	}
	if got := textOf(byClass(mustID(t, doc, "plugin-cloudflare-r2"), "card-price")[0]); got != "Purchased" {
		t.Errorf("bought plugin's price label %q, want Purchased", got)
	}
	if got := textOf(byClass(mustID(t, doc, "plugin-wasabi"), "card-price")[0]); got != "Free" {
		t.Errorf("free plugin's price label %q", got)
	}
	un := mustID(t, doc, "uninstall-cloudflare-r2")
	if v, _ := attr(un, "data-confirm"); !strings.Contains(v, "Uninstall Cloudflare R2 Storage?") || !strings.Contains(v, "nothing in the bucket is deleted") {
		t.Errorf("uninstall confirmation %q", v)
	}
}

// TestStoragePageShowsHealthAndUnavailable: each provider option shows its
// status, pending and failed counts and last error, with Retry only when
// uploads failed; each installed provider that is not an option says why,
// with a link to fix it.
func TestStoragePageShowsHealthAndUnavailable(t *testing.T) {
	s := problemStorage()
	s["options"] = append(s["options"].([]map[string]any), map[string]any{"id": "b2", "name": "Backblaze B2", "status": "ok", "pending": 0, "failed": 0})
	_, _, doc := get(t, New(Options{API: consoleAPI(t, s)}), StoragePath)
	r2 := mustID(t, doc, "health-cloudflare-r2")
	if v, _ := attr(r2, "data-status"); v != "failing" {
		t.Errorf("status %q", v)
	}
	for class, want := range map[string]string{"health-name": "Cloudflare R2 Storage", "health-pending": "2", "health-failed": "3"} {
		if n := byClass(r2, class); len(n) != 1 || textOf(n[0]) != want {
			t.Errorf(".%s: want %q", class, want)
		}
	}
	if got := textOf(byClass(r2, "health-error")[0]); !strings.Contains(got, "Upload: bad credentials (403 SignatureDoesNotMatch)") || !strings.Contains(got, "2026-11-30 07:00:00 UTC") {
		t.Errorf("last error %q", got)
	}
	if !strings.Contains(textOf(r2), "Failing") {
		t.Errorf("status label missing: %q", textOf(r2))
	}
	btn := mustID(t, doc, "retry-cloudflare-r2")
	if a, _ := attr(btn, "data-action"); btn.Data != "button" || a != "retry" {
		t.Errorf("retry button <%s data-action=%q>", btn.Data, a)
	}
	b2 := mustID(t, doc, "health-b2")
	if !strings.Contains(textOf(b2), "OK") || byID(doc, "retry-b2") != nil {
		t.Errorf("a healthy provider: %q, retry offered: %v", textOf(b2), byID(doc, "retry-b2") != nil)
	}
	if byID(doc, "health-local") != nil {
		t.Error("the local server has a health row")
	}

	for id, want := range map[string][2]string{
		"wasabi": {"Wasabi: Credentials incomplete: set the bucket Fill in the bucket on its settings screen.", "/app/admin/general/plugins/wasabi"},
		"s3":     {"Amazon S3: Not enabled Turn on Enable and Save.", "/app/admin/general/plugins/s3"},
	} {
		li := mustID(t, doc, "unavailable-"+id)
		if got := textOf(li); !strings.HasPrefix(got, want[0]) {
			t.Errorf("%s: %q, want %q", id, got, want[0])
		}
		if href, _ := attr(mustID(t, doc, "fix-"+id), "href"); href != want[1] {
			t.Errorf("%s fix link %q", id, href)
		}
	}

	// An older host's answer (no health, no unavailable) shows neither.
	api := newFakeAPI()
	api.set("/api/v1/admin/storage", 200, map[string]any{"default": "local", "options": []map[string]string{{"id": "local", "name": "Local server (this machine)"}, {"id": "cloudflare-r2", "name": "Cloudflare R2 Storage"}}})
	_, _, doc = get(t, New(Options{API: api}), StoragePath)
	if byID(doc, "storage-health") != nil || byID(doc, "storage-unavailable") != nil || byID(doc, "storage-problem") != nil {
		t.Error("health sections without health in the answer")
	}
}

// TestOnePageOneName: each page has one name across the nav, the title,
// the document title and the last breadcrumb.
func TestOnePageOneName(t *testing.T) {
	h := New(Options{API: consoleAPI(t, problemStorage())})
	for path, want := range map[string]struct{ name, nav string }{
		StoragePath:                    {"Default Storage", "nav-storage"},
		PluginsPath:                    {"Plugins", "nav-plugins"},
		PluginsPath + "/cloudflare-r2": {"Cloudflare R2 Storage settings", ""},
		ResultsPath:                    {"Results", "nav-results"},
	} {
		_, _, doc := get(t, h, path)
		if got := textOf(mustID(t, doc, "page-title")); got != want.name {
			t.Errorf("%s: title %q, want %q", path, got, want.name)
		}
		var title string
		var crumbs []string
		walk(doc, func(n *html.Node) {
			if n.Data == "title" {
				title = textOf(n)
			}
			if v, _ := attr(n, "aria-label"); v == "Breadcrumb" {
				walk(n, func(c *html.Node) {
					if c.Data == "a" || (c.Data == "span" && !hasAttr(c, "aria-hidden")) {
						crumbs = append(crumbs, textOf(c))
					}
				})
			}
		})
		if title != want.name+" · MagicAds" {
			t.Errorf("%s: document title %q", path, title)
		}
		if want.nav != "" && textOf(mustID(t, doc, want.nav)) != want.name {
			t.Errorf("%s: nav %q, want %q", path, textOf(mustID(t, doc, want.nav)), want.name)
		}
		if path != ResultsPath && (len(crumbs) == 0 || crumbs[len(crumbs)-1] != want.name) {
			t.Errorf("%s: breadcrumbs %q end elsewhere than %q", path, crumbs, want.name)
		}
		if path == StoragePath && strings.Join(crumbs, " → ") != "Admin → General Settings → Default Storage" {
			t.Errorf("Default Storage breadcrumbs %q", crumbs)
		}
	}
}

func hasAttr(n *html.Node, key string) bool {
	_, ok := attr(n, key)
	return ok
}

// resultsStorage is a storage API answer for the results page: R2 is an
// option, Wasabi is installed but unusable, anything else is not installed.
func resultsStorage() map[string]any {
	return map[string]any{
		"default":     "cloudflare-r2",
		"options":     []map[string]any{{"id": "local", "name": "Local server (this machine)"}, {"id": "cloudflare-r2", "name": "Cloudflare R2 Storage", "status": "degraded"}},
		"unavailable": []map[string]any{{"id": "wasabi", "name": "Wasabi", "reason": "not enabled"}},
	}
}

// TestResultCardsSayWhereAndWhatHappens: a card names its storage (not the
// id), where in the bucket it is, whether its upload failed and will be
// retried (why and when) or waits for a settings change or Retry, whether a
// local copy is kept, and its Delete confirmation says what will happen.
func TestResultCardsSayWhereAndWhatHappens(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/storage", 200, resultsStorage())
	api.set("/api/v1/admin/plugins", 200, map[string]any{"plugins": []map[string]any{{"id": "gcs", "name": "Google Cloud Storage", "state": "not_installed", "cta": "install"}}})
	api.set("/api/v1/results", 200, map[string]any{"results": []map[string]any{
		{"id": "off", "path": "images/demo/off.png", "storage": "cloudflare-r2", "url": "https://cdn.example/m/images/demo/off.png",
			"object_key": "m/images/demo/off.png", "bucket": "media", "local_present": true},
		{"id": "retrying", "path": "images/demo/retrying.png", "storage": "local", "url": "/api/v1/results/retrying/content", "local_present": true,
			"local_reason": "queued for cloudflare-r2, retrying (attempt 2 failed): bad credentials",
			"upload":       map[string]any{"state": "retrying", "provider": "cloudflare-r2", "error": "bad credentials (403)", "attempts": 2, "next_attempt_at": "2026-11-30T07:05:00Z"}},
		{"id": "failed", "path": "images/demo/failed.png", "storage": "local", "url": "/api/v1/results/failed/content", "local_present": true,
			"upload": map[string]any{"state": "failed", "provider": "cloudflare-r2", "error": "bucket not found", "attempts": 8}},
		{"id": "gone", "path": "images/demo/gone.png", "storage": "gcs", "url": "https://storage.example/gone.png", "bucket": "old", "local_present": false},
		{"id": "off2", "path": "images/demo/off2.png", "storage": "wasabi", "url": "https://w.example/off2.png", "local_present": false},
		{"id": "loc", "path": "images/demo/loc.png", "storage": "local", "url": "/api/v1/results/loc/content"},
	}})
	_, body, doc := get(t, New(Options{API: api}), ResultsPath)

	card := func(id string) *html.Node { return mustID(t, doc, "result-"+id) }
	one := func(n *html.Node, class string) string {
		t.Helper()
		got := byClass(n, class)
		if len(got) != 1 {
			t.Fatalf("%d .%s in %s", len(got), class, textOf(n))
		}
		return textOf(got[0])
	}
	if got := one(card("off"), "result-storage"); got != "Cloudflare R2 Storage" {
		t.Errorf("storage name %q", got)
	}
	if v, _ := attr(byClass(card("off"), "result-storage")[0], "data-storage"); v != "cloudflare-r2" {
		t.Errorf("data-storage %q", v)
	}
	if one(card("off"), "result-bucket") != "media" || one(card("off"), "result-key") != "m/images/demo/off.png" {
		t.Error("bucket or key not shown")
	}
	if got := one(card("off"), "result-local"); got != "A local copy is kept on this server." {
		t.Errorf("local copy %q", got)
	}
	if got := one(card("loc"), "result-storage"); got != "Local server (this machine)" {
		t.Errorf("local storage name %q", got)
	}
	if strings.Contains(body, ">cloudflare-r2<") {
		t.Error("a provider id is shown as a name")
	}

	if got := one(card("retrying"), "result-upload"); got != "The upload to Cloudflare R2 Storage failed (attempt 2): bad credentials (403). It will be retried at 2026-11-30 07:05:00 UTC." {
		t.Errorf("retrying upload %q", got)
	}
	if got := one(card("retrying"), "result-local"); got != "The local copy is kept and served from this server meanwhile." {
		t.Errorf("retrying local copy %q", got)
	}
	if got := one(card("retrying"), "result-local-reason"); !strings.HasPrefix(got, "Queued for cloudflare-r2, retrying") {
		t.Errorf("local reason %q", got)
	}
	f := one(card("failed"), "result-upload")
	if !strings.Contains(f, "The upload to Cloudflare R2 Storage failed (attempt 8): bucket not found.") ||
		!strings.Contains(f, "not retried until its settings change or you click Retry on Default Storage") {
		t.Errorf("failed upload %q", f)
	}
	if byClass(card("off"), "result-upload") != nil || byClass(card("loc"), "result-upload") != nil {
		t.Error("an upload note without an upload")
	}

	confirm := func(id string) string {
		v, _ := attr(mustID(t, doc, "delete-"+id), "data-confirm")
		return v
	}
	for id, want := range map[string][]string{
		"off":      {"Its object is deleted from Cloudflare R2 Storage (bucket media), and its local copy with it.", "cannot be undone"},
		"gone":     {"queued: the provider is not installed", "Google Cloud Storage (bucket old)", "install Google Cloud Storage again"},
		"off2":     {"queued: the provider cannot be used right now (not enabled)", "Wasabi"},
		"loc":      {"Its file is deleted from this server.", "cannot be undone"},
		"retrying": {"Its file is deleted from this server and its pending upload to Cloudflare R2 Storage is dropped."},
	} {
		got := confirm(id)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: delete confirmation %q does not say %q", id, got, w)
			}
		}
	}
	if got := one(card("gone"), "result-storage"); got != "Google Cloud Storage" {
		t.Errorf("uninstalled provider's name %q, want the marketplace's", got)
	}
}

// TestConfigPageWarnsAboutR2Dev: an r2.dev public URL gets a warning that
// r2.dev is rate-limited and not for production, suggesting a custom
// domain; a custom domain gets none (the element stays, hidden, for the
// script).
func TestConfigPageWarnsAboutR2Dev(t *testing.T) {
	schema, err := r2Schema()
	if err != nil {
		t.Fatal(err)
	}
	for url, warn := range map[string]bool{"https://pub-0123abcd.r2.dev": true, "https://PUB-1.R2.DEV/media": true, "https://media.example.com": false,
		"https://r2.dev.example.com": false, "": false} {
		api := newFakeAPI()
		api.set("/api/v1/admin/plugins/cloudflare-r2/settings", 200, map[string]any{"schema": json.RawMessage(schema), "values": map[string]any{"public_url": url}})
		_, _, doc := get(t, New(Options{API: api}), PluginsPath+"/cloudflare-r2")
		n := mustID(t, doc, "r2dev-public_url")
		_, hidden := attr(n, "hidden")
		if hidden == warn {
			t.Errorf("%q: warning shown %v, want %v", url, !hidden, warn)
		}
		if warn {
			text := textOf(n)
			for _, w := range []string{"rate-limited", "not meant for production", "custom domain"} {
				if !strings.Contains(text, w) {
					t.Errorf("%q: warning %q does not say %q", url, text, w)
				}
			}
		}
		form := mustID(t, doc, "settings-form")
		if v, _ := attr(form, "data-r2dev-warning"); !strings.Contains(v, "rate-limited") {
			t.Errorf("the script's warning text %q", v)
		}
	}
}

// TestConfigPageMarksMissingFields: while the provider has a problem, each
// empty field x-fully-configured asks for is marked and the banner lists
// them; a complete form marks none.
func TestConfigPageMarksMissingFields(t *testing.T) {
	schema, err := r2Schema()
	if err != nil {
		t.Fatal(err)
	}
	api := newFakeAPI()
	api.set("/api/v1/admin/plugins/cloudflare-r2/settings", 200, map[string]any{"schema": json.RawMessage(schema),
		"values": map[string]any{"access_key_id": "AKIA", "bucket": ""}, "secrets_set": []string{},
		"problem": "not fully configured: set the secret access key, the bucket, and the account id or a custom endpoint"})
	_, _, doc := get(t, New(Options{API: api}), PluginsPath+"/cloudflare-r2")
	if got := textOf(mustID(t, doc, "settings-missing")); got != "Fill in the marked fields: Secret Access Key, Bucket and Account ID or Custom Endpoint." {
		t.Errorf("missing list %q", got)
	}
	for key, want := range map[string]string{"secret_access_key": "Required", "bucket": "Required", "account_id": "Set Account ID or Custom Endpoint", "endpoint": "Set Account ID or Custom Endpoint"} {
		if !hasClass(mustID(t, doc, "wrap-"+key), "missing") {
			t.Errorf("%s not marked", key)
		}
		n := mustID(t, doc, "missing-"+key)
		if _, hidden := attr(n, "hidden"); hidden || !strings.HasPrefix(textOf(n), want) {
			t.Errorf("%s: note %q hidden=%v", key, textOf(n), hidden)
		}
	}
	for _, key := range []string{"access_key_id", "public_url", "enabled"} {
		if hasClass(mustID(t, doc, "wrap-"+key), "missing") {
			t.Errorf("%s marked though it is set or not needed", key)
		}
	}
	form := mustID(t, doc, "settings-form")
	if v, _ := attr(form, "data-complete-all"); v != "access_key_id,secret_access_key,bucket" {
		t.Errorf("data-complete-all %q", v)
	}
	if v, _ := attr(form, "data-complete-any"); v != "account_id,endpoint" {
		t.Errorf("data-complete-any %q", v)
	}

	// Without a problem nothing is marked.
	api.set("/api/v1/admin/plugins/cloudflare-r2/settings", 200, map[string]any{"schema": json.RawMessage(schema), "values": map[string]any{}, "secrets_set": []string{}})
	_, _, doc = get(t, New(Options{API: api}), PluginsPath+"/cloudflare-r2")
	if n := byClass(doc, "missing"); len(n) != 0 {
		t.Errorf("%d fields marked without a problem", len(n))
	}
}

// TestConfigPageShowsFailingUploads: the config screen of a provider whose
// uploads fail says so, with the last error.
func TestConfigPageShowsFailingUploads(t *testing.T) {
	_, _, doc := get(t, New(Options{API: consoleAPI(t, problemStorage())}), PluginsPath+"/cloudflare-r2")
	n := mustID(t, doc, "settings-health")
	if got := textOf(n); !strings.Contains(got, "Uploads to this provider are failing.") || !strings.Contains(got, "Upload: bad credentials") {
		t.Errorf("settings health %q", got)
	}
}

// TestFavicon: the host serves a small SVG icon and every page links it;
// no page asks anything else for one.
func TestFavicon(t *testing.T) {
	h := New(Options{API: consoleAPI(t, problemStorage())})
	for path, hh := range map[string]http.Handler{"/app/favicon.svg": h, "/favicon.ico": Favicon()} {
		rec := httptest.NewRecorder()
		hh.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "image/svg+xml" {
			t.Fatalf("GET %s: %d %q", path, rec.Code, rec.Header().Get("Content-Type"))
		}
		if body := rec.Body.String(); !strings.HasPrefix(body, "<svg") || len(body) > 2048 || strings.Contains(body, "http://") && !strings.Contains(body, "http://www.w3.org/2000/svg") || strings.Contains(body, "https://") {
			t.Errorf("GET %s: not a small self-contained SVG (%d bytes)", path, len(body))
		}
	}
	_, _, doc := get(t, h, StoragePath)
	var icons []string
	walk(doc, func(n *html.Node) {
		if rel, _ := attr(n, "rel"); n.Data == "link" && rel == "icon" {
			href, _ := attr(n, "href")
			icons = append(icons, href)
		}
	})
	if len(icons) != 1 || icons[0] != "/app/favicon.svg" {
		t.Errorf("icon links %q", icons)
	}
}

// TestMainFragment: asked with X-Console-Fragment: main, a page answers its
// <main> only, with no style or script to apply (their nonce would not be
// the page's), and the same page name.
func TestMainFragment(t *testing.T) {
	h := New(Options{API: consoleAPI(t, problemStorage())})
	req := httptest.NewRequest(http.MethodGet, StoragePath, nil)
	req.Header.Set("X-Console-Fragment", "main")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body := rec.Body.String()
	if rec.Code != 200 || !strings.HasPrefix(strings.TrimSpace(body), `<main data-page="storage">`) || !strings.HasSuffix(strings.TrimSpace(body), "</main>") {
		t.Fatalf("fragment %d: %.200q", rec.Code, body)
	}
	for _, tag := range []string{"<script", "<style", "<header", "<html"} {
		if strings.Contains(body, tag) {
			t.Errorf("the fragment has %s", tag)
		}
	}
	for _, id := range []string{`id="default-storage"`, `id="storage-problem"`, `id="page-title"`} {
		if !strings.Contains(body, id) {
			t.Errorf("the fragment lacks %s", id)
		}
	}
	if !strings.Contains(rec.Header().Get("Vary"), "X-Console-Fragment") {
		t.Errorf("Vary %q", rec.Header().Get("Vary"))
	}
}

// TestPageHasNoInlineHandlers: the CSP allows only the nonce'd script, so
// no element may carry an inline event handler or style attribute.
func TestPageHasNoInlineHandlers(t *testing.T) {
	h := New(Options{API: consoleAPI(t, problemStorage())})
	for _, path := range []string{StoragePath, PluginsPath, PluginsPath + "/cloudflare-r2", ResultsPath} {
		_, _, doc := get(t, h, path)
		walk(doc, func(n *html.Node) {
			for _, a := range n.Attr {
				if strings.HasPrefix(a.Key, "on") || a.Key == "style" {
					t.Errorf("%s: <%s %s=%q>", path, n.Data, a.Key, a.Val)
				}
			}
		})
	}
}

// TestMessagesStartWithACapital: host messages shown on the pages start
// with a capital letter.
func TestMessagesStartWithACapital(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/storage", 200, map[string]any{"default": "local", "options": []map[string]string{{"id": "local", "name": "Local server (this machine)"}},
		"warning": "default storage cannot be read, so new results stay local"})
	_, _, doc := get(t, New(Options{API: api}), StoragePath)
	if got := textOf(mustID(t, doc, "storage-warning")); got != "Default storage cannot be read, so new results stay local" {
		t.Errorf("warning %q", got)
	}
	for in, want := range map[string]string{"bad credentials": "Bad credentials", "Already": "Already", "": "", " élan": "Élan", "3 crashes": "3 crashes"} {
		if got := sentence(in); got != want {
			t.Errorf("sentence(%q) = %q, want %q", in, got, want)
		}
	}
}
