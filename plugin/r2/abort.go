package r2

import (
	"context"

	"github.com/magicads/r2storage/plugin/s3kit"
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
	objectKeys := make([]string, len(keys))
	for i, k := range keys {
		if objectKeys[i], err = c.settings.objectKey(k); err != nil {
			return 0, err
		}
	}
	total := 0
	for i, objectKey := range objectKeys {
		n, err := p.abortKey(ctx, c, keys[i], objectKey)
		total += n
		if err != nil {
			p.log.Warn("abort uploads failed", "key", objectKey, "aborted", total, "error", err)
			return total, err
		}
	}
	if total > 0 {
		p.log.Info("aborted incomplete uploads", "uploads", total, "keys", len(keys))
	}
	return total, nil
}

// abortKey aborts the incomplete uploads whose bucket key is objectKey
// (s3kit.AbortKey).
func (p *Provider) abortKey(ctx context.Context, c *conn, key, objectKey string) (int, error) {
	return s3kit.AbortKey(ctx, c.s3, c.settings.Bucket, key, objectKey, p.abortListPage, toStorageError)
}
