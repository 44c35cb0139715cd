package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/catalog"
	"github.com/magicads/r2storage/shared/publish"
)

// TestServesBothProviders: a catalog packed and signed by shared/publish
// with both providers, cloudflare-r2 (paid) and s3-compatible (free), is
// served whole; the paid one has a checkout, the free one says no purchase
// is needed and never gets a receipt.
func TestServesBothProviders(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	dir, keys := filepath.Join(base, "catalog"), filepath.Join(base, "keys")
	bin := filepath.Join(base, "bin")
	if err := os.WriteFile(bin, []byte("fake plugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, bundle := range []string{"../..", "../../plugin/s3compat/bundle"} {
		if _, err := publish.Pack(ctx, publish.PackOptions{BundleDir: bundle, Binaries: map[string]string{"linux/amd64": bin}, OutDir: dir}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := publish.Catalog(ctx, publish.CatalogOptions{Dir: dir, KeysDir: keys}); err != nil {
		t.Fatal(err)
	}
	s, err := newServer(dir, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.handler())
	t.Cleanup(srv.Close)
	f := &fixture{dir: dir, keys: keys, srv: srv}

	idx, err := catalog.Fetch(ctx, nil, srv.URL+"/"+catalog.IndexFile, f.trusted(t))
	if err != nil || len(idx.Plugins) != 2 {
		t.Fatalf("index: %+v %v", idx, err)
	}
	for _, name := range []string{"cloudflare-r2_1.0.0_linux_amd64.tar.gz", "s3-compatible_1.0.0_linux_amd64.tar.gz", "s3-compatible_1.0.0_linux_amd64.tar.gz.sha256", "SHA256SUMS"} {
		if code, _ := f.get(t, "/"+name); code != http.StatusOK {
			t.Errorf("GET /%s: %d", name, code)
		}
	}
	if _, err := publish.Verify(ctx, publish.VerifyOptions{URL: srv.URL + "/" + catalog.IndexFile, TrustedKeys: f.trusted(t)}); err != nil {
		t.Errorf("the served catalog does not verify: %v", err)
	}

	code, body := f.get(t, "/")
	for _, want := range []string{"Cloudflare R2 Storage", "29.00 USD", `href="/checkout/cloudflare-r2"`, "S3-Compatible Storage", "Free"} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("home lacks %q (%d)", want, code)
		}
	}
	if strings.Contains(body, `href="/checkout/s3-compatible"`) {
		t.Error("home offers a checkout for the free plugin")
	}

	ret := "http://127.0.0.1:8080/app/admin/general/plugins?tab=market"
	if code, body := f.get(t, "/checkout/cloudflare-r2?return="+url.QueryEscape(ret)); code != http.StatusOK || !strings.Contains(body, "Complete purchase") {
		t.Errorf("paid checkout: %d", code)
	}
	code, body = f.get(t, "/checkout/s3-compatible?return="+url.QueryEscape(ret))
	if code != http.StatusOK || strings.Contains(body, "Complete purchase") || !strings.Contains(body, "free") || !strings.Contains(body, "no purchase") {
		t.Errorf("free checkout: %d %s", code, body)
	}
	code, body = f.post(t, "/checkout/s3-compatible", url.Values{"return": {ret}}, "application/json")
	if code != http.StatusConflict || receiptRE.MatchString(body) || strings.Contains(body, `"receipt"`) {
		t.Errorf("POST free checkout: %d %s, want 409 and no receipt", code, body)
	}
}
