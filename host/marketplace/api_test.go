package marketplace_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/shared/catalog"
)

// TestMarketplaceAPI drives ../shared/api.md's plugin calls over HTTP.
func TestMarketplaceAPI(t *testing.T) {
	m := newMarket(t)
	m.publish(freeForExtended, version("1.0.0", goodArchive(t, m, "1.0.0", &bin100)))
	h := newHost(t, "sqlite", m, marketplace.LicenseRegular)
	srv := httptest.NewServer(h.app.Handler())
	defer srv.Close()
	call := func(method, path string, body any, out any) int {
		t.Helper()
		var r io.Reader
		if body != nil {
			data, _ := json.Marshal(body)
			r = bytes.NewReader(data)
		}
		req, _ := http.NewRequest(method, srv.URL+path, r)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	var list struct{ Plugins []marketplace.Card }
	if code := call("GET", "/api/v1/admin/plugins", nil, &list); code != 200 || len(list.Plugins) != 1 || list.Plugins[0].CTA != "buy" || list.Plugins[0].State != "not_installed" {
		t.Fatalf("plugins: %d %+v", code, list)
	}
	var pay struct {
		Error       string `json:"error"`
		CheckoutURL string `json:"checkout_url"`
	}
	if code := call("POST", "/api/v1/admin/plugins/"+pluginID+"/install", nil, &pay); code != http.StatusPaymentRequired || pay.CheckoutURL == "" || pay.Error != marketplace.ExtendedOnlyMessage {
		t.Fatalf("unpaid install: %d %+v", code, pay)
	}
	var checkout struct {
		CheckoutURL string `json:"checkout_url"`
	}
	if code := call("POST", "/api/v1/admin/plugins/"+pluginID+"/purchase", nil, &checkout); code != 200 || checkout.CheckoutURL != pay.CheckoutURL {
		t.Fatalf("purchase: %d %+v", code, checkout)
	}
	if code := call("POST", "/api/v1/admin/purchases", map[string]string{"receipt": "not.a-receipt"}, nil); code != http.StatusUnprocessableEntity {
		t.Fatalf("bad receipt: %d", code)
	}
	receipt, _ := catalog.SignReceipt(m.priv, catalog.Receipt{PluginID: pluginID, Buyer: "alice", IssuedAt: time.Now(), Nonce: "api"})
	if code := call("POST", "/api/v1/admin/purchases", map[string]string{"receipt": receipt}, nil); code != 200 {
		t.Fatalf("good receipt: %d", code)
	}
	var installed struct {
		InstalledVersion string `json:"installed_version"`
	}
	if code := call("POST", "/api/v1/admin/plugins/"+pluginID+"/install", nil, &installed); code != 200 || installed.InstalledVersion != "1.0.0" {
		t.Fatalf("install: %d %+v", code, installed)
	}
	call("GET", "/api/v1/admin/plugins", nil, &list)
	if c := list.Plugins[0]; c.CTA != "uninstall" || c.State != "installed" || c.InstalledVersion != "1.0.0" {
		t.Fatalf("card after install: %+v", c)
	}
	if code := call("POST", "/api/v1/admin/plugins/"+pluginID+"/uninstall", nil, nil); code != 200 {
		t.Fatalf("uninstall: %d", code)
	}
	if code := call("POST", "/api/v1/admin/plugins/"+pluginID+"/uninstall", nil, nil); code != http.StatusNotFound {
		t.Fatalf("second uninstall: %d", code)
	}
	if code := call("POST", "/api/v1/admin/plugins/no-such-plugin/install", nil, nil); code != http.StatusNotFound {
		t.Fatalf("unknown plugin: %d", code)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/admin/plugins/"+pluginID+"/install", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("install without credentials: %v %v", resp.StatusCode, err)
	}
}
