package s3kit

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/magicads/r2storage/shared/storage"
)

func TestNewClientsChecksumsOnlyWhenRequired(t *testing.T) {
	client, tm := NewClients(ClientConfig{Region: "us-east-1", Endpoint: "http://127.0.0.1:1", UsePathStyle: true, AccessKeyID: "a", SecretAccessKey: "b"})
	o := client.Options()
	if o.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired || o.ResponseChecksumValidation != aws.ResponseChecksumValidationWhenRequired {
		t.Fatalf("client checksums: request %v, response %v; want WhenRequired", o.RequestChecksumCalculation, o.ResponseChecksumValidation)
	}
	if o.Region != "us-east-1" || aws.ToString(o.BaseEndpoint) != "http://127.0.0.1:1" || !o.UsePathStyle {
		t.Fatalf("client options: region %q endpoint %q path style %v", o.Region, aws.ToString(o.BaseEndpoint), o.UsePathStyle)
	}
	if tm == nil {
		t.Fatal("no transfer manager")
	}
	client, _ = NewClients(ClientConfig{Region: "eu-west-1"})
	if client.Options().BaseEndpoint != nil {
		t.Fatalf("without an endpoint the base endpoint is %q, want the SDK's resolution", aws.ToString(client.Options().BaseEndpoint))
	}
}

func TestTotalFromContentRange(t *testing.T) {
	for cr, want := range map[string]int64{"bytes 0-9/100": 100, "bytes 5-5/6": 6, "": 7, "bytes 0-9/*": 7} {
		if got := totalFromContentRange(cr, 7); got != want {
			t.Errorf("%q: %d, want %d", cr, got, want)
		}
	}
}

// sentinelClient fails every request, counting them.
type sentinelClient struct {
	mu sync.Mutex
	n  int
}

func (c *sentinelClient) Do(*http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return nil, errors.New("not sent")
}

func TestBucketRefusesANegativeOffsetWithoutARequest(t *testing.T) {
	hc := &sentinelClient{}
	client, tm := NewClients(ClientConfig{Region: "us-east-1", Endpoint: "http://127.0.0.1:1", AccessKeyID: "a", SecretAccessKey: "b", HTTPClient: hc})
	b := Bucket{Client: client, Uploader: tm, Name: "media"}
	_, _, err := b.Get(context.Background(), "a.png", "p/a.png", storage.GetOptions{Offset: -1})
	if storage.Code(err) != storage.InvalidArgument || !strings.Contains(err.Error(), "a.png") {
		t.Fatalf("negative offset: %v, want InvalidArgument naming the key", err)
	}
	if hc.n != 0 {
		t.Fatalf("%d requests sent for a refused call", hc.n)
	}
}

func TestBucketUsesItsErrorMapper(t *testing.T) {
	client, tm := NewClients(ClientConfig{Region: "us-east-1", Endpoint: "http://127.0.0.1:1", AccessKeyID: "a", SecretAccessKey: "b", HTTPClient: &sentinelClient{}})
	mapped := errors.New("mapped")
	var ops []string
	b := Bucket{Client: client, Uploader: tm, Name: "media", ToErr: func(op, key string, err error) error {
		ops = append(ops, op+" "+key)
		return mapped
	}}
	ctx := context.Background()
	if _, err := b.Stat(ctx, "a.png", "p/a.png"); err != mapped {
		t.Fatalf("stat: %v, want the mapper's error", err)
	}
	if err := b.Delete(ctx, "a.png", "p/a.png"); err != mapped {
		t.Fatalf("delete: %v, want the mapper's error", err)
	}
	if _, err := b.Put(ctx, "a.png", "p/a.png", Upload{Body: strings.NewReader("x"), Size: 1, ContentType: "image/png", CacheControl: "no-cache"}); err != mapped {
		t.Fatalf("put: %v, want the mapper's error", err)
	}
	if strings.Join(ops, ",") != "stat a.png,delete a.png,put a.png" {
		t.Fatalf("mapper called for %v", ops)
	}
}
