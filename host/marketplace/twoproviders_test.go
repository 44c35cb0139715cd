package marketplace_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/catalog"
	"github.com/magicads/r2storage/shared/publish"
)

// TestInstallBothProvidersFromOnePackagedCatalog: the packaging library
// packs both providers (this platform only) from their bundles and main
// packages and signs one catalog with both; a host trusting it installs
// both, on SQLite and PostgreSQL, and runs each plugin.
func TestInstallBothProvidersFromOnePackagedCatalog(t *testing.T) {
	ctx := context.Background()
	root := plugintest.ModuleRoot(t)
	dir := t.TempDir()
	for _, p := range []struct{ bundle, main string }{
		{root, "./plugin/cmd/cloudflare-r2"},
		{filepath.Join(root, "plugin", "s3compat", "bundle"), "./plugin/cmd/s3-compatible"},
	} {
		if _, err := publish.Pack(ctx, publish.PackOptions{BundleDir: p.bundle, Main: p.main, MainDir: root, Platforms: []string{platform}, OutDir: dir}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	res, err := publish.Catalog(ctx, publish.CatalogOptions{Dir: dir, KeysDir: filepath.Join(t.TempDir(), "keys"), Forbid: []string{root}, CheckoutBase: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Index.Plugins) != 2 {
		t.Fatalf("the catalog lists %d plugins, want 2", len(res.Index.Plugins))
	}
	keys, err := catalog.LoadPublicKeys(filepath.Join(dir, catalog.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	m := &market{t: t, pub: keys[0], srv: srv}
	want := map[string]string{"cloudflare-r2": catalog.PricingPaid, "s3-compatible": catalog.PricingFree}

	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d, m, marketplace.LicenseExtended)
			cards, err := h.app.Market.Cards(ctx)
			if err != nil || len(cards) != 2 {
				t.Fatalf("cards: %+v %v", cards, err)
			}
			for _, c := range cards {
				if c.CTA != "install" || c.State != "not_installed" {
					t.Errorf("%s card before install: %+v", c.ID, c)
				}
			}
			pids := map[int]string{}
			for id := range want {
				v, err := h.app.Market.Install(ctx, id)
				if err != nil || v != "1.0.0" {
					t.Fatalf("install %s: %q %v", id, v, err)
				}
				st, ok := h.app.Runtime.Status(id)
				if !ok || st.State != pluginrt.StateRunning || st.Pid == 0 {
					t.Fatalf("%s is not running after install: %+v", id, st)
				}
				if other, dup := pids[st.Pid]; dup {
					t.Fatalf("%s and %s share pid %d", id, other, st.Pid)
				}
				pids[st.Pid] = id
			}
			// Both stay running side by side once both are installed.
			for id := range want {
				if st, _ := h.app.Runtime.Status(id); st.State != pluginrt.StateRunning {
					t.Errorf("%s: %+v", id, st)
				}
			}
			cards, err = h.app.Market.Cards(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cards {
				if c.CTA != "uninstall" || c.InstalledVersion != "1.0.0" {
					t.Errorf("%s card after install: %+v", c.ID, c)
				}
			}
		})
	}
	for _, p := range res.Index.Plugins {
		if want[p.ID] != p.Pricing.Model {
			t.Errorf("%s: pricing %q, want %q", p.ID, p.Pricing.Model, want[p.ID])
		}
	}
}
