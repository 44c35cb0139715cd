package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// noRetry disables SDK retries for one call.
func noRetry(o *s3.Options) { o.Retryer = aws.NopRetryer{} }

func putObject(t *testing.T, c *s3.Client, bucket, key string, body []byte) {
	t.Helper()
	_, err := c.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket),
		Key:    aws.String(key),
		Body:   bytes.NewReader(body),
	})
	if err != nil {
		t.Fatalf("PutObject %s/%s: %v", bucket, key, err)
	}
}

func getObject(ctx context.Context, c *s3.Client, bucket, key string, opts ...func(*s3.Options)) ([]byte, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}, opts...)
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

func mustGet(t *testing.T, c *s3.Client, bucket, key string, want []byte) {
	t.Helper()
	got, err := getObject(t.Context(), c, bucket, key)
	if err != nil {
		t.Fatalf("GetObject %s/%s: %v", bucket, key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("GetObject %s/%s = %q, want %q", bucket, key, got, want)
	}
}

// apiError returns the S3 error code and HTTP status of err.
func apiError(t *testing.T, err error) (string, int) {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error, got nil")
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error is not an API error: %v", err)
	}
	var re *smithyhttp.ResponseError
	status := 0
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return ae.ErrorCode(), status
}

func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscall.Signal(0)) == nil
}

func TestVersityPutGetStopRestart(t *testing.T) {
	srv := StartVersity(t)
	if !strings.HasPrefix(srv.Endpoint, "http://127.0.0.1:") || srv.Region != "auto" {
		t.Fatalf("Endpoint %q Region %q", srv.Endpoint, srv.Region)
	}
	if srv.AccessKey == "" || srv.SecretKey == "" || srv.AccessKey == srv.SecretKey {
		t.Fatal("credentials not generated")
	}
	c := srv.Client()
	srv.CreateBucket(t, "media")
	putObject(t, c, "media", "a/b/one.bin", []byte("hello versity"))
	putObject(t, c, "media", "two.txt", []byte("second"))
	mustGet(t, c, "media", "a/b/one.bin", []byte("hello versity"))
	if got, want := srv.Keys(t, "media"), []string{"a/b/one.bin", "two.txt"}; !slices.Equal(got, want) {
		t.Fatalf("Keys = %q, want %q", got, want)
	}

	up, err := c.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{
		Bucket: aws.String("media"), Key: aws.String("big/file"),
	})
	if err != nil {
		t.Fatalf("CreateMultipartUpload: %v", err)
	}
	if got := srv.MultipartUploads(t, "media"); !slices.Equal(got, []string{"big/file"}) {
		t.Fatalf("MultipartUploads = %q", got)
	}

	pid := srv.Pid()
	if pid == 0 || !processAlive(pid) {
		t.Fatalf("Pid() = %d, alive %v", pid, processAlive(pid))
	}
	srv.Stop()
	if srv.Pid() != 0 {
		t.Fatalf("Pid() after Stop = %d", srv.Pid())
	}
	if runtime.GOOS != "windows" && processAlive(pid) {
		t.Fatalf("versitygw pid %d still alive after Stop", pid)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := getObject(ctx, c, "media", "two.txt", noRetry); err == nil {
		t.Fatal("GetObject succeeded while the server was stopped")
	}
	srv.Stop() // idempotent

	endpoint := srv.Endpoint
	srv.Start()
	srv.Start() // idempotent
	if srv.Endpoint != endpoint || srv.Pid() == 0 || srv.Pid() == pid {
		t.Fatalf("after restart: endpoint %q (was %q), pid %d (was %d)", srv.Endpoint, endpoint, srv.Pid(), pid)
	}
	mustGet(t, c, "media", "a/b/one.bin", []byte("hello versity"))
	if got := srv.MultipartUploads(t, "media"); !slices.Equal(got, []string{"big/file"}) {
		t.Fatalf("MultipartUploads after restart = %q", got)
	}
	if _, err := c.AbortMultipartUpload(t.Context(), &s3.AbortMultipartUploadInput{
		Bucket: aws.String("media"), Key: aws.String("big/file"), UploadId: up.UploadId,
	}); err != nil {
		t.Fatalf("AbortMultipartUpload: %v", err)
	}
	if got := srv.MultipartUploads(t, "media"); len(got) != 0 {
		t.Fatalf("MultipartUploads after abort = %q", got)
	}
}

func TestVersityRejectsBadCredentials(t *testing.T) {
	srv := StartVersity(t)
	srv.CreateBucket(t, "secure")
	putObject(t, srv.Client(), "secure", "k", []byte("v"))

	wrongSecret := NewClient(srv.Endpoint, srv.AccessKey, randomHex(t, 20), nil)
	_, err := getObject(t.Context(), wrongSecret, "secure", "k", noRetry)
	if code, status := apiError(t, err); code != "SignatureDoesNotMatch" || status != http.StatusForbidden {
		t.Fatalf("wrong secret: code %q status %d, want SignatureDoesNotMatch 403 (%v)", code, status, err)
	}
	_, err = wrongSecret.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String("secure"), Key: aws.String("k2"), Body: strings.NewReader("x"),
	}, noRetry)
	if _, status := apiError(t, err); status != http.StatusForbidden {
		t.Fatalf("wrong secret PutObject: status %d (%v)", status, err)
	}

	wrongKey := NewClient(srv.Endpoint, randomHex(t, 10), srv.SecretKey, nil)
	_, err = getObject(t.Context(), wrongKey, "secure", "k", noRetry)
	// versitygw v1.8.0 answers an unknown access key with 404
	// XAdminUserNotFound where AWS and R2 say 403 InvalidAccessKeyId.
	if code, _ := apiError(t, err); code != "XAdminUserNotFound" && code != "InvalidAccessKeyId" {
		t.Fatalf("wrong access key: code %q (%v)", code, err)
	}
	if got := srv.Keys(t, "secure"); !slices.Equal(got, []string{"k"}) {
		t.Fatalf("Keys = %q", got)
	}
}

func TestVersitySidecarMetadata(t *testing.T) {
	srv := startVersity(t, true, Region)
	if srv.metaDir == "" {
		t.Fatal("sidecar not used")
	}
	srv.CreateBucket(t, "side")
	_, err := srv.Client().PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String("side"), Key: aws.String("m"), Body: strings.NewReader("meta"),
		Metadata: map[string]string{"owner": "s3test"},
	})
	if err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	head, err := srv.Client().HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String("side"), Key: aws.String("m")})
	if err != nil {
		t.Fatalf("HeadObject: %v", err)
	}
	if head.Metadata["owner"] != "s3test" {
		t.Fatalf("metadata = %v", head.Metadata)
	}
}

func TestRecorderProxiesSignedRequestsToVersity(t *testing.T) {
	srv := StartVersity(t)
	srv.CreateBucket(t, "rec")
	rec := NewRecorder(t, srv.Endpoint)
	if !strings.HasPrefix(rec.URL, "https://127.0.0.1:") {
		t.Fatalf("URL = %q", rec.URL)
	}
	c := NewClient(rec.URL, srv.AccessKey, srv.SecretKey, rec.Client())
	payload := bytes.Repeat([]byte("0123456789"), 1000)
	putObject(t, c, "rec", "dir/file name+special.bin", payload)
	mustGet(t, c, "rec", "dir/file name+special.bin", payload)
	if got := srv.Keys(t, "rec"); !slices.Equal(got, []string{"dir/file name+special.bin"}) {
		t.Fatalf("Keys = %q", got)
	}

	reqs := rec.Requests()
	if len(reqs) != 2 {
		t.Fatalf("recorded %d requests, want 2: %+v", len(reqs), reqs)
	}
	recHost := strings.TrimPrefix(rec.URL, "https://")
	put, get := reqs[0], reqs[1]
	if put.Method != http.MethodPut || put.Path != "/rec/dir/file name+special.bin" || put.Status != http.StatusOK {
		t.Fatalf("put = %+v", put)
	}
	if put.BodyLen != int64(len(payload)) {
		t.Fatalf("put BodyLen = %d, want %d", put.BodyLen, len(payload))
	}
	if put.Host != recHost {
		t.Fatalf("put Host = %q, want %q", put.Host, recHost)
	}
	if auth := put.Header.Get("Authorization"); !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+srv.AccessKey+"/") ||
		!strings.Contains(auth, "/auto/s3/aws4_request") {
		t.Fatalf("put Authorization = %q", auth)
	}
	if put.Header.Get("X-Amz-Date") == "" || put.Header.Get("X-Amz-Content-Sha256") == "" {
		t.Fatalf("put headers missing SigV4 fields: %v", put.Header)
	}
	if get.Method != http.MethodGet || get.Status != http.StatusOK || get.BodyLen != 0 || get.Injected {
		t.Fatalf("get = %+v", get)
	}

	// Requests returns copies.
	reqs[0].Header.Set("Authorization", "changed")
	if rec.Requests()[0].Header.Get("Authorization") == "changed" {
		t.Fatal("Requests shares headers with the recorder")
	}
	rec.Reset()
	if n := len(rec.Requests()); n != 0 {
		t.Fatalf("after Reset: %d requests", n)
	}

	// A query string survives the proxy, and a wrong secret is still refused.
	if _, err := c.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String("rec"), Prefix: aws.String("dir/")}); err != nil {
		t.Fatalf("ListObjectsV2 through recorder: %v", err)
	}
	if q, _ := url.ParseQuery(rec.Requests()[0].RawQuery); q.Get("prefix") != "dir/" || q.Get("list-type") != "2" {
		t.Fatalf("RawQuery = %q", rec.Requests()[0].RawQuery)
	}
	// Large bodies (the SDK sends Expect: 100-continue above 2 MiB) and a
	// multipart upload pass through unchanged.
	part := bytes.Repeat([]byte{'p'}, 5<<20)
	up, err := c.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{Bucket: aws.String("rec"), Key: aws.String("mp")})
	if err != nil {
		t.Fatalf("CreateMultipartUpload: %v", err)
	}
	var parts []types.CompletedPart
	for i, body := range [][]byte{part, []byte("tail")} {
		n := int32(i + 1)
		out, err := c.UploadPart(t.Context(), &s3.UploadPartInput{
			Bucket: aws.String("rec"), Key: aws.String("mp"), UploadId: up.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(body),
		})
		if err != nil {
			t.Fatalf("UploadPart %d: %v", n, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)})
	}
	if got := srv.MultipartUploads(t, "rec"); !slices.Equal(got, []string{"mp"}) {
		t.Fatalf("MultipartUploads = %q", got)
	}
	if _, err := c.CompleteMultipartUpload(t.Context(), &s3.CompleteMultipartUploadInput{
		Bucket: aws.String("rec"), Key: aws.String("mp"), UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}); err != nil {
		t.Fatalf("CompleteMultipartUpload: %v", err)
	}
	mustGet(t, c, "rec", "mp", append(slices.Clone(part), "tail"...))
	var sawBig bool
	for _, r := range rec.Requests() {
		if r.Method == http.MethodPut && r.BodyLen == 5<<20 && r.Status == http.StatusOK {
			sawBig = true
		}
	}
	if !sawBig {
		t.Fatal("5 MiB part not recorded")
	}

	bad := NewClient(rec.URL, srv.AccessKey, randomHex(t, 20), rec.Client())
	_, err = getObject(t.Context(), bad, "rec", "dir/file name+special.bin", noRetry)
	if code, _ := apiError(t, err); code != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret through recorder: %v", err)
	}
}

func TestRecorderFaultInjection(t *testing.T) {
	srv := StartVersity(t)
	srv.CreateBucket(t, "faults")
	rec := NewRecorder(t, srv.Endpoint)
	c := NewClient(rec.URL, srv.AccessKey, srv.SecretKey, rec.Client())

	// A write-only token: reads are refused, writes go through.
	rec.SetFault(func(r *http.Request) (int, string, bool) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return http.StatusForbidden, "AccessDenied", true
		}
		return 0, "", false
	})
	putObject(t, c, "faults", "obj", []byte("data"))
	_, err := getObject(t.Context(), c, "faults", "obj", noRetry)
	if code, status := apiError(t, err); code != "AccessDenied" || status != http.StatusForbidden {
		t.Fatalf("GET: code %q status %d (%v)", code, status, err)
	}
	_, err = c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String("faults"), Key: aws.String("obj")}, noRetry)
	if _, status := apiError(t, err); status != http.StatusForbidden {
		t.Fatalf("HEAD: status %d (%v)", status, err)
	}
	reqs := rec.Requests()
	if len(reqs) != 3 || reqs[0].Injected || !reqs[1].Injected || !reqs[2].Injected ||
		reqs[1].Status != http.StatusForbidden || reqs[0].Status != http.StatusOK {
		t.Fatalf("recorded = %+v", reqs)
	}

	// The hook sees the request body; a custom XML body is passed through.
	rec.SetFault(func(r *http.Request) (int, string, bool) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPut && string(b) == "slow" {
			return http.StatusServiceUnavailable, `<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>later</Message></Error>`, true
		}
		return 0, "", false
	})
	_, err = c.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String("faults"), Key: aws.String("slow"), Body: strings.NewReader("slow"),
	}, noRetry)
	if code, status := apiError(t, err); code != "SlowDown" || status != http.StatusServiceUnavailable {
		t.Fatalf("custom body: code %q status %d (%v)", code, status, err)
	}
	putObject(t, c, "faults", "fast", []byte("fast"))

	// A negative status drops the connection.
	rec.SetFault(func(*http.Request) (int, string, bool) { return -1, "", true })
	if _, err := getObject(t.Context(), c, "faults", "obj", noRetry); err == nil {
		t.Fatal("GET succeeded on a dropped connection")
	}

	// Removing the hook restores normal service.
	rec.SetFault(nil)
	mustGet(t, c, "faults", "obj", []byte("data"))
	if got := srv.Keys(t, "faults"); !slices.Equal(got, []string{"fast", "obj"}) {
		t.Fatalf("Keys = %q", got)
	}

	// With the backend down the recorder answers 502 and records why.
	srv.Stop()
	rec.Reset()
	_, err = getObject(t.Context(), c, "faults", "obj", noRetry)
	if _, status := apiError(t, err); status != http.StatusBadGateway {
		t.Fatalf("backend down: status %d (%v)", status, err)
	}
	if r := rec.Requests(); len(r) != 1 || r[0].Status != http.StatusBadGateway || r[0].Err == "" {
		t.Fatalf("backend down recorded = %+v", r)
	}
	srv.Start()
	mustGet(t, c, "faults", "obj", []byte("data"))
}

func TestFake(t *testing.T) {
	f := NewFake(t)
	if !strings.HasPrefix(f.Endpoint, "http://127.0.0.1:") || f.Region != "auto" {
		t.Fatalf("Endpoint %q Region %q", f.Endpoint, f.Region)
	}
	c := f.Client()
	f.CreateBucket(t, "fake")
	putObject(t, c, "fake", "x/1", []byte("one"))
	putObject(t, c, "fake", "x/2", []byte("two"))
	mustGet(t, c, "fake", "x/2", []byte("two"))
	if got := f.Keys(t, "fake"); !slices.Equal(got, []string{"x/1", "x/2"}) {
		t.Fatalf("Keys = %q", got)
	}
	if _, err := c.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{
		Bucket: aws.String("fake"), Key: aws.String("mp"),
	}); err != nil {
		t.Fatalf("CreateMultipartUpload: %v", err)
	}
	if got := f.MultipartUploads(t, "fake"); !slices.Equal(got, []string{"mp"}) {
		t.Fatalf("MultipartUploads = %q", got)
	}

	// The recorder works in front of the fake too.
	rec := NewRecorder(t, f.Endpoint)
	rc := NewClient(rec.URL, f.AccessKey, f.SecretKey, rec.Client())
	mustGet(t, rc, "fake", "x/1", []byte("one"))
	if r := rec.Requests(); len(r) != 1 || r[0].Method != http.MethodGet || r[0].Status != http.StatusOK {
		t.Fatalf("recorded = %+v", r)
	}
}

// fatalTB captures Fatalf instead of failing the real test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestFindVersityMissingNamesInstallCommand(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("VERSITYGW", "")
	t.Setenv("PATH", empty)
	t.Setenv("GOBIN", "")
	t.Setenv("GOPATH", empty)
	t.Setenv("HOME", empty)
	ft := &fatalTB{TB: t}
	done := make(chan string)
	go func() {
		defer close(done)
		done <- findVersity(ft)
	}()
	if p := <-done; p != "" {
		t.Fatalf("found %q in an empty environment", p)
	}
	if !strings.Contains(ft.msg, "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0") {
		t.Fatalf("message %q lacks the install command", ft.msg)
	}

	t.Setenv("VERSITYGW", empty+"/nope")
	ft.msg = ""
	done = make(chan string)
	go func() {
		defer close(done)
		done <- findVersity(ft)
	}()
	<-done
	if !strings.Contains(ft.msg, "VERSITYGW") || !strings.Contains(ft.msg, VersityInstall) {
		t.Fatalf("message %q", ft.msg)
	}
}
