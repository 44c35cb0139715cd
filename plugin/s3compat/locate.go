package s3compat

import (
	"context"
	"io"

	"github.com/magicads/r2storage/shared/storage"
)

var _ storage.Locator = (*Provider)(nil)

// locate checks loc and returns the current configuration when loc is in
// its bucket. A Location storage.ValidateLocation refuses gives
// InvalidArgument; one in another bucket (another region, endpoint or
// bucket name: Settings.BucketID) gives FailedPrecondition, naming both.
func (p *Provider) locate(op string, loc storage.Location) (*conn, error) {
	if err := storage.ValidateLocation(loc); err != nil {
		return nil, err
	}
	c, err := p.current()
	if err != nil {
		return nil, err
	}
	if loc.Bucket != c.bucketID {
		return nil, storage.Errorf(storage.FailedPrecondition,
			"%s %s: the object is in bucket %s, but s3-compatible is configured for bucket %s; nothing was done (configure bucket %s again to reach it)",
			op, loc.Key, loc.Bucket, c.bucketID, loc.Bucket)
	}
	return c, nil
}

// GetAt opens the object at loc.Key in the bucket, or the byte range opts
// selects: the key is the full bucket key, and no key prefix is added, so
// an object stays reachable after the key prefix changed.
func (p *Provider) GetAt(ctx context.Context, loc storage.Location, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	c, err := p.locate("get", loc)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return p.get(ctx, c, c.settings.callerKey(loc.Key), loc.Key, opts)
}

// StatAt returns the attributes of the object at loc.Key in the bucket
// (no key prefix added).
func (p *Provider) StatAt(ctx context.Context, loc storage.Location) (storage.ObjectInfo, error) {
	c, err := p.locate("stat", loc)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return p.stat(ctx, c, c.settings.callerKey(loc.Key), loc.Key)
}

// DeleteAt removes the object at loc.Key in the bucket (no key prefix
// added); a missing object is not an error.
func (p *Provider) DeleteAt(ctx context.Context, loc storage.Location) error {
	c, err := p.locate("delete", loc)
	if err != nil {
		return err
	}
	return p.del(ctx, c, loc.Key, loc.Key)
}
