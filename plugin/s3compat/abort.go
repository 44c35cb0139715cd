package s3compat

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/magicads/r2storage/shared/storage"
)

// abortListPageSize is how many uploads one ListMultipartUploads page asks
// for: S3's maximum.
const abortListPageSize = 1000

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

// abortKey aborts the incomplete uploads whose bucket key is objectKey.
//
// It lists the uploads under the prefix objectKey. S3 lists uploads sorted
// by key, and objectKey is the smallest key under its own prefix, so its
// uploads come first, before those of longer keys. When a page holds only
// uploads of objectKey and more follow, the listing starts over once they
// are aborted: the aborted uploads are gone from it. No listing markers are
// used, since a marker names an upload and some S3 servers refuse one that
// was aborted (or, like versitygw, any marker inside a key's uploads).
func (p *Provider) abortKey(ctx context.Context, c *conn, key, objectKey string) (int, error) {
	page := p.abortListPage
	if page <= 0 {
		page = abortListPageSize
	}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(c.settings.Bucket), Prefix: aws.String(objectKey), MaxUploads: aws.Int32(page)}
	aborted := 0
	for {
		out, err := c.s3.ListMultipartUploads(ctx, in)
		if err != nil {
			return aborted, toStorageError("abort uploads: listing the uploads of", key, err)
		}
		onlyThisKey, progress := true, false
		for _, u := range out.Uploads {
			if aws.ToString(u.Key) != objectKey {
				onlyThisKey = false // a longer key under the same prefix
				continue
			}
			_, err := c.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket: aws.String(c.settings.Bucket), Key: aws.String(objectKey), UploadId: u.UploadId,
			})
			if err != nil {
				serr := toStorageError("abort uploads: aborting an upload of", key, err)
				if storage.IsNotFound(serr) {
					continue // completed or aborted meanwhile: nothing left to abort
				}
				return aborted, serr
			}
			aborted++
			progress = true
		}
		if !aws.ToBool(out.IsTruncated) || !onlyThisKey {
			return aborted, nil
		}
		if !progress {
			return aborted, &storage.Error{Code: storage.Unavailable, Message: fmt.Sprintf("abort uploads %s: the bucket still lists uploads that are already gone; aborted %d, try again later", key, aborted)}
		}
	}
}
