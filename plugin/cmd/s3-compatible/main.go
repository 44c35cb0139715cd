// Command s3-compatible is the S3-compatible storage-provider plugin of the
// MagicAds host (Amazon S3, Wasabi, MinIO and other S3 services). The host
// starts it over go-plugin; run by hand it explains that and exits 1.
package main

import (
	"fmt"
	"os"

	"github.com/magicads/r2storage/plugin/s3compat"
	"github.com/magicads/r2storage/shared/sdk"
)

// version, when set at link time (-ldflags "-X main.version=1.2.3"),
// replaces the embedded manifest's version.
var version string

func main() {
	logger := sdk.Logger(s3compat.ID)
	p, err := s3compat.NewFromBundle(logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "s3-compatible:", err)
		os.Exit(1)
	}
	if version != "" {
		p.SetVersion(version)
	}
	sdk.Serve(p, sdk.ServeOptions{Logger: logger, MemoryLimit: s3compat.MemoryLimit})
}
