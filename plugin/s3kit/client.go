package s3kit

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyauth "github.com/aws/smithy-go/auth"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
)

// Upload tuning. An object under PartSize goes in one request and holds at
// most its own size (nothing when its body is a file); a larger one holds
// about (UploadConcurrency+2) × PartSize, whatever its size: the transfer
// manager's first part plus a pool of UploadConcurrency+1 part buffers.
const (
	// PartSize is the multipart part size: S3 needs parts of at least
	// 5 MiB, and R2 (like some other services) needs them equal.
	PartSize = 5 << 20
	// UploadConcurrency is how many parts of one object upload at once.
	UploadConcurrency = 2
	// MaxParts is the S3 limit on parts in one multipart upload.
	MaxParts = 10000
	// MaxObjectSize is the largest object an upload takes at PartSize.
	MaxObjectSize = int64(PartSize) * MaxParts
	// MemoryLimit is a plugin's soft Go heap limit: the part buffers plus
	// room for gRPC chunks in flight.
	MemoryLimit = 40 << 20
)

// ClientConfig says how to reach a bucket's S3 API.
type ClientConfig struct {
	// Region is the signing region ("auto" for R2).
	Region string
	// Endpoint is the S3 API base URL; "" lets the SDK resolve Amazon S3's
	// endpoint for Region.
	Endpoint string
	// UsePathStyle addresses buckets as endpoint/bucket.
	UsePathStyle bool
	// AccessKeyID and SecretAccessKey are static credentials.
	AccessKeyID, SecretAccessKey string
	// HTTPClient sends the requests; nil is NewHTTPClient(Timeouts).
	HTTPClient aws.HTTPClient
	// Timeouts apply when HTTPClient is nil.
	Timeouts Timeouts
}

// NewClients returns the S3 client and the transfer manager for cfg. Both
// compute request checksums and validate responses only when required
// (R2 and other services reject the SDK's default CRC32 trailers); the
// transfer manager uploads in equal PartSize parts, UploadConcurrency at a
// time, and aborts a failed multipart upload with a fresh context. Nothing
// is read from the environment or shared config files.
func NewClients(cfg ClientConfig) (*s3.Client, *transfermanager.Client) {
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = NewHTTPClient(cfg.Timeouts)
	}
	awsCfg := aws.Config{
		Region:                     cfg.Region,
		Credentials:                credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		HTTPClient:                 httpClient,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 3 })
		},
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.EndpointResolverV2 = newCachedEndpoints(s3.NewDefaultEndpointResolverV2())
		o.UsePathStyle = cfg.UsePathStyle
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	tm := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = PartSize
		o.MultipartUploadThreshold = PartSize
		o.Concurrency = UploadConcurrency
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.DisableChecksumValidation = true
		// Abort a failed multipart upload with a fresh context, even when
		// the upload failed because its context was cancelled.
		o.FailTimeout = 30 * time.Second
	})
	return client, tm
}

// maxCachedEndpoints bounds the endpoints a client remembers: one per
// bucket and call shape in practice.
const maxCachedEndpoints = 64

// cachedEndpoints remembers the S3 endpoint rules' answers. The SDK
// evaluates its rules on every request and, for a region outside AWS's
// list (R2's "auto"), compiles its partition regular expressions each
// time: about a seventh of a small upload's CPU. The answer depends only
// on the parameters, so the same parameters get the same endpoint.
type cachedEndpoints struct {
	next s3.EndpointResolverV2
	mu   sync.Mutex
	m    map[endpointKey]smithyendpoints.Endpoint
}

func newCachedEndpoints(next s3.EndpointResolverV2) *cachedEndpoints {
	return &cachedEndpoints{next: next, m: map[endpointKey]smithyendpoints.Endpoint{}}
}

// endpointKey is every endpoint parameter, nil kept apart from a zero
// value (the rules tell them apart).
type endpointKey struct {
	bucket, region, endpoint, key, prefix, copySource optString
	flags                                             [11]int8
}

// optString is a *string as a comparable value.
type optString struct {
	set bool
	v   string
}

func optS(p *string) optString {
	if p == nil {
		return optString{}
	}
	return optString{true, *p}
}

func optB(p *bool) int8 {
	switch {
	case p == nil:
		return 0
	case *p:
		return 2
	}
	return 1
}

func keyOf(p s3.EndpointParameters) endpointKey {
	return endpointKey{
		bucket: optS(p.Bucket), region: optS(p.Region), endpoint: optS(p.Endpoint),
		key: optS(p.Key), prefix: optS(p.Prefix), copySource: optS(p.CopySource),
		flags: [11]int8{optB(p.UseFIPS), optB(p.UseDualStack), optB(p.ForcePathStyle), optB(p.Accelerate), optB(p.UseGlobalEndpoint),
			optB(p.UseObjectLambdaEndpoint), optB(p.DisableAccessPoints), optB(p.DisableMultiRegionAccessPoints), optB(p.UseArnRegion),
			optB(p.UseS3ExpressControlEndpoint), optB(p.DisableS3ExpressSessionAuth)},
	}
}

// ResolveEndpoint answers the rules' endpoint for params, evaluating them
// once per distinct parameters.
func (c *cachedEndpoints) ResolveEndpoint(ctx context.Context, params s3.EndpointParameters) (smithyendpoints.Endpoint, error) {
	// The rules do not read the object key (TestCachedEndpoints checks
	// this SDK's answers with and without it): leave it out, or no answer
	// would ever be used twice.
	params.Key = nil
	k := keyOf(params)
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if !ok {
		var err error
		if e, err = c.next.ResolveEndpoint(ctx, params); err != nil {
			return e, err
		}
		c.mu.Lock()
		if len(c.m) < maxCachedEndpoints {
			c.m[k] = e
		}
		c.mu.Unlock()
	}
	return cloneEndpoint(e), nil
}

// cloneEndpoint copies e down to every map the SDK writes into: its
// headers, its properties and its auth options' properties (the request's
// signer properties are the options' own maps).
func cloneEndpoint(e smithyendpoints.Endpoint) smithyendpoints.Endpoint {
	e.Headers = e.Headers.Clone()
	props := cloneProps(e.Properties)
	if opts, ok := smithyauth.GetAuthOptions(&props); ok {
		copied := make([]*smithyauth.Option, len(opts))
		for i, o := range opts {
			copied[i] = &smithyauth.Option{SchemeID: o.SchemeID, IdentityProperties: cloneProps(o.IdentityProperties), SignerProperties: cloneProps(o.SignerProperties)}
		}
		smithyauth.SetAuthOptions(&props, copied)
	}
	e.Properties = props
	return e
}

func cloneProps(p smithy.Properties) smithy.Properties {
	var out smithy.Properties
	out.SetAll(&p)
	return out
}
