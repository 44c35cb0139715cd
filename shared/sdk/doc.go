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
// storage.UploadAborter, Capabilities.Locations exactly when it
// implements storage.Locator (GetAt, StatAt, DeleteAt), and
// Capabilities.Listing exactly when it implements storage.Lister (List,
// ListUploads); the host-side
// client keeps the plugin's Describe answer and makes an optional call only
// when it was declared, otherwise returning an Unimplemented
// *storage.Error without asking the plugin. Fields added to the protocol
// (ObjectInfo.StoredKey and Bucket, ConfigureResult.Bucket and KeyPrefix)
// read as "" from a plugin built before them.
package sdk
