package sdk

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/magicads/r2storage/shared/storage"
)

// DefaultStartTimeout is how long Launch waits for a plugin's handshake.
const DefaultStartTimeout = 15 * time.Second

// LaunchConfig says how to start a plugin binary.
type LaunchConfig struct {
	// Path is the plugin binary.
	Path string
	// Args are extra command-line arguments; plugins normally take none.
	Args []string
	// Env is extra environment (KEY=VALUE) for the plugin process.
	Env []string
	// Logger receives the plugin's logs; nil discards them.
	Logger hclog.Logger
	// SHA256, when set, is the binary's pinned checksum: go-plugin refuses to
	// start a binary that does not match (SecureConfig).
	SHA256 []byte
	// StartTimeout bounds the handshake; 0 means DefaultStartTimeout.
	StartTimeout time.Duration
}

// Client is a running plugin: a storage.Provider whose calls go over gRPC
// to the plugin process.
type Client struct {
	storage.Provider
	pc *plugin.Client
}

var (
	_ storage.UploadAborter = (*Client)(nil)
	_ storage.Locator       = (*Client)(nil)
)

// AbortUploads aborts the incomplete uploads of keys in the plugin process
// (storage.UploadAborter). The plugin is asked only when its Describe
// declared Capabilities.AbortUploads; otherwise, as with a plugin built
// with an SDK that predates the call, the answer is an Unimplemented
// *storage.Error. At most storage.MaxAbortKeys keys per call.
func (c *Client) AbortUploads(ctx context.Context, keys []string) (int, error) {
	if a, ok := c.Provider.(storage.UploadAborter); ok {
		return a.AbortUploads(ctx, keys)
	}
	return 0, &storage.Error{Code: storage.Unimplemented, Message: "abort uploads: the plugin client does not support this optional call"}
}

// locator returns the plugin client's storage.Locator, or an
// Unimplemented error when it has none.
func (c *Client) locator(verb string) (storage.Locator, error) {
	if l, ok := c.Provider.(storage.Locator); ok {
		return l, nil
	}
	return nil, &storage.Error{Code: storage.Unimplemented, Message: verb + " at a location: the plugin client does not support this optional call"}
}

// GetAt opens the object at loc in the plugin process (storage.Locator).
// The plugin is asked only when its Describe declared
// Capabilities.Locations; otherwise, as with a plugin built with an SDK
// that predates the call, the answer is an Unimplemented *storage.Error.
func (c *Client) GetAt(ctx context.Context, loc storage.Location, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	l, err := c.locator("get")
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return l.GetAt(ctx, loc, opts)
}

// StatAt returns the attributes of the object at loc (storage.Locator);
// Unimplemented, without asking, from a plugin that did not declare
// Capabilities.Locations.
func (c *Client) StatAt(ctx context.Context, loc storage.Location) (storage.ObjectInfo, error) {
	l, err := c.locator("stat")
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return l.StatAt(ctx, loc)
}

// DeleteAt removes the object at loc (storage.Locator); Unimplemented,
// without asking, from a plugin that did not declare
// Capabilities.Locations.
func (c *Client) DeleteAt(ctx context.Context, loc storage.Location) error {
	l, err := c.locator("delete")
	if err != nil {
		return err
	}
	return l.DeleteAt(ctx, loc)
}

// ErrLaunch is wrapped by every error Launch returns.
var ErrLaunch = errors.New("plugin launch failed")

// Launch starts the plugin binary, completes the go-plugin handshake over
// gRPC with automatic mutual TLS, and returns a client for it. The caller
// must Close the client; if ctx ends first, the process is killed.
func Launch(ctx context.Context, cfg LaunchConfig) (*Client, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("%w: no plugin path given", ErrLaunch)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	cmd := exec.Command(cfg.Path, cfg.Args...)
	cmd.Env = append(cmd.Env, cfg.Env...)
	pcfg := &plugin.ClientConfig{
		HandshakeConfig:  Handshake(),
		VersionedPlugins: VersionedPlugins(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
		AutoMTLS:         true,
		StartTimeout:     timeout,
		SkipHostEnv:      true,
		// What the plugin prints on stdout/stderr after Serve reaches the
		// host's log (go-plugin discards it by default).
		SyncStdout: logger.StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Info}),
		SyncStderr: logger.StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
		GRPCDialOptions: []grpc.DialOption{
			grpc.WithInitialWindowSize(windowSize),
			grpc.WithInitialConnWindowSize(windowSize),
		},
	}
	if len(cfg.SHA256) > 0 {
		pcfg.SecureConfig = &plugin.SecureConfig{Checksum: cfg.SHA256, Hash: sha256.New()}
	}
	pc := plugin.NewClient(pcfg)
	stop := context.AfterFunc(ctx, pc.Kill)
	defer stop()
	rpc, err := pc.Client()
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("%w: %s: %w", ErrLaunch, cfg.Path, err)
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("%w: %s: dispensing %q: %w", ErrLaunch, cfg.Path, PluginName, err)
	}
	p, ok := raw.(storage.Provider)
	if !ok {
		pc.Kill()
		return nil, fmt.Errorf("%w: %s: plugin %q is not a storage provider", ErrLaunch, cfg.Path, PluginName)
	}
	if ctx.Err() != nil {
		pc.Kill()
		return nil, fmt.Errorf("%w: %s: %w", ErrLaunch, cfg.Path, ctx.Err())
	}
	return &Client{Provider: p, pc: pc}, nil
}

// Close stops the plugin process (gracefully, then by force) and waits for it.
func (c *Client) Close() error {
	c.pc.Kill()
	return nil
}

// Exited reports whether the plugin process has ended.
func (c *Client) Exited() bool { return c.pc.Exited() }

// Pid returns the plugin process id, or 0 if it is not running.
func (c *Client) Pid() int {
	if rc := c.pc.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// Ping checks the gRPC connection to the plugin is alive.
func (c *Client) Ping() error {
	rpc, err := c.pc.Client()
	if err != nil {
		return err
	}
	return rpc.Ping()
}

// GuardedByContract marks the client as storage.Guarded: the plugin's
// server runs the provider through storage.Guard, so storage.Guard leaves
// the client as it is and a bad upload reaches the plugin to be refused
// there.
func (c *Client) GuardedByContract() {}
