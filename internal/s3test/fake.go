package s3test

import (
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Fake is an in-process, in-memory S3 server (gofakes3) for fast unit tests.
// It accepts any credentials and does NOT verify SigV4 signatures, and its
// S3 semantics are approximate; use StartVersity for tests that depend on
// authentication or on exact S3 behaviour.
type Fake struct {
	// Endpoint is the base URL, "http://127.0.0.1:PORT".
	Endpoint string
	// AccessKey is a random access key ID (not checked by the fake).
	AccessKey string
	// SecretKey is a random secret access key (not checked by the fake).
	SecretKey string
	// Region is "auto".
	Region string

	client *s3.Client
}

// NewFake starts an in-memory gofakes3 server on an httptest server that is
// closed when the test ends.
func NewFake(t testing.TB) *Fake {
	t.Helper()
	faker := gofakes3.New(s3mem.New())
	srv := httptest.NewServer(faker.Server())
	t.Cleanup(srv.Close)
	f := &Fake{
		Endpoint:  srv.URL,
		AccessKey: randomHex(t, 10),
		SecretKey: randomHex(t, 20),
		Region:    Region,
	}
	f.client = NewClient(f.Endpoint, f.AccessKey, f.SecretKey, srv.Client())
	return f
}

// Client returns an S3 client for the fake.
func (f *Fake) Client() *s3.Client { return f.client }

// CreateBucket creates a bucket, failing t on error.
func (f *Fake) CreateBucket(t testing.TB, name string) {
	t.Helper()
	createBucket(t, f.client, name)
}

// Keys returns every object key in bucket, sorted.
func (f *Fake) Keys(t testing.TB, bucket string) []string {
	t.Helper()
	return listKeys(t, f.client, bucket)
}

// MultipartUploads returns the keys of the in-progress multipart uploads in
// bucket, sorted, one entry per upload.
func (f *Fake) MultipartUploads(t testing.TB, bucket string) []string {
	t.Helper()
	return listUploads(t, f.client, bucket)
}
