package sdk

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// ServeOptions tune Serve; the zero value is right for most providers.
type ServeOptions struct {
	// Logger is the provider's logger; its output reaches the host's log.
	// nil uses Logger("plugin").
	Logger hclog.Logger
	// MemoryLimit is a soft limit on the plugin's Go heap in bytes
	// (runtime/debug.SetMemoryLimit); 0 keeps the runtime's default. A
	// provider that streams large objects through fixed buffers sets it so
	// garbage from passing chunks is collected before it grows the process.
	MemoryLimit int64
}

// Logger returns an hclog logger writing JSON to stderr, which go-plugin
// forwards into the host's log with levels intact. Never log a secret.
func Logger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.Info,
		Output:     os.Stderr,
		JSONFormat: true,
	})
}

// Serve runs p as a storage-provider plugin until the host stops it. It is
// the whole body of a provider's main. Run by hand, outside the host, it
// says what it is and exits with status 1.
func Serve(p Provider, opts ...ServeOptions) {
	if !launchedByHost() {
		explainAndExit(os.Stderr, p)
	}
	var o ServeOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.MemoryLimit > 0 {
		debug.SetMemoryLimit(o.MemoryLimit)
	}
	if o.Logger == nil {
		o.Logger = Logger("plugin")
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake(),
		VersionedPlugins: VersionedPlugins(p),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.InitialWindowSize(windowSize), grpc.InitialConnWindowSize(windowSize))...)
		},
		Logger: o.Logger,
	})
}

func launchedByHost() bool {
	return os.Getenv(magicCookieKey) == magicCookieValue
}

func explainAndExit(w io.Writer, p Provider) {
	name := "a storage provider"
	if info, err := p.Describe(context.Background()); err == nil && info.ID != "" {
		name = fmt.Sprintf("%s (%s %s)", info.Name, info.ID, info.Version)
	}
	fmt.Fprintf(w, "This program is %s, a plugin for the MagicAds host.\n"+
		"It is not meant to be run by hand: the MagicAds host starts it.\n"+
		"Install it from the admin (Admin → General Settings → Plugins), or test it with\n"+
		"  go run ./shared/cmd/conformance --plugin PATH_TO_THIS_BINARY --settings SETTINGS.json\n", name)
	os.Exit(1)
}
