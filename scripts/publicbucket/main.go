// Command publicbucket stands in for a Cloudflare R2 bucket's public URL
// (https://pub-….r2.dev or a custom domain) in local demos: it serves the
// objects of one bucket of any S3 endpoint (a local versitygw, say) read-only
// and without credentials.
//
//	go run ./scripts/publicbucket --endpoint http://127.0.0.1:9000 --bucket NAME \
//	    --access KEY --secret SECRET [--addr 127.0.0.1:9001] [--create-bucket] [--region auto]
//
// GET and HEAD /<key> answer with the object, streamed from the endpoint, and
// its Content-Type, Content-Length, ETag, Cache-Control and Last-Modified
// (Range and If-None-Match/If-Modified-Since are passed on, as on r2.dev).
// The key is the request path without its leading slash, percent-decoded
// exactly once: /images/a%2Bb%20c.png is the key "images/a+b c.png", and a
// literal + stays a +. A missing key, or the bare /, is 404: there is no
// listing. Other methods are 405.
//
// At start it checks that the bucket exists and the credentials work
// (waiting up to --wait for the endpoint to answer); with --create-bucket a
// missing bucket is created. It signs for --region: auto (R2's) by default,
// the bucket's region (e.g. us-east-1) for a server of another S3-compatible
// provider that checks it. It listens on 127.0.0.1 by default and is for
// development only: anyone who can reach it can read the whole bucket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// defaultAddr is where the demo's Public / CDN URL points.
const defaultAddr = "127.0.0.1:9001"

// region is R2's only region, the default of --region.
const region = "auto"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "publicbucket:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	addr, endpoint, bucket, access, secret, region string
	createBucket                                   bool
	wait                                           time.Duration
}

func parse(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("publicbucket", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", defaultAddr, "listen address")
	fs.StringVar(&c.endpoint, "endpoint", "", "S3 endpoint URL, e.g. http://127.0.0.1:9000 (required)")
	fs.StringVar(&c.bucket, "bucket", "", "bucket to serve (required)")
	fs.StringVar(&c.access, "access", "", "S3 access key ID (required)")
	fs.StringVar(&c.secret, "secret", "", "S3 secret access key (required)")
	fs.StringVar(&c.region, "region", region, "region to sign for: auto for R2, the bucket's region (e.g. us-east-1) for an S3-compatible server")
	fs.BoolVar(&c.createBucket, "create-bucket", false, "create the bucket at start if it does not exist")
	fs.DurationVar(&c.wait, "wait", 30*time.Second, "how long to wait at start for the endpoint to answer")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() != 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, req := range []struct{ flag, value string }{
		{"--endpoint", c.endpoint}, {"--bucket", c.bucket}, {"--access", c.access}, {"--secret", c.secret},
	} {
		if req.value == "" {
			return c, fmt.Errorf("%s is required", req.flag)
		}
	}
	u, err := url.Parse(c.endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("--endpoint %q must be an http(s) URL such as http://127.0.0.1:9000", c.endpoint)
	}
	return c, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	c, err := parse(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	client := newClientIn(c.region, c.endpoint, c.access, c.secret, nil)
	created, err := prepareBucket(ctx, client, c.bucket, c.endpoint, c.createBucket, c.wait)
	if err != nil {
		return err
	}
	if created {
		log.Info("created bucket", "bucket", c.bucket, "endpoint", c.endpoint)
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another server using that port? choose another with --addr)", c.addr, err)
	}
	srv := &http.Server{
		Handler:           &handler{client: client, bucket: c.bucket, log: log},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	log.Info("publicbucket listening", "url", "http://"+ln.Addr().String(), "bucket", c.bucket, "endpoint", c.endpoint)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close()
	}
	log.Info("publicbucket stopped")
	return nil
}

// newClient returns an S3 client for endpoint as the plugin builds one for
// R2: static credentials, region auto, checksums only when required and
// path-style addressing. It reads no environment variables or config files.
func newClient(endpoint, access, secret string, hc *http.Client) *s3.Client {
	return newClientIn(region, endpoint, access, secret, hc)
}

// newClientIn is newClient signing for signingRegion.
func newClientIn(signingRegion, endpoint, access, secret string, hc *http.Client) *s3.Client {
	cfg := aws.Config{
		Region:                     signingRegion,
		Credentials:                credentials.NewStaticCredentialsProvider(access, secret, ""),
		BaseEndpoint:               aws.String(endpoint),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if hc != nil {
		cfg.HTTPClient = hc
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
}

// prepareBucket checks that bucket exists and the credentials are accepted,
// creating the bucket when create is set. Until wait has passed it retries
// errors that carry no HTTP answer (the endpoint is still starting). It
// reports whether it created the bucket.
func prepareBucket(ctx context.Context, c *s3.Client, bucket, endpoint string, create bool, wait time.Duration) (bool, error) {
	deadline := time.Now().Add(wait)
	for {
		_, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
		status := httpStatus(err)
		switch {
		case err == nil:
			return false, nil
		case status == http.StatusNotFound && create:
			_, err = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
			if err == nil || isCode(err, "BucketAlreadyOwnedByYou") {
				return err == nil, nil
			}
			return false, fmt.Errorf("creating bucket %q at %s: %w", bucket, endpoint, err)
		case status == http.StatusNotFound:
			return false, fmt.Errorf("bucket %q not found at %s (pass --create-bucket to create it)", bucket, endpoint)
		case status == http.StatusForbidden || status == http.StatusUnauthorized:
			return false, fmt.Errorf("%s rejected the credentials for bucket %q (HTTP %d): check --access and --secret", endpoint, bucket, status)
		case status != 0:
			return false, fmt.Errorf("checking bucket %q at %s: %w", bucket, endpoint, err)
		case ctx.Err() != nil:
			return false, ctx.Err()
		case time.Now().After(deadline):
			return false, fmt.Errorf("the S3 endpoint %s did not answer within %v: %w", endpoint, wait, err)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// handler serves the objects of one bucket.
type handler struct {
	client *s3.Client
	bucket string
	log    *slog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// The server has percent-decoded the path once into URL.Path; decoding
	// again would turn a key's literal "%2B" into "+".
	key := strings.TrimPrefix(r.URL.Path, "/")
	if key == "" {
		http.NotFound(w, r)
		return
	}
	cond := conditions(r)
	if r.Method == http.MethodHead {
		out, err := h.client.HeadObject(r.Context(), &s3.HeadObjectInput{
			Bucket: aws.String(h.bucket), Key: aws.String(key), Range: cond.rng,
			IfNoneMatch: cond.ifNoneMatch, IfModifiedSince: cond.ifModifiedSince,
		})
		if err != nil {
			h.fail(w, r, key, err)
			return
		}
		writeHeaders(w, object{
			contentType: out.ContentType, contentLength: out.ContentLength, etag: out.ETag,
			cacheControl: out.CacheControl, contentEncoding: out.ContentEncoding,
			contentDisposition: out.ContentDisposition, lastModified: out.LastModified,
			contentRange: out.ContentRange,
		})
		return
	}
	out, err := h.client.GetObject(r.Context(), &s3.GetObjectInput{
		Bucket: aws.String(h.bucket), Key: aws.String(key), Range: cond.rng,
		IfNoneMatch: cond.ifNoneMatch, IfModifiedSince: cond.ifModifiedSince,
	})
	if err != nil {
		h.fail(w, r, key, err)
		return
	}
	defer out.Body.Close()
	writeHeaders(w, object{
		contentType: out.ContentType, contentLength: out.ContentLength, etag: out.ETag,
		cacheControl: out.CacheControl, contentEncoding: out.ContentEncoding,
		contentDisposition: out.ContentDisposition, lastModified: out.LastModified,
		contentRange: out.ContentRange,
	})
	if _, err := io.Copy(w, out.Body); err != nil && r.Context().Err() == nil {
		h.log.Warn("streaming object", "key", key, "error", err)
	}
}

// requestConditions are the request headers passed on to the bucket.
type requestConditions struct {
	rng, ifNoneMatch *string
	ifModifiedSince  *time.Time
}

func conditions(r *http.Request) requestConditions {
	var c requestConditions
	if v := r.Header.Get("Range"); strings.HasPrefix(v, "bytes=") {
		c.rng = aws.String(v)
	}
	if v := r.Header.Get("If-None-Match"); v != "" {
		c.ifNoneMatch = aws.String(v)
	} else if v := r.Header.Get("If-Modified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil {
			c.ifModifiedSince = aws.Time(t)
		}
	}
	return c
}

// object is the metadata of an object answer.
type object struct {
	contentType, etag, cacheControl, contentEncoding, contentDisposition, contentRange *string
	contentLength                                                                      *int64
	lastModified                                                                       *time.Time
}

func writeHeaders(w http.ResponseWriter, o object) {
	hd := w.Header()
	set := func(name string, v *string) {
		if v != nil && *v != "" {
			hd.Set(name, *v)
		}
	}
	if o.contentType == nil || *o.contentType == "" {
		o.contentType = aws.String("application/octet-stream")
	}
	set("Content-Type", o.contentType)
	set("ETag", o.etag)
	set("Cache-Control", o.cacheControl)
	set("Content-Encoding", o.contentEncoding)
	set("Content-Disposition", o.contentDisposition)
	set("Content-Range", o.contentRange)
	if o.contentLength != nil {
		hd.Set("Content-Length", strconv.FormatInt(*o.contentLength, 10))
	}
	if o.lastModified != nil {
		hd.Set("Last-Modified", o.lastModified.UTC().Format(http.TimeFormat))
	}
	hd.Set("Accept-Ranges", "bytes")
	hd.Set("X-Content-Type-Options", "nosniff")
	if o.contentRange != nil && *o.contentRange != "" {
		w.WriteHeader(http.StatusPartialContent)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// fail answers a failed bucket read: 404 for a missing key, the bucket's
// status for conditional and range answers, 502 for anything else.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, key string, err error) {
	switch status := httpStatus(err); status {
	case http.StatusNotFound:
		http.NotFound(w, r)
	case http.StatusNotModified:
		w.WriteHeader(http.StatusNotModified)
	case http.StatusPreconditionFailed, http.StatusRequestedRangeNotSatisfiable:
		http.Error(w, http.StatusText(status), status)
	default:
		if r.Context().Err() != nil {
			return
		}
		h.log.Error("reading object", "key", key, "status", status, "error", err)
		http.Error(w, "the bucket could not be read", http.StatusBadGateway)
	}
}

// httpStatus is the HTTP status of the S3 answer behind err, 0 if none.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// isCode reports whether err is an S3 error with the given code.
func isCode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}
