package s3kit

import (
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
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
