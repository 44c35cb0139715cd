package s3kit

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/magicads/r2storage/shared/storage"
)

// AbortListPageSize is how many uploads one ListMultipartUploads page asks
// for: S3's (and R2's) maximum.
const AbortListPageSize = 1000

// ErrorMapper turns an S3 client error from operation op on key into the
// contract's typed error (ToStorageError, or a provider's refinement).
type ErrorMapper func(op, key string, err error) error

// AbortKey aborts the incomplete uploads in bucket whose bucket key is
// objectKey, asked for as key, and returns how many it aborted. page is
// the listing page size (0 is AbortListPageSize); toErr maps the client's
// errors (nil is ToStorageError).
//
// It lists the uploads under the prefix objectKey. S3 lists uploads sorted
// by key, and objectKey is the smallest key under its own prefix, so its
// uploads come first, before those of longer keys. When a page holds only
// uploads of objectKey and more follow, the listing starts over once they
// are aborted: the aborted uploads are gone from it. No listing markers are
// used, since a marker names an upload and some S3 servers refuse one that
// was aborted (or, like versitygw, any marker inside a key's uploads).
func AbortKey(ctx context.Context, client *s3.Client, bucket, key, objectKey string, page int32, toErr ErrorMapper) (int, error) {
	if page <= 0 {
		page = AbortListPageSize
	}
	if toErr == nil {
		toErr = ToStorageError
	}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(objectKey), MaxUploads: aws.Int32(page)}
	aborted := 0
	for {
		out, err := client.ListMultipartUploads(ctx, in)
		if err != nil {
			return aborted, toErr("abort uploads: listing the uploads of", key, err)
		}
		onlyThisKey, progress := true, false
		for _, u := range out.Uploads {
			if aws.ToString(u.Key) != objectKey {
				onlyThisKey = false // a longer key under the same prefix
				continue
			}
			_, err := client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket: aws.String(bucket), Key: aws.String(objectKey), UploadId: u.UploadId,
			})
			if err != nil {
				serr := toErr("abort uploads: aborting an upload of", key, err)
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
