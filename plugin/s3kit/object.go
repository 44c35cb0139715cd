package s3kit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/magicads/r2storage/shared/storage"
)

// Bucket is one bucket reached through an S3 client, with the object
// calls the providers share. Keys are passed twice: key is what the caller
// asked for (used in messages), objectKey the full key in the bucket.
type Bucket struct {
	// Client is the S3 client (NewClients).
	Client *s3.Client
	// Uploader is the transfer manager Put streams through (NewClients).
	Uploader *transfermanager.Client
	// Name is the bucket name.
	Name string
	// ToErr maps the client's errors; nil is ToStorageError.
	ToErr ErrorMapper
}

// Object is what the bucket says of a stored object.
type Object struct {
	// Size is the object's full size in bytes.
	Size int64
	// ContentType is the stored Content-Type.
	ContentType string
	// ETag is the entity tag without quotes.
	ETag string
	// ModTime is the last-modified time in UTC (zero after Put).
	ModTime time.Time
}

// toErr maps an error of op on key. A missing bucket is FailedPrecondition
// naming the bucket, whatever ToErr says: the objects are out of reach,
// not gone.
func (b Bucket) toErr(op, key string, err error) error {
	if c, code := Classify(err); c == CauseBucketNotFound {
		return b.missingBucket(op, key, code, err)
	}
	if b.ToErr != nil {
		return b.ToErr(op, key, err)
	}
	return ToStorageError(op, key, err)
}

// missingBucket is the error of op on key in the bucket, which does not
// exist (the service answered code).
func (b Bucket) missingBucket(op, key, code string, err error) error {
	what := op
	if key != "" {
		what = op + " " + key
	}
	return &storage.Error{Code: storage.FailedPrecondition, Message: fmt.Sprintf("%s: bucket %q does not exist (%s): create it, or correct the bucket name and the account or endpoint in the settings", what, b.Name, code), Err: err}
}

// PutResult is the outcome of Bucket.Put.
type PutResult struct {
	// Object describes the stored object (Size is the bytes read).
	Object Object
	// MayHaveUpload is set on failure when the reader gave at least a part,
	// so a multipart upload may be left to abort (AbortKey).
	MayHaveUpload bool
}

// Put streams r to objectKey with contentType and cacheControl; size is
// the declared length, or negative when unknown. The transfer manager uses
// equal PartSize parts and aborts a failed multipart upload itself; when
// the failure leaves MayHaveUpload, the caller should look for one by key.
func (b Bucket) Put(ctx context.Context, key, objectKey string, r io.Reader, size int64, contentType, cacheControl string) (PutResult, error) {
	counted := &countingReader{r: r}
	in := &transfermanager.UploadObjectInput{
		Bucket:       aws.String(b.Name),
		Key:          aws.String(objectKey),
		Body:         counted,
		ContentType:  aws.String(contentType),
		CacheControl: aws.String(cacheControl),
	}
	if size >= 0 {
		in.ContentLength = aws.Int64(size)
	}
	out, err := b.Uploader.UploadObject(ctx, in)
	if err != nil {
		// The reader's own error (a cancelled or broken stream) is the
		// real cause; the transfer manager does not always wrap it.
		if counted.err != nil && !errors.Is(err, counted.err) {
			err = errors.Join(counted.err, err)
		}
		return PutResult{MayHaveUpload: counted.n >= PartSize}, b.toErr("put", key, err)
	}
	if counted.n > MaxObjectSize {
		// Unreachable in practice: S3 refuses more than MaxParts parts.
		return PutResult{}, storage.Errorf(storage.InvalidArgument, "put %s: over the size limit", key)
	}
	return PutResult{Object: Object{Size: counted.n, ContentType: contentType, ETag: strings.Trim(aws.ToString(out.ETag), `"`)}}, nil
}

// countingReader counts bytes and remembers the reader's error.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		c.err = err
	}
	return n, err
}

// Get opens the object at objectKey, or the byte range opts selects. A
// zero Length answers an empty body after a Stat. An Offset equal to the
// object's size is an empty read (S3 answers 416, so Get asks Stat for
// the size then); one past it gives InvalidArgument.
func (b Bucket) Get(ctx context.Context, key, objectKey string, opts storage.GetOptions) (io.ReadCloser, Object, error) {
	if opts.Offset < 0 {
		return nil, Object{}, storage.Errorf(storage.InvalidArgument, "get %s: negative offset %d", key, opts.Offset)
	}
	if opts.Length == 0 {
		return b.emptyRead(ctx, key, objectKey, opts.Offset)
	}
	in := &s3.GetObjectInput{Bucket: aws.String(b.Name), Key: aws.String(objectKey)}
	ranged := opts.Offset > 0 || opts.Length > 0
	if ranged {
		r := "bytes=" + strconv.FormatInt(opts.Offset, 10) + "-"
		if opts.Length > 0 {
			r += strconv.FormatInt(opts.Offset+opts.Length-1, 10)
		}
		in.Range = aws.String(r)
	}
	out, err := b.Client.GetObject(ctx, in)
	if err != nil {
		if ranged && unsatisfiable(err) {
			return b.emptyRead(ctx, key, objectKey, opts.Offset)
		}
		return nil, Object{}, b.toErr("get", key, err)
	}
	size := aws.ToInt64(out.ContentLength)
	if ranged {
		size = totalFromContentRange(aws.ToString(out.ContentRange), size)
	}
	return out.Body, Object{
		Size:        size,
		ContentType: aws.ToString(out.ContentType),
		ETag:        strings.Trim(aws.ToString(out.ETag), `"`),
		ModTime:     aws.ToTime(out.LastModified).UTC(),
	}, nil
}

// emptyRead is the empty read at offset of the object at objectKey, after
// a Stat: InvalidArgument when offset is past the object's size.
func (b Bucket) emptyRead(ctx context.Context, key, objectKey string, offset int64) (io.ReadCloser, Object, error) {
	obj, err := b.Stat(ctx, key, objectKey)
	if err != nil {
		return nil, Object{}, err
	}
	if offset > obj.Size {
		return nil, Object{}, storage.Errorf(storage.InvalidArgument, "get %s: offset %d is past the end of the object (%d bytes)", key, offset, obj.Size)
	}
	return io.NopCloser(strings.NewReader("")), obj, nil
}

// unsatisfiable reports whether err is S3's answer to a range that starts
// at or past the end of the object (416, InvalidRange).
func unsatisfiable(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "InvalidRange" {
		return true
	}
	var respErr *awshttp.ResponseError
	return errors.As(err, &respErr) && respErr.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable
}

// totalFromContentRange reads the total size from "bytes a-b/total".
func totalFromContentRange(cr string, fallback int64) int64 {
	if i := strings.LastIndexByte(cr, '/'); i >= 0 {
		if n, err := strconv.ParseInt(cr[i+1:], 10, 64); err == nil {
			return n
		}
	}
	return fallback
}

// Stat returns the attributes of the object at objectKey.
func (b Bucket) Stat(ctx context.Context, key, objectKey string) (Object, error) {
	out, err := b.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.Name), Key: aws.String(objectKey)})
	if err != nil {
		serr := b.toErr("stat", key, err)
		if storage.IsNotFound(serr) {
			// HEAD answers 404 without a body, for a missing key and a
			// missing bucket alike; a GET's body tells them apart.
			if berr := b.bucketMissing(ctx, key, objectKey); berr != nil {
				return Object{}, berr
			}
		}
		return Object{}, serr
	}
	return Object{
		Size:        aws.ToInt64(out.ContentLength),
		ContentType: aws.ToString(out.ContentType),
		ETag:        strings.Trim(aws.ToString(out.ETag), `"`),
		ModTime:     aws.ToTime(out.LastModified).UTC(),
	}, nil
}

// bucketMissing returns the missing-bucket error when a GET of the first
// byte of objectKey says the bucket does not exist, else nil.
func (b Bucket) bucketMissing(ctx context.Context, key, objectKey string) error {
	out, err := b.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.Name), Key: aws.String(objectKey), Range: aws.String("bytes=0-0")})
	if err == nil {
		out.Body.Close()
		return nil
	}
	if c, code := Classify(err); c == CauseBucketNotFound {
		return b.missingBucket("stat", key, code, err)
	}
	return nil
}

// Delete removes the object at objectKey; a missing object is not an error.
func (b Bucket) Delete(ctx context.Context, key, objectKey string) error {
	_, err := b.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.Name), Key: aws.String(objectKey)})
	if err != nil {
		serr := b.toErr("delete", key, err)
		if storage.IsNotFound(serr) {
			return nil
		}
		return serr
	}
	return nil
}
