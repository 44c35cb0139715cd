package s3kit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

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

// Upload is what Bucket.Put stores.
type Upload struct {
	// Body is the object's content.
	Body io.Reader
	// Size is the declared length, or negative when unknown.
	Size int64
	// SHA256 is the content's declared sha256, or nil when unknown.
	SHA256 []byte
	// ContentType and CacheControl are stored with the object.
	ContentType, CacheControl string
}

// Put stores up.Body at objectKey. An object of known size under PartSize
// goes in one PutObject request that sends the body as it is read (a
// seekable body of exactly Size bytes without a copy, any other into one
// buffer of Size bytes); when its sha256 is declared, that is the signed
// payload hash, so the service itself refuses bytes that do not match
// and the plugin does not hash them again. Anything else streams through
// the transfer manager in equal PartSize parts, which aborts a failed
// multipart upload itself; when the failure leaves MayHaveUpload, the
// caller should look for one by key.
func (b Bucket) Put(ctx context.Context, key, objectKey string, up Upload) (PutResult, error) {
	if up.Size >= 0 && up.Size < PartSize {
		return b.putSingle(ctx, key, objectKey, up)
	}
	r, size, contentType, cacheControl := up.Body, up.Size, up.ContentType, up.CacheControl
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

// putSingle stores an object of known size under PartSize in one
// PutObject request (see Put).
func (b Bucket) putSingle(ctx context.Context, key, objectKey string, up Upload) (PutResult, error) {
	body, err := singleBody(up.Body, up.Size)
	if err != nil {
		return PutResult{}, fmt.Errorf("put %s: %w", key, err)
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(b.Name),
		Key:           aws.String(objectKey),
		Body:          body,
		ContentLength: aws.Int64(up.Size),
		ContentType:   aws.String(up.ContentType),
		CacheControl:  aws.String(up.CacheControl),
	}
	var opts []func(*s3.Options)
	if len(up.SHA256) == sha256.Size {
		opts = append(opts, signedWith(hex.EncodeToString(up.SHA256)))
	}
	out, err := b.Client.PutObject(ctx, in, opts...)
	if err != nil {
		if contentMismatch(err) {
			return PutResult{}, &storage.Error{Code: storage.InvalidArgument, Message: fmt.Sprintf("put %s: the bytes sent do not have the declared sha256; the bucket refused them and nothing was stored", key), Err: err}
		}
		return PutResult{}, b.toErr("put", key, err)
	}
	return PutResult{Object: Object{Size: up.Size, ContentType: up.ContentType, ETag: strings.Trim(aws.ToString(out.ETag), `"`)}}, nil
}

// singleBody returns r as the body of a single request of exactly size
// bytes: r itself when it is seekable with exactly size bytes left,
// otherwise its bytes read into one buffer, after checking it ends there.
func singleBody(r io.Reader, size int64) (io.Reader, error) {
	if rs, ok := r.(io.ReadSeeker); ok {
		if cur, err := rs.Seek(0, io.SeekCurrent); err == nil {
			if end, err := rs.Seek(0, io.SeekEnd); err == nil {
				if _, err := rs.Seek(cur, io.SeekStart); err != nil {
					return nil, err
				}
				if end-cur == size {
					return rs, nil
				}
			}
		}
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, storage.Errorf(storage.InvalidArgument, "the body ended before the declared %d bytes", size)
		}
		return nil, err
	}
	// Read to the end, so a checking reader sees it and a longer body is
	// refused.
	var extra [1]byte
	for {
		n, err := r.Read(extra[:])
		if n > 0 {
			return nil, storage.Errorf(storage.InvalidArgument, "the body is longer than the declared %d bytes", size)
		}
		if errors.Is(err, io.EOF) {
			return bytes.NewReader(buf), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// signedWith makes a request sign hash as its payload hash instead of
// hashing the body.
func signedWith(hash string) func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			if _, ok := st.Finalize.Get(payloadHashID); !ok {
				return nil
			}
			return st.Finalize.Insert(knownPayloadHash(hash), payloadHashID, middleware.Before)
		})
	}
}

// payloadHashID is the SigV4 signer's payload hash step.
const payloadHashID = "ComputePayloadHash"

// knownPayloadHash sets the payload hash before the signer's own step,
// which then keeps it.
type knownPayloadHash string

func (knownPayloadHash) ID() string { return "MagicadsKnownPayloadHash" }

func (h knownPayloadHash) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	return next.HandleFinalize(v4.SetPayloadHash(ctx, string(h)), in)
}

// contentMismatch reports whether the service refused a body that does
// not have the signed payload hash.
func contentMismatch(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "XAmzContentSHA256Mismatch", "BadDigest":
			return true
		}
	}
	return false
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
