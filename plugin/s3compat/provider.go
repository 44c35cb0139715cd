// Package s3compat is the S3-compatible storage provider (Amazon S3,
// Wasabi, MinIO and other services speaking the S3 API): the
// storage.Provider served by the s3-compatible plugin binary.
//
// It talks S3 with aws-sdk-go-v2, signing for the configured region (never
// R2's "auto"), with request checksums and response validation only when
// required (many S3-compatible services reject the SDK's default CRC32
// trailers), and no ACL, tagging, SSE-KMS or object-lock headers. Uploads under
// a part go in one request signed with the declared sha256; larger ones go
// through the transfer manager with a pinned part size and small
// concurrency, so memory stays bounded whatever the object size.
package s3compat

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/hashicorp/go-hclog"

	"github.com/magicads/r2storage/plugin/s3kit"
	"github.com/magicads/r2storage/shared/storage"
)

// ID is the provider id, as in bundle/manifest.json.
const ID = "s3-compatible"

// Name is the provider's display name.
const Name = "S3-Compatible Storage"

// Upload tuning, shared with the other S3-based providers (s3kit).
const (
	// PartSize is the multipart part size.
	PartSize = s3kit.PartSize
	// UploadConcurrency is how many parts of one object upload at once.
	UploadConcurrency = s3kit.UploadConcurrency
	// MaxObjectSize is the largest object Put accepts at PartSize.
	MaxObjectSize = s3kit.MaxObjectSize
	// MemoryLimit is the plugin's soft Go heap limit.
	MemoryLimit = s3kit.MemoryLimit
)

// CacheControl is set on every object: results are uuid-named and never
// overwritten, so they can be cached forever.
const CacheControl = "public, max-age=31536000, immutable"

// Options configure a Provider.
type Options struct {
	// Version is reported by Describe (manifest.json's version).
	Version string
	// Logger receives the provider's logs; nil discards them.
	Logger hclog.Logger
	// ValidateSchema checks settings against the settings schema and returns
	// field errors; nil skips the schema check (the code checks still run).
	ValidateSchema func(storage.Settings) []storage.FieldError
	// HTTPClient overrides the HTTP client (tests use it to trust a test
	// CA); Timeouts do not apply to it.
	HTTPClient aws.HTTPClient
	// Timeouts bound the waits on a silent network; zero fields take the
	// defaults (5 s to connect or handshake, 15 s for response headers or
	// with no byte moving).
	Timeouts s3kit.Timeouts
	// Now returns the current time; nil is time.Now.
	Now func() time.Time
}

// Provider is the S3-compatible storage provider.
type Provider struct {
	opts Options
	log  hclog.Logger

	// calls are Put, Get, Stat, Delete, the Locator and the
	// UploadAborter, made on conn's objects.
	calls

	mu   sync.RWMutex
	conn *conn // nil until configured

	// abortListPage is the page size AbortUploads lists uploads with; 0
	// is s3kit.AbortListPageSize. Tests lower it to cover paging.
	abortListPage int32
}

// calls are the object calls the S3-based providers share (s3kit.Calls).
type calls = s3kit.Calls

// conn is one applied configuration: settings and the object calls built
// from them.
type conn struct {
	settings Settings
	objects  *s3kit.Objects // the object calls, in settings.Bucket
}

var _ storage.Provider = (*Provider)(nil)

// New returns an unconfigured provider.
func New(opts Options) *Provider {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Provider{opts: opts, log: opts.Logger}
	p.calls = s3kit.Calls{Current: p.objects, AbortPage: func() int32 { return p.abortListPage }}
	return p
}

// SetVersion replaces the version Describe reports; call it before serving.
func (p *Provider) SetVersion(v string) { p.opts.Version = v }

// Describe returns the provider's identity and capabilities.
func (p *Provider) Describe(context.Context) (storage.Info, error) {
	return storage.Info{
		ID:      ID,
		Name:    Name,
		Version: p.opts.Version,
		Capabilities: storage.Capabilities{
			PublicURLs:    true,
			RangeReads:    true,
			MaxObjectSize: MaxObjectSize,
			AbortUploads:  true,
			Locations:     true,
			Listing:       true,
		},
	}, nil
}

// ValidateSettings checks settings against the schema and the rules the
// schema cannot express. Completeness is not required: a partial save is valid.
func (p *Provider) ValidateSettings(_ context.Context, m storage.Settings) ([]storage.FieldError, error) {
	_, fe := p.validate(m)
	return fe, nil
}

func (p *Provider) validate(m storage.Settings) (Settings, []storage.FieldError) {
	var fe []storage.FieldError
	if p.opts.ValidateSchema != nil {
		fe = p.opts.ValidateSchema(m)
		if len(fe) > 0 {
			return Settings{}, fe
		}
	}
	return parseSettings(m)
}

// Configure applies complete, valid settings. On error the previous
// configuration stays in place.
func (p *Provider) Configure(_ context.Context, m storage.Settings) (storage.ConfigureResult, error) {
	s, fe := p.validate(m)
	if len(fe) == 0 {
		fe = s.missing()
	}
	if len(fe) > 0 {
		return storage.ConfigureResult{}, storage.SettingsError(fe)
	}
	c := p.newConn(s)
	p.mu.Lock()
	p.conn = c
	p.mu.Unlock()
	p.log.Info("configured", "region", s.Region, "bucket", s.Bucket, "bucket_id", s.BucketID(), "endpoint", s.ResolvedEndpoint(), "key_prefix", s.KeyPrefix, "path_style", s.UsePathStyle)
	return storage.ConfigureResult{PublicBaseURL: s.PublicURL, Bucket: s.BucketID(), KeyPrefix: s.keyPrefix()}, nil
}

func (p *Provider) newConn(s Settings) *conn {
	client, tm := s3kit.NewClients(s3kit.ClientConfig{
		Region:          s.Region,
		Endpoint:        s.Endpoint, // "": the SDK resolves Amazon S3's for the region
		UsePathStyle:    s.UsePathStyle,
		AccessKeyID:     s.AccessKeyID,
		SecretAccessKey: s.SecretAccessKey,
		HTTPClient:      p.opts.HTTPClient,
		Timeouts:        p.opts.Timeouts,
	})
	return &conn{settings: s, objects: &s3kit.Objects{
		Bucket:       s3kit.Bucket{Client: client, Uploader: tm, Name: s.Bucket, ToErr: toStorageError},
		KeyPrefix:    s.KeyPrefix,
		PublicURL:    s.PublicURL,
		BucketID:     s.BucketID(),
		ProviderID:   ID,
		CacheControl: CacheControl,
		Now:          p.opts.Now,
		Log:          p.log,
	}}
}

func (p *Provider) current() (*conn, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.conn == nil {
		return nil, &storage.Error{Code: storage.FailedPrecondition, Message: ID + " is not configured: save complete settings first"}
	}
	return p.conn, nil
}

// objects returns the current configuration's object calls.
func (p *Provider) objects() (*s3kit.Objects, error) {
	c, err := p.current()
	if err != nil {
		return nil, err
	}
	return c.objects, nil
}

// Health reports the provider's state without touching the network.
func (p *Provider) Health(context.Context) (storage.Health, error) {
	p.mu.RLock()
	c := p.conn
	p.mu.RUnlock()
	if c == nil {
		return storage.Health{OK: true, Configured: false, Message: "running, not configured"}, nil
	}
	return storage.Health{OK: true, Configured: true, Message: "configured for bucket " + c.settings.Bucket}, nil
}
