package r2

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/shared/storage"
)

const bucket = "magicads-media"

// newVersity starts versitygw with a bucket and returns settings for it.
func newVersity(t *testing.T) (*s3test.Server, storage.Settings) {
	t.Helper()
	srv := s3test.StartVersity(t)
	srv.CreateBucket(t, bucket)
	return srv, storage.Settings{
		"access_key_id": srv.AccessKey, "secret_access_key": srv.SecretKey,
		"bucket": bucket, "endpoint": srv.Endpoint, "public_url": "https://pub-test.r2.dev",
		"key_prefix": "magicads", "use_path_style": true,
	}
}

// newProvider returns a provider logging into logs, configured with s.
func newProvider(t *testing.T, s storage.Settings, httpClient *http.Client, logs io.Writer) *Provider {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	p, err := NewFromBundle(hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}))
	if err != nil {
		t.Fatal(err)
	}
	if httpClient != nil {
		p.opts.HTTPClient = httpClient
	}
	if _, err := p.Configure(context.Background(), s); err != nil {
		t.Fatalf("configure: %v", err)
	}
	return p
}

func with(s storage.Settings, kv ...any) storage.Settings {
	out := storage.Settings{}
	for k, v := range s {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func TestTestConnectionSucceedsAndLeavesNothing(t *testing.T) {
	srv, s := newVersity(t)
	p := newProvider(t, s, nil, nil)
	res, err := p.TestConnection(context.Background())
	if err != nil || !res.OK {
		t.Fatalf("test connection: %+v, %v", res, err)
	}
	if !strings.HasPrefix(res.ProbeKey, ProbeDir+"/") {
		t.Fatalf("probe key %q not under %s", res.ProbeKey, ProbeDir)
	}
	if keys := srv.Keys(t, bucket); len(keys) != 0 {
		t.Fatalf("test connection left %v in the bucket", keys)
	}
}

func TestTestConnectionNamesTheCause(t *testing.T) {
	srv, s := newVersity(t)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	deadEndpoint := "http://" + closed.Addr().String()
	closed.Close()
	wrongSecret := strings.Repeat("0", len(srv.SecretKey))
	cases := []struct {
		name     string
		settings storage.Settings
		step     string
		want     string
	}{
		{"wrong secret", with(s, "secret_access_key", wrongSecret), storage.StepUpload, "Connection failed: bad credentials"},
		{"unknown access key", with(s, "access_key_id", "AKIAUNKNOWN0000"), storage.StepUpload, "Connection failed: bad credentials"},
		{"missing bucket", with(s, "bucket", "no-such-bucket"), storage.StepUpload, `Connection failed: bucket "no-such-bucket" not found`},
		{"unreachable endpoint", with(s, "endpoint", deadEndpoint), storage.StepUpload, "Connection failed: endpoint unreachable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			p := newProvider(t, c.settings, nil, &logs)
			res, err := p.TestConnection(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if res.OK || res.Step != c.step || !strings.HasPrefix(res.Message, c.want) {
				t.Fatalf("got %+v, want step %s and a message starting %q", res, c.step, c.want)
			}
			for _, secret := range []string{srv.SecretKey, wrongSecret} {
				if strings.Contains(res.Message, secret) || strings.Contains(logs.String(), secret) {
					t.Fatal("a secret leaked into the message or the log")
				}
			}
		})
	}
	if keys := srv.Keys(t, bucket); len(keys) != 0 {
		t.Fatalf("failed tests left %v", keys)
	}
}

func TestTestConnectionReadBackFailures(t *testing.T) {
	srv, s := newVersity(t)
	rec := s3test.NewRecorder(t, srv.Endpoint)
	p := newProvider(t, with(s, "endpoint", rec.URL), rec.Client(), nil)

	// A token that can write but not read: every GET is refused.
	rec.SetFault(func(r *http.Request) (int, string, bool) {
		return http.StatusForbidden, "AccessDenied", r.Method == http.MethodGet
	})
	res, err := p.TestConnection(context.Background())
	if err != nil || res.OK || res.Step != storage.StepRead || res.Message != MsgReadBack {
		t.Fatalf("write-only token: %+v, %v; want exactly %q", res, err, MsgReadBack)
	}
	if keys := srv.Keys(t, bucket); len(keys) != 0 {
		t.Fatalf("the probe was not removed after a failed read: %v", keys)
	}

	// A store that returns other bytes than it was given.
	rec.SetFault(func(r *http.Request) (int, string, bool) {
		return http.StatusOK, "<not-the-probe/>", r.Method == http.MethodGet
	})
	res, _ = p.TestConnection(context.Background())
	if res.OK || res.Step != storage.StepRead || res.Message != MsgMismatch {
		t.Fatalf("mismatch: %+v", res)
	}

	// A token that cannot delete.
	rec.SetFault(func(r *http.Request) (int, string, bool) {
		return http.StatusForbidden, "AccessDenied", r.Method == http.MethodDelete
	})
	res, _ = p.TestConnection(context.Background())
	if res.OK || res.Step != storage.StepDelete || !strings.Contains(res.Message, "could not be deleted") {
		t.Fatalf("delete refused: %+v", res)
	}
}

func TestTestConnectionWithoutConfiguration(t *testing.T) {
	p, err := NewFromBundle(nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.TestConnection(context.Background())
	if err != nil || res.OK || res.Step != storage.StepConfig {
		t.Fatalf("unconfigured: %+v, %v", res, err)
	}
}

// forbidden are request headers R2 refuses or answers 501 to, and the
// markers of the SDK's default checksum trailers.
var forbidden = []string{
	"X-Amz-Acl", "X-Amz-Grant-Read", "X-Amz-Grant-Full-Control", "X-Amz-Tagging",
	"X-Amz-Server-Side-Encryption", "X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id",
	"X-Amz-Object-Lock-Mode", "X-Amz-Object-Lock-Retain-Until-Date", "X-Amz-Object-Lock-Legal-Hold",
	"X-Amz-Trailer", "X-Amz-Sdk-Checksum-Algorithm", "X-Amz-Decoded-Content-Length",
	"X-Amz-Checksum-Crc32", "X-Amz-Checksum-Crc32c", "X-Amz-Checksum-Crc64nvme", "X-Amz-Checksum-Sha1", "X-Amz-Checksum-Sha256",
}

func TestRequestsCarryNothingR2Refuses(t *testing.T) {
	srv, s := newVersity(t)
	rec := s3test.NewRecorder(t, srv.Endpoint)
	p := newProvider(t, with(s, "endpoint", rec.URL), rec.Client(), nil)
	ctx := context.Background()

	small := []byte("small object")
	if _, err := p.Put(ctx, "images/gemini/a.png", bytes.NewReader(small), storage.PutOptions{ContentType: "image/png", Size: int64(len(small))}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 2*PartSize+123) // three parts
	rand.Read(big)
	if _, err := p.Put(ctx, "videos/veo/b.mp4", bytes.NewReader(big), storage.PutOptions{ContentType: "video/mp4", Size: -1}); err != nil {
		t.Fatal(err)
	}
	rc, _, err := p.Get(ctx, "videos/veo/b.mp4", storage.GetOptions{Length: -1})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, big) {
		t.Fatal("multipart object did not read back intact")
	}
	if _, err := p.Stat(ctx, "images/gemini/a.png"); err != nil {
		t.Fatal(err)
	}
	if res, err := p.TestConnection(ctx); err != nil || !res.OK {
		t.Fatalf("test connection through the recorder: %+v, %v", res, err)
	}
	for _, key := range []string{"images/gemini/a.png", "videos/veo/b.mp4"} {
		if err := p.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
	}

	reqs := rec.Requests()
	var puts, parts int
	for _, r := range reqs {
		for _, h := range forbidden {
			if v := r.Header.Get(h); v != "" {
				t.Errorf("%s %s sent %s: %s", r.Method, r.Path, h, v)
			}
		}
		if ce := r.Header.Get("Content-Encoding"); strings.Contains(ce, "aws-chunked") {
			t.Errorf("%s %s sent Content-Encoding %s", r.Method, r.Path, ce)
		}
		if sha := r.Header.Get("X-Amz-Content-Sha256"); strings.HasPrefix(sha, "STREAMING-") {
			t.Errorf("%s %s used streaming signing %s", r.Method, r.Path, sha)
		}
		if r.Method == http.MethodPut && strings.Contains(r.RawQuery, "partNumber") {
			parts++
		} else if r.Method == http.MethodPut {
			puts++
			if r.Header.Get("Cache-Control") != CacheControl && strings.Contains(r.Path, "/magicads/images/") {
				t.Errorf("put %s: Cache-Control %q", r.Path, r.Header.Get("Cache-Control"))
			}
		}
		if r.Method == http.MethodPost && strings.Contains(r.RawQuery, "uploads") && r.Header.Get("Cache-Control") != CacheControl {
			t.Errorf("multipart create: Cache-Control %q", r.Header.Get("Cache-Control"))
		}
	}
	if puts < 2 || parts != 3 {
		t.Fatalf("saw %d PUTs and %d part uploads, want ≥2 and 3: the test did not exercise both upload paths", puts, parts)
	}
}

func TestKeysLandUnderThePrefix(t *testing.T) {
	srv, s := newVersity(t)
	p := newProvider(t, s, nil, nil)
	ctx := context.Background()
	info, err := p.Put(ctx, "images/gemini/0b6f.png", strings.NewReader("png"), storage.PutOptions{ContentType: "image/png", Size: 3})
	if err != nil {
		t.Fatal(err)
	}
	if keys := srv.Keys(t, bucket); len(keys) != 1 || keys[0] != "magicads/images/gemini/0b6f.png" {
		t.Fatalf("bucket keys %v", keys)
	}
	if info.Key != "images/gemini/0b6f.png" || info.URL != "https://pub-test.r2.dev/magicads/images/gemini/0b6f.png" {
		t.Fatalf("info %+v", info)
	}
	st, err := p.Stat(ctx, "images/gemini/0b6f.png")
	if err != nil || st.ContentType != "image/png" || st.Size != 3 {
		t.Fatalf("stat %+v, %v", st, err)
	}
	out, err := srv.Client().HeadObject(ctx, headInput("magicads/images/gemini/0b6f.png"))
	if err != nil || derefString(out.CacheControl) != CacheControl {
		t.Fatalf("Cache-Control stored: %v, %v", out, err)
	}
}

// blockAfter yields n random bytes, then blocks until ctx ends.
type blockAfter struct {
	ctx  context.Context
	n    int
	sent chan struct{}
}

func (b *blockAfter) Read(p []byte) (int, error) {
	if b.n == 0 {
		select {
		case <-b.sent:
		default:
			close(b.sent)
		}
		<-b.ctx.Done()
		return 0, b.ctx.Err()
	}
	k := min(len(p), b.n)
	rand.Read(p[:k])
	b.n -= k
	return k, nil
}

func TestCancelledMultipartPutIsAborted(t *testing.T) {
	srv, s := newVersity(t)
	p := newProvider(t, s, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	body := &blockAfter{ctx: ctx, n: 3*PartSize + 1, sent: make(chan struct{})}
	go func() { <-body.sent; cancel() }()
	_, err := p.Put(ctx, "videos/cancelled.mp4", body, storage.PutOptions{ContentType: "video/mp4", Size: 64 << 20})
	if storage.Code(err) != storage.Canceled {
		t.Fatalf("cancelled put: %v (code %v)", err, storage.Code(err))
	}
	if keys := srv.Keys(t, bucket); len(keys) != 0 {
		t.Fatalf("cancelled put left objects %v", keys)
	}
	if ups := srv.MultipartUploads(t, bucket); len(ups) != 0 {
		t.Fatalf("cancelled put left multipart uploads %v", ups)
	}
}

func TestNotFoundAndMissingDelete(t *testing.T) {
	_, s := newVersity(t)
	p := newProvider(t, s, nil, nil)
	ctx := context.Background()
	if _, err := p.Stat(ctx, "nope.png"); !storage.IsNotFound(err) {
		t.Fatalf("stat missing: %v", err)
	}
	if _, _, err := p.Get(ctx, "nope.png", storage.GetOptions{Length: -1}); !storage.IsNotFound(err) {
		t.Fatalf("get missing: %v", err)
	}
	if err := p.Delete(ctx, "nope.png"); err != nil {
		t.Fatalf("delete missing: %v", err)
	}
}

func TestConfigureRefusesBadSettings(t *testing.T) {
	p, err := NewFromBundle(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		settings storage.Settings
		field    string
	}{
		{storage.Settings{"bucket": "Bad_Name"}, "bucket"},
		{storage.Settings{"jurisdiction": "mars"}, "jurisdiction"},
		{storage.Settings{"endpoint": "ftp://x"}, "endpoint"},
		{storage.Settings{"use_path_style": "yes"}, "use_path_style"},
		// The host's own settings are never the plugin's.
		{storage.Settings{"enabled": true}, "enabled"},
		{storage.Settings{"colour": "blue"}, "colour"},
		{storage.Settings{"access_key_id": "a", "secret_access_key": "b", "bucket": "media"}, "account_id"},
		{storage.Settings{}, "secret_access_key"},
	} {
		_, err := p.Configure(ctx, c.settings)
		if storage.Code(err) != storage.InvalidSettings {
			t.Errorf("%v: %v, want InvalidSettings", c.settings, err)
			continue
		}
		found := false
		for _, f := range storage.FieldsOf(err) {
			found = found || f.Field == c.field
		}
		if !found {
			t.Errorf("%v: fields %v do not name %s", c.settings, storage.FieldsOf(err), c.field)
		}
	}
	fe, err := p.ValidateSettings(ctx, storage.Settings{"bucket": "media"})
	if err != nil || len(fe) != 0 {
		t.Fatalf("a partial but valid save was refused: %v %v", fe, err)
	}
	if h, _ := p.Health(ctx); !h.OK || h.Configured {
		t.Fatalf("health after refused configures: %+v", h)
	}
}
