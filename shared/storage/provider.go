package storage

import (
	"context"
	"io"
	"time"
)

// Provider is the interface the host uses for every storage provider.
type Provider interface {
	// Describe returns the provider's identity and capabilities. It
	// answers before Configure too; see Capabilities for what may change
	// with the settings.
	Describe(ctx context.Context) (Info, error)
	// ValidateSettings checks settings without applying them. It returns the
	// field-level problems found, or an empty slice when the settings are valid.
	ValidateSettings(ctx context.Context, s Settings) ([]FieldError, error)
	// Configure applies settings and returns the public base URL objects are
	// served from ("" when the provider has none). Invalid settings give an
	// *Error with code InvalidSettings and its Fields set. The host may
	// call it again, with other settings, at any time.
	//
	// It need not touch the network. A provider that does check the
	// bucket and finds it missing fails with FailedPrecondition, its
	// message naming the bucket; one that does not accepts the settings,
	// and then every call on objects (Put, Get, Stat, Delete, the Locator
	// and UploadAborter calls) fails with FailedPrecondition naming the
	// bucket, never NotFound (the objects are out of reach, not gone: a
	// host must not forget them), and Delete does not succeed.
	// TestConnection reports it with OK = false and a message naming the
	// bucket.
	Configure(ctx context.Context, s Settings) (ConfigureResult, error)
	// TestConnection uploads a probe object, reads it back, compares it and
	// deletes it, using the configured settings. A failed probe is reported in
	// the result, not as an error; the error is for the call itself failing.
	// A bucket that does not exist is such a failure: OK = false, and the
	// Message names the bucket.
	TestConnection(ctx context.Context) (TestResult, error)
	// Put streams r into the object at key, whole or not at all. A failed
	// Put leaves no new object (and an existing one unchanged); only when it
	// fails with Canceled or Unavailable after the content was committed may
	// the object exist.
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error)
	// Get opens the object at key for reading, or the part opts selects
	// (see GetOptions for the range rules). The caller closes the reader.
	Get(ctx context.Context, key string, opts GetOptions) (io.ReadCloser, ObjectInfo, error)
	// Stat returns the attributes of the object at key.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// Delete removes the object at key. Deleting a missing key succeeds.
	Delete(ctx context.Context, key string) error
	// Health reports whether the provider can serve, without touching the
	// network. It answers before Configure too, without error: Configured
	// is false until a Configure succeeded (or true for a provider that
	// works with its defaults), and OK says whether the provider itself is
	// sound, not whether its bucket answers (TestConnection says that).
	Health(ctx context.Context) (Health, error)
}

// UploadAborter is implemented by providers that can abort the incomplete
// uploads (e.g. S3 multipart uploads) they started for given keys.
//
// It is optional: a provider says it has it with Capabilities.AbortUploads.
// The host calls it after a crash, for the keys whose puts were in flight,
// so the storage does not keep (and bill for) their abandoned parts.
type UploadAborter interface {
	// AbortUploads aborts every incomplete upload of each key (keys as
	// given to Put, without any provider prefix) and returns how many it
	// aborted. Stored objects are never touched. Keys with nothing pending
	// are not an error. It takes at most MaxAbortKeys keys; a bad key or
	// too many keys give InvalidArgument (see ValidateAbortKeys) and
	// nothing is aborted. It is bounded by ctx. On error,
	// uploads already aborted stay aborted and the count may be short of
	// them; calling again with the same keys is safe. A provider reached
	// through a plugin that lacks the call returns Unimplemented.
	AbortUploads(ctx context.Context, keys []string) (int, error)
}

// Locator is implemented by providers that can address an object by where
// it was stored (the bucket and full key Put reported in ObjectInfo), not
// by the key given to Put under the provider's current settings. The host
// uses it so a result stays reachable after the admin changes the key
// prefix, and so a result whose bucket is no longer configured is never
// read or deleted in the new one by mistake.
//
// It is optional: a provider says it has it with Capabilities.Locations. A
// provider reached through a plugin that lacks it returns Unimplemented.
//
// A Location is used as given: its Key is the full key in the bucket, and
// no key prefix is added to it. A Location that ValidateLocation refuses
// gives InvalidArgument. The ObjectInfo of GetAt and StatAt has StoredKey
// and Bucket of loc, and Key is loc.Key without the provider's current key
// prefix when it starts with it (the key Get would take), else loc.Key.
type Locator interface {
	// GetAt opens the object at loc for reading, as Get.
	GetAt(ctx context.Context, loc Location, opts GetOptions) (io.ReadCloser, ObjectInfo, error)
	// StatAt returns the attributes of the object at loc, as Stat.
	StatAt(ctx context.Context, loc Location) (ObjectInfo, error)
	// DeleteAt removes the object at loc, as Delete: deleting a missing
	// object succeeds.
	DeleteAt(ctx context.Context, loc Location) error
}

// Location is where an object was stored: what Put reported in
// ObjectInfo.Bucket and ObjectInfo.StoredKey.
//
// A provider refuses a Location whose Bucket is not the bucket it is
// configured for now with FailedPrecondition (naming both), and touches
// nothing: the object is out of its reach, not missing.
type Location struct {
	// Bucket is the identity of the bucket (ObjectInfo.Bucket).
	Bucket string
	// Key is the object's full key in that bucket (ObjectInfo.StoredKey).
	Key string
}

// MaxAbortKeys is the most keys one AbortUploads call takes. At 1024 bytes a
// key, a full call stays well under gRPC's 4 MiB message limit.
const MaxAbortKeys = 1000

// Settings are a provider's settings as the JSON object its settings schema
// describes (decoded with encoding/json).
type Settings map[string]any

// Info identifies a provider.
type Info struct {
	ID           string
	Name         string
	Version      string
	Capabilities Capabilities
	// Contract is the revision of the contract's rules the provider was
	// built against (ContractRevision when built with this package). A
	// provider leaves it 0: Guard fills it in, and over the plugin the
	// plugin-side SDK reports its own, so a host and the conformance suite
	// can hold a plugin built with an older SDK to the rules of its time.
	Contract int
}

// ContractRevision is the revision of the contract's rules this package
// states. Revisions:
//
//   - 0: plugins built before revisions were numbered (before the rules
//     below were settled);
//   - 2: the end-of-object read rules of GetOptions, a missing bucket
//     answered with FailedPrecondition naming it (never NotFound, Delete
//     never succeeding), and the public URL including the key prefix.
//
// The conformance suite checks a provider against the rules of the
// revision it reports. (The read rules are applied for every revision by
// ReadAtEnd, so even a revision-0 plugin passes them.)
const ContractRevision = 2

// Capabilities say what a provider can do beyond the required operations.
//
// They are fixed for the life of the provider (of the plugin process):
// Describe reports the same ones before Configure, after it and after any
// later Configure, except PublicURLs, which may follow the settings (a
// public base URL set or cleared). A host may read them once.
type Capabilities struct {
	// PublicURLs is true when objects are served from a public base URL.
	PublicURLs bool
	// RangeReads is true when Get honours GetOptions.Offset and Length.
	RangeReads bool
	// MaxObjectSize is the largest object Put accepts; 0 means no stated limit.
	MaxObjectSize int64
	// AbortUploads is true when the provider implements UploadAborter.
	AbortUploads bool
	// Locations is true when the provider implements Locator and reports
	// ObjectInfo.Bucket and ObjectInfo.StoredKey.
	Locations bool
	// Listing is true when the provider implements Lister: it lists the
	// objects and the incomplete uploads of its bucket under its key
	// prefix.
	Listing bool
}

// ConfigureResult is what Configure reports back.
type ConfigureResult struct {
	// PublicBaseURL is the base URL objects are served from, or "". An
	// object's public URL is PublicURL(PublicBaseURL, its StoredKey): the
	// key prefix is part of it (see ObjectInfo.URL).
	PublicBaseURL string
	// Bucket is the identity of the bucket new objects go to: stable for
	// one bucket, different for another (R2: "r2:<account>/<bucket>", or
	// "<endpoint>/<bucket>" with a custom endpoint), never a secret. ""
	// when the provider does not say (a plugin built before Locations).
	Bucket string
	// KeyPrefix is what the provider puts before a key given to Put to
	// make the key it stores: StoredKey = KeyPrefix + key ("" for none;
	// R2 with key prefix "media" gives "media/"). The host uses it once, to
	// record where results uploaded by a host that predates Locations are.
	KeyPrefix string
}

// Test connection steps, in the order they run.
const (
	StepConfig = "config"
	StepUpload = "upload"
	StepRead   = "read"
	StepDelete = "delete"
)

// TestResult is the outcome of TestConnection.
type TestResult struct {
	// OK is true when every step succeeded.
	OK bool
	// Step is the step that failed, or StepDelete (the last) when OK.
	Step string
	// Message is shown to the admin as is: the cause in plain words.
	Message string
	// ProbeKey is the key the probe used, so callers can check it is gone.
	ProbeKey string
}

// PutOptions describe an object being written.
type PutOptions struct {
	// ContentType is stored with the object; "" means application/octet-stream.
	ContentType string
	// Size is the number of bytes r yields, or -1 when unknown.
	Size int64
	// SHA256 is the content's digest when the caller already knows it. A
	// provider must refuse (InvalidArgument) and write nothing when the
	// content does not match; Guard (which sdk.Serve and the conformance
	// suite run every provider through) does the check, failing the read
	// that would end the content, so a provider that reads to io.EOF before
	// it commits needs no check of its own. nil skips the check.
	SHA256 []byte
}

// GetOptions select the part of an object to read. A provider without
// Capabilities.RangeReads may ignore them and return the whole object; one
// with it follows these rules, the same in every provider:
//
//   - Offset 0 and Length -1 read the whole object, also an empty one;
//   - Offset equal to the object's size (the end) is an empty read that
//     succeeds, with the object's ObjectInfo, whatever Length is;
//   - Offset past the size, or negative, gives InvalidArgument (Guard
//     refuses a negative one before the provider sees it);
//   - a Length running past the end reads to the end.
//
// ObjectInfo.Size is always the full object's size, even for a part.
type GetOptions struct {
	// Offset is the first byte to read, from 0 to the object's size.
	Offset int64
	// Length is the number of bytes to read from Offset; -1 (or any
	// negative) reads to the end, 0 reads nothing.
	Length int64
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	// Key is the key the caller used (without any provider prefix).
	Key string
	// Size is the object's full size in bytes.
	Size int64
	// ContentType is the stored content type; a Put without one stores
	// a default such as application/octet-stream.
	ContentType string
	// ETag is an opaque, never empty tag of the stored version of the
	// object: Put, Stat and Get (and StatAt, GetAt) report the same tag
	// for the same version, and it changes when the content changes
	// (rewriting the same content may or may not change it). Nothing
	// else about its form (quotes, an MD5, a part count) is part of the
	// contract, so compare tags only with each other.
	ETag string
	// ModTime is when the stored version was written.
	ModTime time.Time
	// URL is the object's public URL, or "" when the provider has none.
	// It includes the key prefix: it is PublicURL(PublicBaseURL,
	// StoredKey), with StoredKey = ConfigureResult.KeyPrefix + Key, so the
	// host can rebuild it from what Configure and Put reported.
	URL string
	// StoredKey is the object's full key in its bucket, as stored (any
	// prefix of the provider's included); "" when the provider does not
	// say (a plugin built before Locations).
	StoredKey string
	// Bucket is the identity of the bucket the object is in (see
	// ConfigureResult.Bucket); "" when the provider does not say.
	Bucket string
}

// Health is a provider's own view of whether it can serve.
type Health struct {
	OK         bool
	Configured bool
	Message    string
}
