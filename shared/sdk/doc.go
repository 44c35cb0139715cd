// Package sdk is the go-plugin glue of the storage-provider contract.
//
// A provider author writes a storage.Provider and a tiny main:
//
//	func main() { sdk.Serve(myprovider.New()) }
//
// The host starts the binary with Launch and uses the returned *Client as a
// storage.Provider. Between them runs the gRPC service in shared/storagepb:
// object bytes travel in chunks of at most ChunkSize, errors keep their
// storage.ErrorCode, and a put only writes an object once the host commits it.
//
// Optional calls are negotiated, so plugins and hosts built with different
// SDK versions keep working together. The plugin server declares
// Capabilities.AbortUploads exactly when the provider implements
// storage.UploadAborter; the host-side client keeps the plugin's Describe
// answer and calls AbortUploads only when it was declared, otherwise
// returning an Unimplemented *storage.Error without asking the plugin.
package sdk
