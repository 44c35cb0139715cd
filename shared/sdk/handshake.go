package sdk

import (
	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the version of the storage-provider protocol this
// package speaks. It changes only when the gRPC service changes incompatibly.
const ProtocolVersion = 1

// PluginName is the name the storage provider is dispensed under.
const PluginName = "storage"

// ChunkSize is the largest number of object bytes sent in one gRPC message,
// well under gRPC's 4 MiB default message limit.
const ChunkSize = 1 << 20

const (
	magicCookieKey   = "MAGICADS_PLUGIN_MAGIC_COOKIE"
	magicCookieValue = "7b4d3c1e-magicads-storage-provider"
)

// Handshake returns the go-plugin handshake shared by the host and every
// storage-provider plugin. It is a UX feature, not a security one: it stops a
// plugin binary run by hand from waiting forever.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   magicCookieKey,
		MagicCookieValue: magicCookieValue,
	}
}

// VersionedPlugins returns the plugin sets by protocol version. The host
// passes nil for p; a plugin passes its provider.
func VersionedPlugins(p Provider) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		ProtocolVersion: {PluginName: &GRPCPlugin{Impl: p}},
	}
}

// windowSize is the gRPC flow-control window, per stream and per connection.
// gRPC's 64 KiB default with BDP probing stalls a 1 MiB-chunk stream on a
// local socket; a fixed window of a few chunks keeps the pipe full while
// bounding what either side buffers.
const windowSize = 4 * ChunkSize
