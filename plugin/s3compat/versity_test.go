package s3compat_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// region is the region the test servers sign for, as Amazon S3's default
// region and MinIO's default.
const region = "us-east-1"

// versity is a versitygw process configured for a region: the s3test
// helpers start theirs for R2's "auto", so these tests start their own.
type versity struct {
	Endpoint  string
	AccessKey string
	SecretKey string
	Region    string
	client    *s3.Client
}

// startVersity starts versitygw signing for rgn on a free loopback port,
// backed by fresh temporary directories (sidecar metadata, so no extended
// attributes are needed), waits until it answers signed requests, and
// stops it when the test ends.
func startVersity(t *testing.T, rgn string) *versity {
	t.Helper()
	bin := findVersity(t)
	base := t.TempDir()
	data, meta := filepath.Join(base, "data"), filepath.Join(base, "meta")
	for _, d := range []string{data, meta} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	v := &versity{AccessKey: randomHex(t, 10), SecretKey: randomHex(t, 20), Region: rgn}
	var lastErr error
	for range 5 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		v.Endpoint = "http://" + addr
		out := &lockedBuffer{}
		cmd := exec.Command(bin, "--port", addr, "--access", v.AccessKey, "--secret", v.SecretKey,
			"--region", rgn, "--quiet", "posix", "--sidecar", meta, data)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + base}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.WaitDelay = 3 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting versitygw: %v", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		stop := func() {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
		v.client = newClient(v.Endpoint, v.AccessKey, v.SecretKey, rgn)
		if lastErr = v.waitReady(done); lastErr == nil {
			t.Cleanup(stop)
			return v
		}
		stop()
		lastErr = errors.New(lastErr.Error() + "; output: " + strings.ReplaceAll(out.String(), v.SecretKey, "<secret>"))
		if !strings.Contains(out.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("versitygw did not start: %v", lastErr)
	return nil
}

func (v *versity) waitReady(done <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := v.client.ListBuckets(ctx, &s3.ListBucketsInput{}, func(o *s3.Options) { o.Retryer = aws.NopRetryer{} })
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return errors.New("versitygw exited")
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newClient is a path-style S3 client signing for rgn.
func newClient(endpoint, access, secret, rgn string) *s3.Client {
	return s3.New(s3.Options{
		Region:                     rgn,
		Credentials:                credentials.NewStaticCredentialsProvider(access, secret, ""),
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		HTTPClient:                 &http.Client{Timeout: 30 * time.Second},
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

func (v *versity) CreateBucket(t *testing.T, name string) {
	t.Helper()
	if _, err := v.client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

// Keys lists every object key in bucket.
func (v *versity) Keys(t *testing.T, bucket string) []string {
	t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(v.client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list %s: %v", bucket, err)
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

// MultipartUploads lists the keys of bucket's incomplete multipart uploads.
func (v *versity) MultipartUploads(t *testing.T, bucket string) []string {
	t.Helper()
	out, err := v.client.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("list uploads of %s: %v", bucket, err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	slices.Sort(keys)
	return keys
}

// StartMultipartUpload creates a multipart upload of key with one part and
// leaves it incomplete.
func (v *versity) StartMultipartUpload(t *testing.T, bucket, key string, part []byte) {
	t.Helper()
	ctx := context.Background()
	out, err := v.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("create multipart upload: %v", err)
	}
	if _, err := v.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: out.UploadId,
		PartNumber: aws.Int32(1), Body: strings.NewReader(string(part)), ContentLength: aws.Int64(int64(len(part)))}); err != nil {
		t.Fatalf("upload part: %v", err)
	}
}

func findVersity(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	for _, dir := range []string{os.Getenv("GOBIN"), os.Getenv("GOPATH"), filepath.Join(os.Getenv("HOME"), "go")} {
		if dir == "" {
			continue
		}
		for _, p := range []string{filepath.Join(dir, "versitygw"), filepath.Join(dir, "bin", "versitygw")} {
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p
			}
		}
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("versitygw not found: install it with go install github.com/versity/versitygw/cmd/versitygw@v1.8.0")
	return ""
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf) < 64<<10 {
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
