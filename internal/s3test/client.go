package s3test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Region is the region every server in this package is configured for, as
// used by Cloudflare R2.
const Region = "auto"

// NewClient returns an S3 client for endpoint using path-style addressing,
// static credentials, region "auto" and checksums only when required. It
// reads no environment variables or shared config files. A nil httpClient
// selects the SDK default.
func NewClient(endpoint, accessKey, secretKey string, httpClient *http.Client) *s3.Client {
	return newClientIn(Region, endpoint, accessKey, secretKey, httpClient)
}

// newClientIn is NewClient signing for region.
func newClientIn(region, endpoint, accessKey, secretKey string, httpClient *http.Client) *s3.Client {
	cfg := aws.Config{
		Region:                     region,
		Credentials:                credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		BaseEndpoint:               aws.String(endpoint),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if httpClient != nil {
		cfg.HTTPClient = httpClient
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = true
	})
}

// randomHex returns n random bytes, hex encoded.
func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("s3test: generating random key: %v", err)
	}
	return hex.EncodeToString(b)
}

// createBucket creates bucket name with c, failing t on error.
func createBucket(t testing.TB, c *s3.Client, name string) {
	t.Helper()
	if _, err := c.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("s3test: CreateBucket %q: %v", name, err)
	}
}

// readObject returns an object's bytes.
func readObject(t testing.TB, c *s3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("s3test: GetObject %q/%q: %v", bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("s3test: reading %q/%q: %v", bucket, key, err)
	}
	return data
}

// listKeys returns every object key in bucket, sorted.
func listKeys(t testing.TB, c *s3.Client, bucket string) []string {
	t.Helper()
	keys := []string{}
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatalf("s3test: ListObjectsV2 %q: %v", bucket, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	slices.Sort(keys)
	return keys
}

// startUpload creates a multipart upload of key in bucket, uploads part as
// its first part and leaves it incomplete, as a crashed uploader would. It
// returns the upload id.
func startUpload(t testing.TB, c *s3.Client, bucket, key string, part []byte) string {
	t.Helper()
	up, err := c.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("s3test: CreateMultipartUpload %q %q: %v", bucket, key, err)
	}
	if _, err := c.UploadPart(t.Context(), &s3.UploadPartInput{
		Bucket: aws.String(bucket), Key: aws.String(key), UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(part), ContentLength: aws.Int64(int64(len(part))),
	}); err != nil {
		t.Fatalf("s3test: UploadPart %q %q: %v", bucket, key, err)
	}
	return aws.ToString(up.UploadId)
}

// listUploads returns the keys of all in-progress multipart uploads in
// bucket, sorted; a key appears once per upload.
func listUploads(t testing.TB, c *s3.Client, bucket string) []string {
	t.Helper()
	keys := []string{}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)}
	for range 10000 {
		out, err := c.ListMultipartUploads(t.Context(), in)
		if err != nil {
			t.Fatalf("s3test: ListMultipartUploads %q: %v", bucket, err)
		}
		for _, u := range out.Uploads {
			keys = append(keys, aws.ToString(u.Key))
		}
		if !aws.ToBool(out.IsTruncated) {
			slices.Sort(keys)
			return keys
		}
		if aws.ToString(out.NextKeyMarker) == "" && aws.ToString(out.NextUploadIdMarker) == "" {
			t.Fatalf("s3test: ListMultipartUploads %q: truncated listing without a next marker", bucket)
		}
		in.KeyMarker = out.NextKeyMarker
		in.UploadIdMarker = out.NextUploadIdMarker
	}
	t.Fatalf("s3test: ListMultipartUploads %q: too many pages", bucket)
	return nil
}
