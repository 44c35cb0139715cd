package r2

import (
	"net/http"

	"github.com/magicads/r2storage/plugin/s3kit"
)

// Timeouts bound how long the provider waits on a silent network, so a
// dead connection is noticed in seconds (s3kit.Timeouts).
type Timeouts = s3kit.Timeouts

// Default timeouts.
const (
	// DefaultDialTimeout is the default Timeouts.Dial.
	DefaultDialTimeout = s3kit.DefaultDialTimeout
	// DefaultTLSHandshakeTimeout is the default Timeouts.TLSHandshake.
	DefaultTLSHandshakeTimeout = s3kit.DefaultTLSHandshakeTimeout
	// DefaultResponseHeaderTimeout is the default Timeouts.ResponseHeader.
	DefaultResponseHeaderTimeout = s3kit.DefaultResponseHeaderTimeout
	// DefaultIdleTimeout is the default Timeouts.Idle.
	DefaultIdleTimeout = s3kit.DefaultIdleTimeout
)

// newHTTPClient returns the client the provider talks to R2 with
// (s3kit.NewHTTPClient).
func newHTTPClient(t Timeouts) *http.Client { return s3kit.NewHTTPClient(t) }
