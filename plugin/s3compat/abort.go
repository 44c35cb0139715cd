package s3compat

import (
	"context"

	"github.com/magicads/r2storage/shared/storage"
)

var _ storage.UploadAborter = (*Provider)(nil)

// AbortUploads aborts every incomplete multipart upload of each key: the
// uploads whose bucket key is exactly the key under the key prefix, as Put
// writes it (a longer key that merely starts with it is left alone). Stored
// objects are never touched. All keys are checked before anything is
// aborted; a bad key, one too long with the prefix, or more than
// storage.MaxAbortKeys keys give InvalidArgument. It stops at the first
// failure, with the count so far, and is bounded by ctx.
func (p *Provider) AbortUploads(ctx context.Context, keys []string) (int, error) {
	if err := storage.ValidateAbortKeys(keys); err != nil {
		return 0, err
	}
	c, err := p.current()
	if err != nil {
		return 0, err
	}
	return c.objects.AbortUploads(ctx, keys, p.abortListPage)
}
