// Command cloudflare-r2 is the Cloudflare R2 storage-provider plugin of the
// MagicAds host. The host starts it over go-plugin; run by hand it explains
// that and exits 1.
package main

import (
	"fmt"
	"os"

	"github.com/magicads/r2storage/plugin/r2"
	"github.com/magicads/r2storage/shared/sdk"
)

// version, when set at link time (-ldflags "-X main.version=1.2.3"),
// replaces the embedded manifest's version: release builds stamp it, and
// tests build updated plugins with it.
var version string

func main() {
	logger := sdk.Logger(r2.ID)
	p, err := r2.NewFromBundle(logger)
	if err == nil && version != "" {
		p.SetVersion(version)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloudflare-r2:", err)
		os.Exit(1)
	}
	sdk.Serve(p, sdk.ServeOptions{Logger: logger, MemoryLimit: r2.MemoryLimit})
}
