package marketplace_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/catalog"
)

// TestOperationMetrics: installs, updates and uninstalls are counted by
// outcome in the host's metrics.
func TestOperationMetrics(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			m := newMarket(t)
			v100 := version("1.0.0", goodArchive(t, m, "1.0.0", &bin100))
			m.publish(freeForExtended, v100)
			h := newHost(t, d, m, marketplace.LicenseRegular)
			ctx := context.Background()
			if _, err := h.app.Market.Install(ctx, pluginID); err == nil {
				t.Fatal("an unpaid install succeeded")
			}
			receipt, _ := catalog.SignReceipt(m.priv, catalog.Receipt{PluginID: pluginID, Buyer: "alice", IssuedAt: time.Now(), Nonce: "metrics"})
			if _, err := h.app.Market.RecordPurchase(ctx, receipt); err != nil {
				t.Fatal(err)
			}
			if _, err := h.app.Market.Install(ctx, pluginID); err != nil {
				t.Fatalf("install: %v", err)
			}
			if _, err := h.app.Market.Install(ctx, pluginID); err != nil {
				t.Fatalf("install again: %v", err)
			}
			m.publish(freeForExtended, v100, version("1.1.0", goodArchive(t, m, "1.1.0", &bin110)))
			if v, err := h.app.Market.Install(ctx, pluginID); err != nil || v != "1.1.0" {
				t.Fatalf("update: %q %v", v, err)
			}
			if _, err := h.app.Market.Install(ctx, "no-such-plugin"); err == nil {
				t.Fatal("installing an unknown plugin succeeded")
			}
			if err := h.app.Market.Uninstall(ctx, pluginID); err != nil {
				t.Fatal(err)
			}
			if err := h.app.Market.Uninstall(ctx, pluginID); err == nil {
				t.Fatal("uninstalling twice succeeded")
			}
			want := `
# HELP magicads_marketplace_operations_total Marketplace installs, updates and uninstalls by outcome (ok, unchanged, payment_required, failed).
# TYPE magicads_marketplace_operations_total counter
magicads_marketplace_operations_total{operation="install",outcome="failed"} 1
magicads_marketplace_operations_total{operation="install",outcome="ok"} 1
magicads_marketplace_operations_total{operation="install",outcome="payment_required"} 1
magicads_marketplace_operations_total{operation="uninstall",outcome="failed"} 1
magicads_marketplace_operations_total{operation="uninstall",outcome="ok"} 1
magicads_marketplace_operations_total{operation="update",outcome="ok"} 1
magicads_marketplace_operations_total{operation="update",outcome="unchanged"} 1
`
			if err := testutil.GatherAndCompare(h.app.Metrics.Registry(), strings.NewReader(want), "magicads_marketplace_operations_total"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
