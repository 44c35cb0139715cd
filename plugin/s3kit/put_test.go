package s3kit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/shared/storage"
)

// recordingClient sends requests through an HTTP client and keeps, for
// each, its method and x-amz-content-sha256 header.
type recordingClient struct {
	next *http.Client
	mu   sync.Mutex
	seen []string
}

func (c *recordingClient) Do(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.seen = append(c.seen, req.Method+" "+req.Header.Get("X-Amz-Content-Sha256"))
	c.mu.Unlock()
	return c.next.Do(req)
}

func (c *recordingClient) requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.seen...)
}

// versityObjects starts versitygw with the bucket "media" and returns
// Objects under the key prefix "p" whose requests rc records.
func versityObjects(t *testing.T) (*Objects, *recordingClient, *s3.Client) {
	t.Helper()
	srv := s3test.StartVersityIn(t, "us-east-1")
	srv.CreateBucket(t, "media")
	rc := &recordingClient{next: NewHTTPClient(Timeouts{})}
	client, tm := NewClients(ClientConfig{Region: "us-east-1", Endpoint: srv.Endpoint, UsePathStyle: true, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, HTTPClient: rc})
	return &Objects{Bucket: Bucket{Client: client, Uploader: tm, Name: "media"}, KeyPrefix: "p", BucketID: "s3:media", ProviderID: "test-provider"}, rc, client
}

// TestPutSmallObjectIsSignedWithTheDeclaredSHA256: an object under a part
// with a declared size and sha256 goes in one PUT whose signed payload
// hash is the declared sha256, so the bucket itself checks the bytes: a
// body that does not match is refused and nothing is stored.
func TestPutSmallObjectIsSignedWithTheDeclaredSHA256(t *testing.T) {
	o, rc, client := versityObjects(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), 100<<10/16)
	sum := sha256.Sum256(data)

	info, err := o.Put(ctx, "a.png", bytes.NewReader(data), storage.PutOptions{ContentType: "image/png", Size: int64(len(data)), SHA256: sum[:]}, 0)
	if err != nil || info.Size != int64(len(data)) || info.ETag == "" {
		t.Fatalf("put: %+v, %v", info, err)
	}
	if got, want := rc.requests(), []string{"PUT " + hex.EncodeToString(sum[:])}; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("requests %q, want one %q", got, want)
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("media"), Key: aws.String("p/a.png")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, data) || aws.ToString(out.ContentType) != "image/png" {
		t.Fatalf("stored %d bytes (%s), want the %d put", len(got), aws.ToString(out.ContentType), len(data))
	}

	// The same size, other bytes: the bucket refuses them.
	other := bytes.Repeat([]byte("x"), len(data))
	_, err = o.Put(ctx, "b.png", bytes.NewReader(other), storage.PutOptions{ContentType: "image/png", Size: int64(len(other)), SHA256: sum[:]}, 0)
	if err == nil || storage.Code(err) == storage.Unknown {
		t.Fatalf("put of bytes that do not match the declared sha256: %v, want a coded refusal", err)
	}
	if _, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("media"), Key: aws.String("p/b.png")}); err == nil {
		t.Fatal("the bytes that did not match the declared sha256 were stored")
	}

	// Without a declared sha256 the bytes are hashed as before, and a
	// reader that is not seekable is read once into one buffer.
	if _, err := o.Put(ctx, "c.png", io.MultiReader(bytes.NewReader(data[:10]), bytes.NewReader(data[10:])), storage.PutOptions{ContentType: "image/png", Size: int64(len(data))}, 0); err != nil {
		t.Fatal(err)
	}
	reqs := rc.requests()
	if last := reqs[len(reqs)-1]; last != "PUT "+hex.EncodeToString(sum[:]) {
		t.Fatalf("last request %q, want a PUT signed with the body's sha256", last)
	}

	// A reader longer than the declared size is refused, nothing stored.
	_, err = o.Put(ctx, "d.png", strings.NewReader(string(data)+"!"), storage.PutOptions{ContentType: "image/png", Size: int64(len(data))}, 0)
	if storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("put of more bytes than declared: %v, want InvalidArgument", err)
	}
	if _, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("media"), Key: aws.String("p/d.png")}); err == nil {
		t.Fatal("a body longer than declared was stored")
	}
}
