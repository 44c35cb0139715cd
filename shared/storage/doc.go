// Package storage is the storage-provider contract of the MagicAds host.
//
// A provider (Cloudflare R2, S3, Wasabi, GCS, ...) implements Provider. The
// host calls it through a plugin process (see package sdk), but the interface
// is the same in-process and over gRPC, so a provider is written and tested as
// plain Go and run as a plugin with one line: sdk.Serve(provider).
//
// Rules every provider follows, checked by package conformance:
//   - keys are relative, slash-separated paths accepted by ValidateKey;
//     the provider maps them into its bucket (for example under a prefix);
//   - Put writes the whole object or nothing: a Put whose reader fails or whose
//     context is cancelled leaves no object behind;
//   - Delete of a missing key succeeds;
//   - errors are *Error values with a Code (see Code and IsRetryable), so the
//     host can decide between retry and give-up;
//   - a Get at an Offset equal to the object's size is an empty read with
//     the object's ObjectInfo; past it, InvalidArgument (GetOptions);
//   - Describe and Health answer before Configure, without error; Health
//     never touches the network (Provider.Health);
//   - capabilities stay the same across Configure calls, except
//     PublicURLs (Capabilities);
//   - an object's public URL includes the key prefix:
//     PublicURL(PublicBaseURL, KeyPrefix + key) (ObjectInfo.URL);
//   - ETag is an opaque, never empty tag of the stored version, the same
//     from Put, Stat and Get, that changes with the content
//     (ObjectInfo.ETag);
//   - a configured bucket that does not exist gives FailedPrecondition
//     naming the bucket on every object call, never NotFound, and a
//     failed TestConnection naming it (Provider.Configure).
//
// Beyond Provider, a provider may implement optional interfaces, each
// declared in Capabilities: UploadAborter (Capabilities.AbortUploads) aborts
// the incomplete uploads it started for given keys, which the host asks for
// after a crash; Locator (Capabilities.Locations) reads, stats and deletes
// an object by the Location Put reported (ObjectInfo.Bucket and
// ObjectInfo.StoredKey), whatever the key prefix is now, and refuses a
// Location in another bucket with FailedPrecondition. A caller checks the
// capability (or the Unimplemented code) before relying on one.
package storage
