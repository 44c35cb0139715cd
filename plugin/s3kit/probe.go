package s3kit

import (
	"bytes"
	"context"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// ProbeOutcome is what a connection probe found; the errors are the S3
// client's, unmapped, for the provider to word.
type ProbeOutcome struct {
	// UploadErr is set when the probe could not be uploaded; nothing else
	// was tried then.
	UploadErr error
	// ReadErr is set when the uploaded probe could not be read back.
	ReadErr error
	// Mismatch is set when it read back other bytes than were uploaded.
	Mismatch bool
	// DeleteErr is set when the uploaded probe could not be deleted.
	DeleteErr error
}

// Probe uploads body to objectKey, reads it back, compares it and deletes
// it, each step bounded by stepTimeout. Once uploaded, the probe is
// deleted whatever happened, even when ctx has ended.
func (b Bucket) Probe(ctx context.Context, objectKey string, body []byte, stepTimeout time.Duration) ProbeOutcome {
	bucket := aws.String(b.Name)
	stepCtx, cancel := context.WithTimeout(ctx, stepTimeout)
	_, err := b.Client.PutObject(stepCtx, &s3.PutObjectInput{
		Bucket: bucket, Key: aws.String(objectKey), Body: bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String("text/plain; charset=utf-8"),
	})
	cancel()
	if err != nil {
		return ProbeOutcome{UploadErr: err}
	}
	var out ProbeOutcome
	out.Mismatch, out.ReadErr = b.readBack(ctx, objectKey, body, stepTimeout)
	delCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stepTimeout)
	_, out.DeleteErr = b.Client.DeleteObject(delCtx, &s3.DeleteObjectInput{Bucket: bucket, Key: aws.String(objectKey)})
	cancel()
	return out
}

func (b Bucket) readBack(ctx context.Context, objectKey string, want []byte, timeout time.Duration) (mismatch bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := b.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.Name), Key: aws.String(objectKey)})
	if err != nil {
		return false, err
	}
	defer out.Body.Close()
	got, err := io.ReadAll(io.LimitReader(out.Body, int64(len(want))+1))
	if err != nil {
		return false, err
	}
	return !bytes.Equal(got, want), nil
}
