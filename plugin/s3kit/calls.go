package s3kit

import (
	"context"
	"io"

	"github.com/magicads/r2storage/shared/storage"
)

// Calls are the storage contract's object calls (storage.Provider's Put,
// Get, Stat and Delete, storage.Locator and storage.UploadAborter) made on
// a provider's current configuration. A provider embeds them.
type Calls struct {
	// Current returns the applied configuration's object calls, or the
	// provider's error when it is not configured.
	Current func() (*Objects, error)
	// AbortPage returns the page size incomplete uploads are listed with;
	// nil or 0 is AbortListPageSize.
	AbortPage func() int32
}

func (c Calls) abortPage() int32 {
	if c.AbortPage == nil {
		return 0
	}
	return c.AbortPage()
}

// Put streams r to the bucket under the key prefix (Objects.Put). The
// ObjectInfo says where the object is: StoredKey is its full bucket key
// and Bucket the bucket's identity.
func (c Calls) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	o, err := c.Current()
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return o.Put(ctx, key, r, opts, c.abortPage())
}

// Get opens the object for reading, or the byte range opts selects.
func (c Calls) Get(ctx context.Context, key string, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	o, err := c.Current()
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return o.Get(ctx, key, opts)
}

// Stat returns the object's attributes.
func (c Calls) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	o, err := c.Current()
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return o.Stat(ctx, key)
}

// Delete removes the object; a missing object is not an error.
func (c Calls) Delete(ctx context.Context, key string) error {
	o, err := c.Current()
	if err != nil {
		return err
	}
	return o.Delete(ctx, key)
}

// locate checks loc and returns the current configuration. A Location
// storage.ValidateLocation refuses gives InvalidArgument, before the
// configuration is looked at; Objects refuses one in another bucket.
func (c Calls) locate(loc storage.Location) (*Objects, error) {
	if err := storage.ValidateLocation(loc); err != nil {
		return nil, err
	}
	return c.Current()
}

// GetAt opens the object at loc.Key in the bucket, or the byte range opts
// selects: the key is the full bucket key, and no key prefix is added, so
// an object stays reachable after the key prefix changed.
func (c Calls) GetAt(ctx context.Context, loc storage.Location, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	o, err := c.locate(loc)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return o.GetAt(ctx, loc, opts)
}

// StatAt returns the attributes of the object at loc.Key in the bucket
// (no key prefix added).
func (c Calls) StatAt(ctx context.Context, loc storage.Location) (storage.ObjectInfo, error) {
	o, err := c.locate(loc)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return o.StatAt(ctx, loc)
}

// DeleteAt removes the object at loc.Key in the bucket (no key prefix
// added); a missing object is not an error.
func (c Calls) DeleteAt(ctx context.Context, loc storage.Location) error {
	o, err := c.locate(loc)
	if err != nil {
		return err
	}
	return o.DeleteAt(ctx, loc)
}

// AbortUploads aborts every incomplete multipart upload of each key: the
// uploads whose bucket key is exactly the key under the key prefix, as Put
// writes it (a longer key that merely starts with it is left alone). Stored
// objects are never touched. All keys are checked before anything is
// aborted; a bad key, one too long with the prefix, or more than
// storage.MaxAbortKeys keys give InvalidArgument. It stops at the first
// failure, with the count so far, and is bounded by ctx.
func (c Calls) AbortUploads(ctx context.Context, keys []string) (int, error) {
	if err := storage.ValidateAbortKeys(keys); err != nil {
		return 0, err
	}
	o, err := c.Current()
	if err != nil {
		return 0, err
	}
	return o.AbortUploads(ctx, keys, c.abortPage())
}
