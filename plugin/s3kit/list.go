package s3kit

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/magicads/r2storage/shared/storage"
)

// List returns a page of the objects under the key prefix whose key starts
// with opts.Prefix (storage.Lister). The cursor is S3's continuation token.
func (c Calls) List(ctx context.Context, opts storage.ListOptions) (storage.ListPage, error) {
	opts, err := storage.ValidateListOptions(opts)
	if err != nil {
		return storage.ListPage{}, err
	}
	o, err := c.Current()
	if err != nil {
		return storage.ListPage{}, err
	}
	return o.List(ctx, opts)
}

// ListUploads returns a page of the incomplete multipart uploads under the
// key prefix (storage.Lister).
func (c Calls) ListUploads(ctx context.Context, cursor string) (storage.UploadPage, error) {
	if err := storage.ValidateCursor("list uploads", cursor); err != nil {
		return storage.UploadPage{}, err
	}
	o, err := c.Current()
	if err != nil {
		return storage.UploadPage{}, err
	}
	return o.ListUploads(ctx, cursor)
}

// List returns a page of the objects under the key prefix whose key starts
// with opts.Prefix (opts already checked with storage.ValidateListOptions),
// with ListObjectsV2: the cursor is its continuation token. An object
// outside the key prefix is never listed.
func (o *Objects) List(ctx context.Context, opts storage.ListOptions) (storage.ListPage, error) {
	prefix := KeyPrefix(o.KeyPrefix)
	in := &s3.ListObjectsV2Input{Bucket: aws.String(o.Bucket.Name), Prefix: aws.String(prefix + opts.Prefix), MaxKeys: aws.Int32(int32(opts.Limit))}
	if opts.Cursor != "" {
		in.ContinuationToken = aws.String(opts.Cursor)
	}
	out, err := o.Bucket.Client.ListObjectsV2(ctx, in)
	if err != nil {
		return storage.ListPage{}, o.Bucket.toErr("list", prefix+opts.Prefix, err)
	}
	var page storage.ListPage
	for _, obj := range out.Contents {
		key := aws.ToString(obj.Key)
		if !strings.HasPrefix(key, prefix+opts.Prefix) || key == prefix {
			continue // not under the key prefix: never listed
		}
		if len(page.Objects) == opts.Limit {
			break
		}
		info := o.info(strings.TrimPrefix(key, prefix), key)
		info.URL = ""
		info.Size = aws.ToInt64(obj.Size)
		info.ETag = strings.Trim(aws.ToString(obj.ETag), `"`)
		if obj.LastModified != nil {
			info.ModTime = obj.LastModified.UTC()
		}
		page.Objects = append(page.Objects, info)
	}
	if aws.ToBool(out.IsTruncated) {
		page.Next = aws.ToString(out.NextContinuationToken)
	}
	return page, nil
}

// uploadCursorSep separates the key marker from the upload id marker in a
// ListUploads cursor; neither a key nor an upload id holds it.
const uploadCursorSep = "\n"

// ListUploads returns a page of the incomplete multipart uploads under the
// key prefix, with ListMultipartUploads; the cursor holds its key and
// upload id markers.
func (o *Objects) ListUploads(ctx context.Context, cursor string) (storage.UploadPage, error) {
	prefix := KeyPrefix(o.KeyPrefix)
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(o.Bucket.Name), Prefix: aws.String(prefix), MaxUploads: aws.Int32(storage.MaxListLimit)}
	if cursor != "" {
		key, id, ok := strings.Cut(cursor, uploadCursorSep)
		if !ok || key == "" {
			return storage.UploadPage{}, storage.Errorf(storage.InvalidArgument, "list uploads: the cursor is not one a page returned; start again with an empty cursor")
		}
		in.KeyMarker = aws.String(key)
		if id != "" {
			in.UploadIdMarker = aws.String(id)
		}
	}
	out, err := o.Bucket.Client.ListMultipartUploads(ctx, in)
	if err != nil {
		return storage.UploadPage{}, o.Bucket.toErr("list uploads", prefix, err)
	}
	var page storage.UploadPage
	for _, u := range out.Uploads {
		key := aws.ToString(u.Key)
		if !strings.HasPrefix(key, prefix) || key == prefix {
			continue
		}
		ui := storage.UploadInfo{Key: strings.TrimPrefix(key, prefix), StoredKey: key, Bucket: o.BucketID}
		if u.Initiated != nil {
			ui.Initiated = u.Initiated.UTC()
		}
		page.Uploads = append(page.Uploads, ui)
	}
	if aws.ToBool(out.IsTruncated) && aws.ToString(out.NextKeyMarker) != "" {
		page.Next = aws.ToString(out.NextKeyMarker) + uploadCursorSep + aws.ToString(out.NextUploadIdMarker)
	}
	return page, nil
}
