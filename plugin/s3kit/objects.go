package s3kit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/magicads/r2storage/shared/storage"
)

// Messages the admin sees after Test connection. The read-back failure is
// worded exactly as the product's troubleshooting table has it.
const (
	MsgReadBack = "Upload succeeded but the object could not be read back"
	MsgMismatch = "Upload succeeded but the object read back did not match what was uploaded"
)

// ProbeTimeout bounds each step of a connection test.
const ProbeTimeout = 20 * time.Second

// ProbeDir is the folder, under the key prefix, that probe objects use.
const ProbeDir = ".magicads-probe"

// AbortAfterFailTimeout bounds the search for a failed Put's incomplete
// upload.
const AbortAfterFailTimeout = 15 * time.Second

// Objects is one applied provider configuration seen as the storage
// contract's object calls: the bucket, the key prefix and how results are
// named. The providers build one per configuration and keep only what
// differs between them (settings, validation, error wording).
type Objects struct {
	// Bucket is the bucket the objects are in, with its clients.
	Bucket Bucket
	// KeyPrefix is the configured key prefix, without a trailing slash;
	// "" is none.
	KeyPrefix string
	// PublicURL is the public base URL objects are served from.
	PublicURL string
	// BucketID is the bucket's identity (storage.ObjectInfo.Bucket).
	BucketID string
	// ProviderID names the provider in messages.
	ProviderID string
	// CacheControl is set on every object Put stores.
	CacheControl string
	// Now returns the current time; nil is time.Now.
	Now func() time.Time
	// Log receives the logs; nil discards them.
	Log hclog.Logger
}

func (o *Objects) log() hclog.Logger {
	if o.Log == nil {
		return hclog.NewNullLogger()
	}
	return o.Log
}

func (o *Objects) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// ObjectKey maps a caller key to the bucket key under prefix.
func ObjectKey(prefix, key string) (string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", err
	}
	full := key
	if prefix != "" {
		full = prefix + "/" + key
	}
	if len(full) > storage.MaxKeyBytes {
		return "", &storage.Error{Code: storage.InvalidArgument, Message: fmt.Sprintf("invalid key: with the key prefix it is %d bytes, over the 1024-byte limit", len(full))}
	}
	return full, nil
}

// KeyPrefix is what ObjectKey puts before a key: "<prefix>/", or "" without
// a key prefix (storage.ConfigureResult.KeyPrefix).
func KeyPrefix(prefix string) string {
	if prefix == "" {
		return ""
	}
	return prefix + "/"
}

// CallerKey is the key Get would take for a bucket key: without the key
// prefix when it has it, else the bucket key itself.
func CallerKey(prefix, objectKey string) string {
	if k, ok := strings.CutPrefix(objectKey, KeyPrefix(prefix)); ok && k != "" {
		return k
	}
	return objectKey
}

// ObjectKey maps a caller key to the bucket key under the key prefix.
func (o *Objects) ObjectKey(key string) (string, error) { return ObjectKey(o.KeyPrefix, key) }

// info is the ObjectInfo of the object at objectKey, asked for as key; the
// other fields are the caller's to fill.
func (o *Objects) info(key, objectKey string) storage.ObjectInfo {
	return storage.ObjectInfo{
		Key:       key,
		URL:       storage.PublicURL(o.PublicURL, objectKey),
		StoredKey: objectKey,
		Bucket:    o.BucketID,
	}
}

// objectInfo is the ObjectInfo of obj, stored at objectKey and asked for
// as key.
func (o *Objects) objectInfo(key, objectKey string, obj Object) storage.ObjectInfo {
	info := o.info(key, objectKey)
	info.Size = obj.Size
	info.ContentType = obj.ContentType
	info.ETag = obj.ETag
	info.ModTime = obj.ModTime
	return info
}

// Put streams r to the bucket under the key prefix. Parts are sized and
// bounded so memory does not grow with the object; a failed multipart
// upload is aborted, so a failed Put leaves nothing behind (abortPage is
// the page size the search for it lists with, 0 is AbortListPageSize).
// The ObjectInfo says where the object is: StoredKey is its full bucket
// key and Bucket the bucket's identity.
func (o *Objects) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions, abortPage int32) (storage.ObjectInfo, error) {
	objectKey, err := o.ObjectKey(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	if opts.Size > MaxObjectSize {
		return storage.ObjectInfo{}, storage.Errorf(storage.InvalidArgument, "put %s: %d bytes is over the %d-byte limit", key, opts.Size, MaxObjectSize)
	}
	contentType := opts.ContentType
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	res, err := o.Bucket.Put(ctx, key, objectKey, Upload{Body: r, Size: opts.Size, SHA256: opts.SHA256, ContentType: contentType, CacheControl: o.CacheControl})
	if err != nil {
		o.log().Warn("put failed", "key", objectKey, "error", err)
		if res.MayHaveUpload {
			// A multipart upload may exist that the transfer manager could
			// not abort (cut while it was being created, or its abort
			// failed): look for it by key, so a failed Put leaves nothing.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), AbortAfterFailTimeout)
			if n, aerr := o.AbortKey(actx, key, objectKey, abortPage); aerr != nil {
				o.log().Warn("put failed; its incomplete upload could not be aborted", "key", objectKey, "error", aerr)
			} else if n > 0 {
				o.log().Info("put failed; aborted its incomplete upload", "key", objectKey, "uploads", n)
			}
			cancel()
		}
		return storage.ObjectInfo{}, err
	}
	info := o.info(key, objectKey)
	info.Size = res.Object.Size
	info.ContentType = res.Object.ContentType
	info.ETag = res.Object.ETag
	info.ModTime = o.now().UTC()
	return info, nil
}

// Get opens the object at key under the key prefix, or the byte range
// opts selects.
func (o *Objects) Get(ctx context.Context, key string, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	objectKey, err := o.ObjectKey(key)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return o.get(ctx, key, objectKey, opts)
}

func (o *Objects) get(ctx context.Context, key, objectKey string, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	body, obj, err := o.Bucket.Get(ctx, key, objectKey, opts)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return body, o.objectInfo(key, objectKey, obj), nil
}

// Stat returns the attributes of the object at key under the key prefix.
func (o *Objects) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	objectKey, err := o.ObjectKey(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return o.stat(ctx, key, objectKey)
}

func (o *Objects) stat(ctx context.Context, key, objectKey string) (storage.ObjectInfo, error) {
	obj, err := o.Bucket.Stat(ctx, key, objectKey)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return o.objectInfo(key, objectKey, obj), nil
}

// Delete removes the object at key under the key prefix; a missing object
// is not an error.
func (o *Objects) Delete(ctx context.Context, key string) error {
	objectKey, err := o.ObjectKey(key)
	if err != nil {
		return err
	}
	return o.Bucket.Delete(ctx, key, objectKey)
}

// locate checks that loc is in this bucket. A Location
// storage.ValidateLocation refuses gives InvalidArgument; one in another
// bucket gives FailedPrecondition, naming both.
func (o *Objects) locate(op string, loc storage.Location) error {
	if err := storage.ValidateLocation(loc); err != nil {
		return err
	}
	if loc.Bucket != o.BucketID {
		return storage.Errorf(storage.FailedPrecondition,
			"%s %s: the object is in bucket %s, but %s is configured for bucket %s; nothing was done (configure bucket %s again to reach it)",
			op, loc.Key, loc.Bucket, o.ProviderID, o.BucketID, loc.Bucket)
	}
	return nil
}

// GetAt opens the object at loc.Key in the bucket, or the byte range opts
// selects: the key is the full bucket key, and no key prefix is added, so
// an object stays reachable after the key prefix changed.
func (o *Objects) GetAt(ctx context.Context, loc storage.Location, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	if err := o.locate("get", loc); err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return o.get(ctx, CallerKey(o.KeyPrefix, loc.Key), loc.Key, opts)
}

// StatAt returns the attributes of the object at loc.Key in the bucket
// (no key prefix added).
func (o *Objects) StatAt(ctx context.Context, loc storage.Location) (storage.ObjectInfo, error) {
	if err := o.locate("stat", loc); err != nil {
		return storage.ObjectInfo{}, err
	}
	return o.stat(ctx, CallerKey(o.KeyPrefix, loc.Key), loc.Key)
}

// DeleteAt removes the object at loc.Key in the bucket (no key prefix
// added); a missing object is not an error.
func (o *Objects) DeleteAt(ctx context.Context, loc storage.Location) error {
	if err := o.locate("delete", loc); err != nil {
		return err
	}
	return o.Bucket.Delete(ctx, loc.Key, loc.Key)
}

// AbortKey aborts the incomplete uploads whose bucket key is objectKey,
// asked for as key (AbortKey); page 0 is AbortListPageSize.
func (o *Objects) AbortKey(ctx context.Context, key, objectKey string, page int32) (int, error) {
	return AbortKey(ctx, o.Bucket.Client, o.Bucket.Name, key, objectKey, page, o.Bucket.toErr)
}

// AbortUploads aborts every incomplete multipart upload of each key (keys
// already checked with storage.ValidateAbortKeys): the uploads whose
// bucket key is exactly the key under the key prefix. All keys are mapped
// before anything is aborted; it stops at the first failure, with the
// count so far. page 0 is AbortListPageSize.
func (o *Objects) AbortUploads(ctx context.Context, keys []string, page int32) (int, error) {
	objectKeys := make([]string, len(keys))
	for i, k := range keys {
		var err error
		if objectKeys[i], err = o.ObjectKey(k); err != nil {
			return 0, err
		}
	}
	total := 0
	for i, objectKey := range objectKeys {
		n, err := o.AbortKey(ctx, keys[i], objectKey, page)
		total += n
		if err != nil {
			o.log().Warn("abort uploads failed", "key", objectKey, "aborted", total, "error", err)
			return total, err
		}
	}
	if total > 0 {
		o.log().Info("aborted incomplete uploads", "uploads", total, "keys", len(keys))
	}
	return total, nil
}

// ProbeWording is how a provider words its connection test's failures.
type ProbeWording struct {
	// Cause names what went wrong and what to check, never echoing a secret.
	Cause func(err error) string
	// DeleteFix ends the message when the probe could not be deleted: what
	// permission to give.
	DeleteFix string
}

// TestConnection uploads a small probe object under the key prefix, reads
// it back, compares it and deletes it. The probe is deleted whatever
// happened after the upload. A failure names its step and cause, worded
// by w.
func (o *Objects) TestConnection(ctx context.Context, w ProbeWording) (storage.TestResult, error) {
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return storage.TestResult{}, fmt.Errorf("test connection: random probe name: %w", err)
	}
	probeKey := ProbeDir + "/" + hex.EncodeToString(rnd[:]) + ".txt"
	objectKey, err := o.ObjectKey(probeKey)
	if err != nil {
		return storage.TestResult{Step: storage.StepConfig, Message: "Connection failed: " + err.Error()}, nil
	}
	body := []byte(fmt.Sprintf("MagicAds connection test %s %s\n", o.now().UTC().Format(time.RFC3339Nano), hex.EncodeToString(rnd[:])))
	res := storage.TestResult{ProbeKey: probeKey}

	out := o.Bucket.Probe(ctx, objectKey, body, ProbeTimeout)
	if err := out.UploadErr; err != nil {
		res.Step = storage.StepUpload
		res.Message = "Connection failed: " + w.Cause(err) + "."
		o.log().Warn("test connection failed", "step", res.Step, "bucket", o.Bucket.Name, "error", o.Bucket.toErr("upload probe", "", err))
		return res, nil
	}
	readErr, mismatch, delErr := out.ReadErr, out.Mismatch, out.DeleteErr
	if delErr != nil {
		o.log().Warn("test connection could not delete its probe object", "key", objectKey, "error", o.Bucket.toErr("delete probe", "", delErr))
	}
	switch {
	case readErr != nil:
		res.Step = storage.StepRead
		res.Message = MsgReadBack
		o.log().Warn("test connection failed", "step", res.Step, "bucket", o.Bucket.Name, "error", o.Bucket.toErr("read probe", "", readErr))
	case mismatch:
		res.Step = storage.StepRead
		res.Message = MsgMismatch
	case delErr != nil:
		res.Step = storage.StepDelete
		res.Message = "Upload and read back succeeded but the probe object could not be deleted: " + w.Cause(delErr) + ". " + w.DeleteFix
	default:
		res.OK = true
		res.Step = storage.StepDelete
		res.Message = fmt.Sprintf("Connection successful: a probe object was uploaded to bucket %q, read back and deleted.", o.Bucket.Name)
	}
	return res, nil
}
