package s3kit

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyauth "github.com/aws/smithy-go/auth"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
)

// countingResolver counts the rule evaluations it passes on.
type countingResolver struct {
	next s3.EndpointResolverV2
	n    atomic.Int64
}

func (c *countingResolver) ResolveEndpoint(ctx context.Context, p s3.EndpointParameters) (smithyendpoints.Endpoint, error) {
	c.n.Add(1)
	return c.next.ResolveEndpoint(ctx, p)
}

// TestCachedEndpoints: the same parameters are resolved once, whatever
// the object key, and every answer is the SDK's own for those parameters
// with the key (path style and virtual hosts, R2's "auto" region and a
// real one, custom endpoints and AWS's).
func TestCachedEndpoints(t *testing.T) {
	ctx := context.Background()
	sdk := s3.NewDefaultEndpointResolverV2()
	inner := &countingResolver{next: sdk}
	c := newCachedEndpoints(inner)
	cases := []s3.EndpointParameters{
		{Bucket: aws.String("media"), Region: aws.String("auto"), Endpoint: aws.String("https://acc.r2.cloudflarestorage.com"), ForcePathStyle: aws.Bool(true)},
		{Bucket: aws.String("media"), Region: aws.String("auto"), Endpoint: aws.String("https://acc.r2.cloudflarestorage.com"), ForcePathStyle: aws.Bool(false)},
		{Bucket: aws.String("media"), Region: aws.String("eu-west-1")},
		{Bucket: aws.String("other"), Region: aws.String("us-east-1"), Endpoint: aws.String("http://127.0.0.1:7070"), ForcePathStyle: aws.Bool(true)},
	}
	for i, p := range cases {
		for _, key := range []string{"a.png", "images/b.png", "v/c d.mp4"} {
			p.Key = aws.String(key)
			want, werr := sdk.ResolveEndpoint(ctx, p)
			got, err := c.ResolveEndpoint(ctx, p)
			if (err == nil) != (werr == nil) || got.URI.String() != want.URI.String() {
				t.Fatalf("case %d key %q: cached %s, %v; the SDK says %s, %v", i, key, got.URI.String(), err, want.URI.String(), werr)
			}
		}
	}
	if n := inner.n.Load(); n != int64(len(cases)) {
		t.Fatalf("%d rule evaluations for %d distinct parameter sets", n, len(cases))
	}
}

// TestCachedEndpointsAreNotShared: what the SDK writes into an answer
// (its auth options' signer properties) never reaches the remembered
// answer or another request's: puts from many goroutines at once.
func TestCachedEndpointsAreNotShared(t *testing.T) {
	c := newCachedEndpoints(s3.NewDefaultEndpointResolverV2())
	p := s3.EndpointParameters{Bucket: aws.String("media"), Region: aws.String("auto"), Endpoint: aws.String("https://acc.r2.cloudflarestorage.com"), ForcePathStyle: aws.Bool(true)}
	a, err := c.ResolveEndpoint(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	opts, ok := smithyauth.GetAuthOptions(&a.Properties)
	if !ok || len(opts) == 0 {
		t.Fatal("the answer has no auth options")
	}
	opts[0].SignerProperties.Set("scribbled", true)
	a.Headers.Set("X-Scribbled", "1")
	b, _ := c.ResolveEndpoint(context.Background(), p)
	bopts, _ := smithyauth.GetAuthOptions(&b.Properties)
	if bopts[0].SignerProperties.Has("scribbled") || b.Headers.Get("X-Scribbled") != "" {
		t.Fatal("a change to one answer reached the next")
	}
}
