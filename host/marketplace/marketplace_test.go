package marketplace_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/catalog"
)

func goodArchive(t testing.TB, m *market, v string, b *plugintest.Builder) catalog.Archive {
	t.Helper()
	return m.addArchive(pluginID, v, tarGz(bundle(t, v, readFile(t, b.Build(t, "./plugin/cmd/cloudflare-r2")), nil)), archiveOpts{})
}

// purchased is true when the card's JSON, as the API sends it, says the
// plugin was bought.
func purchased(c marketplace.Card) bool {
	b, err := json.Marshal(c)
	return err == nil && strings.Contains(string(b), `"purchased":true`)
}

func card(t testing.TB, h *host) marketplace.Card {
	t.Helper()
	cards, err := h.app.Market.Cards(context.Background())
	if err != nil || len(cards) != 1 {
		t.Fatalf("cards: %v %v", cards, err)
	}
	return cards[0]
}

// TestInstallUninstallInstall round-trips on SQLite and PostgreSQL: a fresh
// install changes nothing about storage, uninstall removes everything but
// the settings, and installing again finds them.
func TestInstallUninstallInstall(t *testing.T) {
	m := newMarket(t)
	m.publish(freeForExtended, version("1.0.0", goodArchive(t, m, "1.0.0", &bin100)))
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d, m, marketplace.LicenseExtended)
			ctx := context.Background()
			if c := card(t, h); c.CTA != "install" || c.State != "not_installed" {
				t.Fatalf("card before install: %+v", c)
			}
			v, err := h.app.Market.Install(ctx, pluginID)
			if err != nil || v != "1.0.0" {
				t.Fatalf("install: %q %v", v, err)
			}
			if c := card(t, h); c.CTA != "uninstall" || c.InstalledVersion != "1.0.0" || c.ConfigureURL != "/app/admin/general/plugins/cloudflare-r2" {
				t.Fatalf("card after install: %+v", c)
			}
			if st, _ := h.app.Runtime.Status(pluginID); st.State != pluginrt.StateRunning {
				t.Fatalf("installed plugin not running: %+v", st)
			}
			// A fresh install changes nothing about storage.
			if def, _ := h.app.Providers.Default(ctx); def != "local" || len(h.app.Providers.Options(ctx)) != 1 {
				t.Fatalf("a fresh install changed storage: default %s, options %v", def, h.app.Providers.Options(ctx))
			}
			settings := map[string]any{"enabled": true, "access_key_id": "AKIDEXAMPLE", "secret_access_key": base64.StdEncoding.EncodeToString(randBytes(24)),
				"bucket": "media", "endpoint": "http://127.0.0.1:1", "public_url": "https://pub-x.r2.dev"}
			if fields, err := h.app.Providers.SaveSettings(ctx, pluginID, settings); err != nil || len(fields) > 0 {
				t.Fatalf("saving settings: %v %v", fields, err)
			}
			pid := mustPid(t, h)

			if err := h.app.Market.Uninstall(ctx, pluginID); err != nil {
				t.Fatal(err)
			}
			if entries := h.pluginsDirEntries(); len(entries) != 0 {
				t.Fatalf("uninstall left files: %v", entries)
			}
			var n int
			h.db.QueryRow(`SELECT COUNT(*) FROM plugins`).Scan(&n)
			if n != 0 {
				t.Fatal("uninstall left the plugin's record")
			}
			if st, _ := dbmigrate.Version(ctx, h.db.DB, h.db.Dialect, dbmigrate.PluginTable(pluginID)); st.Applied {
				t.Fatalf("the plugin's migrations are still applied: %+v", st)
			}
			waitGone(t, pid)
			if c := card(t, h); c.CTA != "install" {
				t.Fatalf("card after uninstall: %+v", c)
			}

			if _, err := h.app.Market.Install(ctx, pluginID); err != nil {
				t.Fatalf("install again: %v", err)
			}
			view, err := h.app.Providers.Settings(ctx, pluginID)
			if err != nil || view.Values["bucket"] != "media" || !slices.Contains(view.SecretsSet, "secret_access_key") {
				t.Fatalf("settings after reinstall: %+v %v", view, err)
			}
		})
	}
}

func mustPid(t testing.TB, h *host) int {
	st, ok := h.app.Runtime.Status(pluginID)
	if !ok || st.Pid == 0 {
		t.Fatalf("no plugin pid: %+v", st)
	}
	return st.Pid
}

func waitGone(t testing.TB, pid int) {
	deadline := time.Now().Add(10 * time.Second)
	for slices.Contains(childPids(), fmt.Sprint(pid)) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin process %d still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLicenseAndPurchase: a Regular License sees Buy with the product's
// message; installing unpaid is refused with the checkout URL; a receipt
// from a trusted key unlocks the install; others are refused.
func TestLicenseAndPurchase(t *testing.T) {
	m := newMarket(t)
	m.publish(freeForExtended, version("1.0.0", goodArchive(t, m, "1.0.0", &bin100)))
	h := newHost(t, "sqlite", m, marketplace.LicenseRegular)
	ctx := context.Background()
	c := card(t, h)
	if c.CTA != "buy" || c.Message != "This plugin is free only for Extended License holders" || c.Price != "29.00 USD" || c.CheckoutURL == "" || purchased(c) {
		t.Fatalf("regular-license card: %+v", c)
	}
	_, err := h.app.Market.Install(ctx, pluginID)
	var pay *marketplace.PaymentRequiredError
	if !errors.As(err, &pay) || pay.CheckoutURL != c.CheckoutURL {
		t.Fatalf("unpaid install: %v", err)
	}
	_, strangerKey, _ := ed25519.GenerateKey(rand.Reader)
	forged, _ := catalog.SignReceipt(strangerKey, catalog.Receipt{PluginID: pluginID, Buyer: "mallory", IssuedAt: time.Now()})
	if _, err := h.app.Market.RecordPurchase(ctx, forged); !errors.Is(err, marketplace.ErrInvalidReceipt) {
		t.Fatalf("receipt from an untrusted key: %v", err)
	}
	if _, err := h.app.Market.RecordPurchase(ctx, "garbage"); !errors.Is(err, marketplace.ErrInvalidReceipt) {
		t.Fatalf("garbage receipt: %v", err)
	}
	receipt, _ := catalog.SignReceipt(m.priv, catalog.Receipt{PluginID: pluginID, Buyer: "alice", IssuedAt: time.Now(), Nonce: "n1"})
	if id, err := h.app.Market.RecordPurchase(ctx, receipt); err != nil || id != pluginID {
		t.Fatalf("trusted receipt: %q %v", id, err)
	}
	if c := card(t, h); c.CTA != "install" || !purchased(c) {
		t.Fatalf("card after purchase: %+v", c)
	}
	if _, err := h.app.Market.Install(ctx, pluginID); err != nil {
		t.Fatalf("install after purchase: %v", err)
	}
	// The installed card still says it was bought (the console shows "Purchased").
	if c := card(t, h); c.State != "installed" || !purchased(c) {
		t.Fatalf("installed card after purchase: %+v", c)
	}
}

// TestHostileInstalls: every broken or hostile catalog entry is refused
// with an error naming the cause, leaving nothing in the plugins dir, the
// database or the process table.
func TestHostileInstalls(t *testing.T) {
	good := func(t testing.TB) []byte { return readFile(t, bin100.Build(t, "./plugin/cmd/cloudflare-r2")) }
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name string
		make func(t testing.TB, m *market) catalog.Archive
		want string
	}{
		{"wrong sha256", func(t testing.TB, m *market) catalog.Archive {
			data := tarGz(bundle(t, "1.0.0", good(t), nil))
			a := m.addArchive(pluginID, "1.0.0", data, archiveOpts{})
			other := m.addArchive(pluginID, "1.0.0", tarGz(bundle(t, "1.0.0", []byte("#!/bin/sh\n"), nil)), archiveOpts{})
			a.URL = other.URL // signed digest of one archive, bytes of another
			return a
		}, "does not match"},
		{"bad signature", func(t testing.TB, m *market) catalog.Archive {
			return m.addArchive(pluginID, "1.0.0", tarGz(bundle(t, "1.0.0", good(t), nil)), archiveOpts{signature: base64.StdEncoding.EncodeToString(randBytes(64))})
		}, "signature"},
		{"unsigned", func(t testing.TB, m *market) catalog.Archive {
			return m.addArchive(pluginID, "1.0.0", tarGz(bundle(t, "1.0.0", good(t), nil)), archiveOpts{unsigned: true})
		}, "sign"},
		{"unknown key", func(t testing.TB, m *market) catalog.Archive {
			return m.addArchive(pluginID, "1.0.0", tarGz(bundle(t, "1.0.0", good(t), nil)), archiveOpts{signer: stranger})
		}, "key"},
		{"manifest id mismatch", func(t testing.TB, m *market) catalog.Archive {
			return m.addArchive(pluginID, "1.0.0", tarGz(bundle(t, "1.0.0", good(t), func(man map[string]any) { man["id"] = "someone-else" })), archiveOpts{})
		}, "someone-else"},
		{"no binary for this platform", func(t testing.TB, m *market) catalog.Archive {
			files := bundle(t, "1.0.0", good(t), nil)
			return m.addArchive(pluginID, "1.0.0", tarGz(files[:len(files)-1]), archiveOpts{})
		}, "executable"},
		{"invalid settings schema", func(t testing.TB, m *market) catalog.Archive {
			files := bundle(t, "1.0.0", good(t), nil)
			for i := range files {
				if files[i].Name == "schema/settings.schema.json" {
					files[i].Data = []byte(`{"type": "no-such-type"}`)
				}
			}
			return m.addArchive(pluginID, "1.0.0", tarGz(files), archiveOpts{})
		}, "schema"},
		{"settings schema outside the console vocabulary", func(t testing.TB, m *market) catalog.Archive {
			files := bundle(t, "1.0.0", good(t), nil)
			for i := range files {
				if files[i].Name == "schema/settings.schema.json" {
					files[i].Data = bytes.Replace(files[i].Data, []byte(`"x-section"`), []byte(`"x-sectoin"`), 1)
				}
			}
			return m.addArchive(pluginID, "1.0.0", tarGz(files), archiveOpts{})
		}, "x-sectoin: is not a keyword of the settings vocabulary"},
		{"failing migration", func(t testing.TB, m *market) catalog.Archive {
			files := bundle(t, "1.0.0", good(t), nil)
			files = append(files,
				file{Name: "migrations/000002_broken.up.sql", Mode: 0o644, Data: []byte("INSERT INTO no_such_table VALUES (1);")},
				file{Name: "migrations/000002_broken.down.sql", Mode: 0o644, Data: []byte("SELECT 1;")})
			return m.addArchive(pluginID, "1.0.0", tarGz(files), archiveOpts{})
		}, "migration"},
		{"crashes at start", func(t testing.TB, m *market) catalog.Archive {
			return m.addArchive(pluginID, "1.0.0", tarGz(bundle(t, "1.0.0", []byte("#!/bin/sh\nexit 3\n"), nil)), archiveOpts{})
		}, "canary"},
		{"never completes the handshake", func(t testing.TB, m *market) catalog.Archive {
			return m.addArchive(pluginID, "1.0.0", tarGz(bundle(t, "1.0.0", []byte("#!/bin/sh\nexec sleep 60\n"), nil)), archiveOpts{})
		}, "canary"},
		{"symlink", func(t testing.TB, m *market) catalog.Archive {
			files := append(bundle(t, "1.0.0", good(t), nil), file{Name: "schema/link", Typ: tar.TypeSymlink, Linkname: "/etc/passwd"})
			return m.addArchive(pluginID, "1.0.0", tarGz(files), archiveOpts{})
		}, "link"},
		{"hard link", func(t testing.TB, m *market) catalog.Archive {
			files := append(bundle(t, "1.0.0", good(t), nil), file{Name: "schema/hard", Typ: tar.TypeLink, Linkname: "manifest.json"})
			return m.addArchive(pluginID, "1.0.0", tarGz(files), archiveOpts{})
		}, "link"},
		{"device file", func(t testing.TB, m *market) catalog.Archive {
			files := append(bundle(t, "1.0.0", good(t), nil), file{Name: "dev", Typ: tar.TypeChar, Mode: 0o644})
			return m.addArchive(pluginID, "1.0.0", tarGz(files), archiveOpts{})
		}, "device"},
		{"duplicate entry", func(t testing.TB, m *market) catalog.Archive {
			files := bundle(t, "1.0.0", good(t), nil)
			files = append(files, file{Name: "./manifest.json", Mode: 0o644, Data: []byte("{}")})
			return m.addArchive(pluginID, "1.0.0", tarGz(files), archiveOpts{})
		}, "duplicate"},
		{"decompression bomb", func(t testing.TB, m *market) catalog.Archive {
			files := append(bundle(t, "1.0.0", []byte("#!/bin/sh\n"), nil), file{Name: "bomb.bin", Mode: 0o644, Size: 200 << 20})
			return m.addArchive(pluginID, "1.0.0", tarGz(files), archiveOpts{})
		}, "decompression bomb"},
		{"path traversal", func(t testing.TB, m *market) catalog.Archive {
			files := append(bundle(t, "1.0.0", good(t), nil), file{Name: "../../escaped", Mode: 0o644, Data: []byte("x")})
			return m.addArchive(pluginID, "1.0.0", tarGz(files), archiveOpts{})
		}, "escapes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newMarket(t)
			m.publish(free, version("1.0.0", c.make(t, m)))
			h := newHost(t, "sqlite", m, marketplace.LicenseRegular)
			before := childPids()
			_, err := h.app.Market.Install(context.Background(), pluginID)
			var ie *marketplace.InstallError
			if !errors.As(err, &ie) || !strings.Contains(strings.ToLower(err.Error()), c.want) {
				t.Fatalf("install error %v, want an InstallError mentioning %q", err, c.want)
			}
			if entries := h.pluginsDirEntries(); len(entries) != 0 {
				t.Fatalf("refused install left files: %v", entries)
			}
			var n int
			h.db.QueryRow(`SELECT COUNT(*) FROM plugins`).Scan(&n)
			if n != 0 {
				t.Fatal("refused install left a plugin record")
			}
			h.db.QueryRow(`SELECT COUNT(*) FROM settings WHERE owner = 'cloudflare-r2'`).Scan(&n)
			if n != 0 {
				t.Fatal("refused install left the plugin's settings entry (migrations not rolled back)")
			}
			if st, _ := dbmigrate.Version(context.Background(), h.db.DB, h.db.Dialect, dbmigrate.PluginTable(pluginID)); st.Applied {
				t.Fatalf("refused install left migrations applied: %+v", st)
			}
			time.Sleep(100 * time.Millisecond)
			if after := childPids(); len(after) > len(before) {
				t.Fatalf("refused install left processes: before %v, after %v", before, after)
			}
		})
	}
}

// TestUpdate: a newer version installs beside the running one and replaces
// it after its canary passes; a failing canary leaves the old one serving.
func TestUpdate(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			m := newMarket(t)
			v100 := version("1.0.0", goodArchive(t, m, "1.0.0", &bin100))
			m.publish(free, v100)
			h := newHost(t, d, m, marketplace.LicenseRegular)
			ctx := context.Background()
			if _, err := h.app.Market.Install(ctx, pluginID); err != nil {
				t.Fatal(err)
			}
			oldPid := mustPid(t, h)

			// 1.1.0 whose binary still says 1.0.0: the canary refuses it.
			bad := m.addArchive(pluginID, "1.1.0", tarGz(bundle(t, "1.1.0", readFile(t, bin100.Build(t, "./plugin/cmd/cloudflare-r2")), nil)), archiveOpts{})
			m.publish(free, v100, version("1.1.0", bad))
			if _, err := h.app.Market.Install(ctx, pluginID); err == nil || !strings.Contains(err.Error(), "canary") {
				t.Fatalf("update with a failing canary: %v", err)
			}
			if inst, _ := h.app.Providers.Installed(pluginID); inst.Version != "1.0.0" || mustPid(t, h) != oldPid {
				t.Fatalf("the old version stopped serving: %+v", inst)
			}
			if info, err := h.app.Runtime.Provider(pluginID).Describe(ctx); err != nil || info.Version != "1.0.0" {
				t.Fatalf("old plugin after a failed update: %+v %v", info, err)
			}

			// A good 1.1.0 replaces it.
			m.publish(free, v100, version("1.1.0", goodArchive(t, m, "1.1.0", &bin110)))
			if v, err := h.app.Market.Install(ctx, pluginID); err != nil || v != "1.1.0" {
				t.Fatalf("update: %q %v", v, err)
			}
			if info, err := h.app.Runtime.Provider(pluginID).Describe(ctx); err != nil || info.Version != "1.1.0" {
				t.Fatalf("after update: %+v %v", info, err)
			}
			if entries := h.pluginsDirEntries(); slices.ContainsFunc(entries, func(e string) bool { return strings.Contains(e, "1.0.0") }) {
				t.Fatalf("the old version's files were kept: %v", entries)
			}
			waitGone(t, oldPid)
			_ = providers.Local
		})
	}
}

// BenchmarkInstall installs the real R2 archive from a loopback catalog
// (then uninstalls it, untimed) and reports the median install time.
func BenchmarkInstall(b *testing.B) {
	m := newMarket(b)
	m.publish(free, version("1.0.0", goodArchive(b, m, "1.0.0", &bin100)))
	h := newHost(b, "sqlite", m, marketplace.LicenseRegular)
	ctx := context.Background()
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := h.app.Market.Install(ctx, pluginID); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
		b.StopTimer()
		if err := h.app.Market.Uninstall(ctx, pluginID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2])/1e6, "median-install-ms")
}
