package sdk

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/magicads/r2storage/shared/storage"
	"github.com/magicads/r2storage/shared/storagepb"
)

// Provider is an alias of storage.Provider, for readability at call sites.
type Provider = storage.Provider

// GRPCPlugin is the go-plugin plugin.GRPCPlugin of the storage contract.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the provider served on the plugin side; nil on the host side.
	Impl Provider
}

// GRPCServer registers the provider's gRPC service on the plugin side.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	storagepb.RegisterStorageProviderServer(s, newServer(p.Impl))
	return nil
}

// GRPCClient returns the host-side storage.Provider talking to the plugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &rpcClient{c: storagepb.NewStorageProviderClient(c)}, nil
}
