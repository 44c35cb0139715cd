package marketplace_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/internal/testdb"
)

// hostState is what a refused catalog must leave alone.
type hostState struct {
	db    string
	files []string
	procs []string
}

func (h *host) state() hostState {
	return hostState{db: h.dump(), files: h.pluginsDirEntries(), procs: childPids()}
}

// unchanged fails the test if the host's database, plugin files or child
// processes differ from before.
func (h *host) unchanged(t testing.TB, before hostState, what string) {
	t.Helper()
	time.Sleep(100 * time.Millisecond)
	after := h.state()
	if after.db != before.db {
		t.Errorf("%s changed the database:\nbefore:\n%s\nafter:\n%s", what, before.db, after.db)
	}
	if !slices.Equal(after.files, before.files) {
		t.Errorf("%s changed the plugins dir: before %v, after %v", what, before.files, after.files)
	}
	if len(after.procs) > len(before.procs) {
		t.Errorf("%s left processes: before %v, after %v", what, before.procs, after.procs)
	}
}

// refused calls the marketplace with the catalog as it is now published and
// checks each call is refused with an error containing every want string.
func refused(t testing.TB, h *host, what string, want ...string) {
	t.Helper()
	ctx := context.Background()
	_, cerr := h.app.Market.Cards(ctx)
	_, ierr := h.app.Market.Install(ctx, pluginID)
	_, uerr := h.app.Market.CheckoutURL(ctx, pluginID)
	for call, err := range map[string]error{"cards": cerr, "install": ierr, "checkout": uerr} {
		if err == nil {
			t.Errorf("%s: %s accepted it", what, call)
			continue
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %s error %q does not say %q", what, call, err, w)
			}
		}
	}
}

// adminCall sends an admin API request to h and returns the status and the
// body's "error" (or, when it has none, "catalog_error: " and its catalog_error).
func adminCall(t testing.TB, h *host, method, path string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(h.app.Handler())
	defer srv.Close()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error        string `json:"error"`
		CatalogError string `json:"catalog_error"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	if body.Error == "" && body.CatalogError != "" {
		return resp.StatusCode, "catalog_error: " + body.CatalogError
	}
	return resp.StatusCode, body.Error
}

// TestStaleCatalogRefused (SQLite and PostgreSQL): once an index with serial
// 42 was accepted, a validly signed index with serial 41 is refused, by the
// same host, by the host restarted on its database, and by a second node on
// the same database; the same index again is fine, a newer one is accepted.
// Each refusal leaves the database, the plugins dir and the processes alone.
func TestStaleCatalogRefused(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			m := newMarket(t)
			v100 := version("1.0.0", goodArchive(t, m, "1.0.0", &bin100))
			db := testdb.Open(t, d)
			dataDir := t.TempDir()
			h := startHost(t, db, dataDir, m, marketplace.LicenseRegular)

			m.publishWith(indexOpts{serial: 42}, free, v100)
			if _, err := h.app.Market.Cards(ctx); err != nil {
				t.Fatalf("serial 42: %v", err)
			}
			// The same index again (every page load fetches it) is fine.
			if _, err := h.app.Market.Cards(ctx); err != nil {
				t.Fatalf("serial 42 again: %v", err)
			}

			m.publishWith(indexOpts{serial: 41}, free, v100)
			before := h.state()
			refused(t, h, "serial 41 after 42", "41", "42", "stale or replayed", "--catalog")
			if code, msg := adminCall(t, h, "POST", "/api/v1/admin/plugins/"+pluginID+"/install"); code != http.StatusBadGateway || !strings.Contains(msg, "serial 41 is older than 42") {
				t.Errorf("install with a stale catalog: %d %q, want 502 naming the serials", code, msg)
			}
			// The plugin list still answers, naming the cause: installed
			// plugins stay reachable (configure, uninstall).
			if code, msg := adminCall(t, h, "GET", "/api/v1/admin/plugins"); code != http.StatusOK || !strings.HasPrefix(msg, "catalog_error: ") || !strings.Contains(msg, "serial 41 is older than 42") {
				t.Errorf("the plugin list with a stale catalog: %d %q, want 200 with catalog_error naming the serials", code, msg)
			}
			h.unchanged(t, before, "a stale index")

			// Restart on the same database: still refused.
			h.close()
			h = startHost(t, db, dataDir, m, marketplace.LicenseRegular)
			before = h.state()
			refused(t, h, "serial 41 after a restart", "41", "42")
			h.unchanged(t, before, "a stale index after a restart")

			// A second node on the same database refuses it too.
			node2 := startHost(t, db, t.TempDir(), m, marketplace.LicenseRegular)
			refused(t, node2, "serial 41 on a second node", "41", "42")

			// A newer index is accepted, and raises the bar for every node.
			m.publishWith(indexOpts{serial: 43}, free, v100)
			if _, err := node2.app.Market.Cards(ctx); err != nil {
				t.Fatalf("serial 43: %v", err)
			}
			m.publishWith(indexOpts{serial: 42}, free, v100)
			refused(t, h, "serial 42 after 43 on the other node", "42", "43")
		})
	}
}

// TestExpiredOrUndatedCatalogRefused: an expired index, and one without a
// serial or an expiry, are refused with the cause and the fix, and change
// nothing.
func TestExpiredOrUndatedCatalogRefused(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			m := newMarket(t)
			v100 := version("1.0.0", goodArchive(t, m, "1.0.0", &bin100))
			h := newHost(t, d, m, marketplace.LicenseRegular)
			cases := []struct {
				name string
				o    indexOpts
				want []string
			}{
				{"expired", indexOpts{expires: time.Now().Add(-time.Minute)}, []string{"expired at", "re-sign", "clock"}},
				{"no serial", indexOpts{omitSerial: true}, []string{"serial", "missing", "scripts/catalog"}},
				{"no expiry", indexOpts{omitExpires: true}, []string{"expires", "missing", "scripts/catalog"}},
			}
			for _, c := range cases {
				m.publishWith(c.o, free, v100)
				before := h.state()
				refused(t, h, c.name, c.want...)
				h.unchanged(t, before, "a refused index ("+c.name+")")
			}
			// An expired index is refused even if its serial is the highest
			// yet, and does not raise the accepted serial.
			high := m.publishWith(indexOpts{serial: 1 << 40, expires: time.Now().Add(-time.Second)}, free, v100)
			refused(t, h, "expired with a high serial", "expired")
			m.publishWith(indexOpts{serial: high - 1}, free, v100)
			if _, err := h.app.Market.Cards(context.Background()); err != nil {
				t.Fatalf("a fresh index after an expired one with a higher serial: %v", err)
			}
		})
	}
}

// TestNoDowngrade (SQLite and PostgreSQL): with 1.1.0 installed, a newer,
// validly signed index that lists only 1.0.0 is refused by install/update
// (the error names both versions), the card offers no "Update to 1.0.0", and
// 1.1.0 keeps running with the database and files unchanged.
func TestNoDowngrade(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			m := newMarket(t)
			v100 := version("1.0.0", goodArchive(t, m, "1.0.0", &bin100))
			m.publish(free, v100, version("1.1.0", goodArchive(t, m, "1.1.0", &bin110)))
			h := newHost(t, d, m, marketplace.LicenseRegular)
			if v, err := h.app.Market.Install(ctx, pluginID); err != nil || v != "1.1.0" {
				t.Fatalf("install: %q %v", v, err)
			}
			pid := mustPid(t, h)

			m.publish(free, v100) // 1.1.0 withdrawn: only 1.0.0 is listed
			c := card(t, h)       // accepts the newer index
			if c.InstalledVersion != "1.1.0" || c.CTA != "uninstall" || c.State != "installed" || c.Version == "1.0.0" {
				t.Fatalf("card with 1.1.0 installed and only 1.0.0 listed: %+v", c)
			}
			before := h.state()
			v, err := h.app.Market.Install(ctx, pluginID)
			var ie *marketplace.InstallError
			if err == nil || !errors.As(err, &ie) || !strings.Contains(err.Error(), "1.0.0") || !strings.Contains(err.Error(), "1.1.0") {
				t.Fatalf("install of 1.0.0 over 1.1.0: version %q, error %v; want an InstallError naming both versions", v, err)
			}
			if code, msg := adminCall(t, h, "POST", "/api/v1/admin/plugins/"+pluginID+"/install"); code != http.StatusConflict || !strings.Contains(msg, "1.0.0") || !strings.Contains(msg, "1.1.0") {
				t.Errorf("install over HTTP: %d %q, want 409 naming both versions", code, msg)
			}
			if !errors.Is(err, marketplace.ErrDowngrade) {
				t.Errorf("the downgrade error %v does not wrap ErrDowngrade", err)
			}
			h.unchanged(t, before, "a refused downgrade")
			if inst, _ := h.app.Providers.Installed(pluginID); inst.Version != "1.1.0" || mustPid(t, h) != pid {
				t.Fatalf("1.1.0 stopped serving: %+v", inst)
			}
			srv := httptest.NewServer(h.app.Handler())
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL+"/app/admin/general/plugins", nil)
			req.Header.Set("Authorization", "Bearer "+adminToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || strings.Contains(string(page), "Update to") || !strings.Contains(string(page), "1.1.0") {
				t.Fatalf("plugins page (%d) offers an update or hides the installed version:\n%s", resp.StatusCode, page)
			}
		})
	}
}
