package httpapi

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/magicads/r2storage/host/marketplace"
)

// TestMarketStatusBusyElsewhere: an install or uninstall that gave up
// waiting for another node's is a conflict (try again), not a server error.
func TestMarketStatusBusyElsewhere(t *testing.T) {
	err := fmt.Errorf("installing or uninstalling x: %w", marketplace.ErrBusyElsewhere)
	if got := marketStatus(err); got != http.StatusConflict {
		t.Fatalf("status of %v: %d, want %d", err, got, http.StatusConflict)
	}
}
