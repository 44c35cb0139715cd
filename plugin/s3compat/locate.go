package s3compat

import (
	"context"
	"io"

	"github.com/magicads/r2storage/shared/storage"
)

var _ storage.Locator = (*Provider)(nil)

// locate checks loc and returns the current configuration. A Location
// storage.ValidateLocation refuses gives InvalidArgument, before the
// configuration is looked at; one in another bucket (another region, endpoint or
// bucket name: Settings.BucketID) gives FailedPrecondition, naming both
// (s3kit.Objects).
func (p *Provider) locate(loc storage.Location) (*conn, error) {
	if err := storage.ValidateLocation(loc); err != nil {
		return nil, err
	}
	return p.current()
}

// GetAt opens the object at loc.Key in the bucket, or the byte range opts
// selects: the key is the full bucket key, and no key prefix is added, so
// an object stays reachable after the key prefix changed.
func (p *Provider) GetAt(ctx context.Context, loc storage.Location, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	c, err := p.locate(loc)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return c.objects.GetAt(ctx, loc, opts)
}

// StatAt returns the attributes of the object at loc.Key in the bucket
// (no key prefix added).
func (p *Provider) StatAt(ctx context.Context, loc storage.Location) (storage.ObjectInfo, error) {
	c, err := p.locate(loc)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return c.objects.StatAt(ctx, loc)
}

// DeleteAt removes the object at loc.Key in the bucket (no key prefix
// added); a missing object is not an error.
func (p *Provider) DeleteAt(ctx context.Context, loc storage.Location) error {
	c, err := p.locate(loc)
	if err != nil {
		return err
	}
	return c.objects.DeleteAt(ctx, loc)
}
