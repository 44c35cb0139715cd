package s3compat

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/magicads/r2storage/shared/manifest"
	"github.com/magicads/r2storage/shared/settingsschema"
	"github.com/magicads/r2storage/shared/storage"
)

func TestParseSettingsNormalises(t *testing.T) {
	s, fe := parseSettings(storage.Settings{
		"access_key_id": " AK ", "secret_access_key": "SK", "region": " eu-central-1 ", "bucket": "media",
		"endpoint": "https://s3.eu-central-1.wasabisys.com/", "public_url": "https://cdn.example.com/", "key_prefix": "/magicads/",
	})
	if len(fe) != 0 {
		t.Fatalf("field errors: %v", fe)
	}
	if s.AccessKeyID != "AK" || s.Region != "eu-central-1" || s.Endpoint != "https://s3.eu-central-1.wasabisys.com" || s.PublicURL != "https://cdn.example.com" || s.KeyPrefix != "magicads" {
		t.Fatalf("not normalised: %+v", s)
	}
	if m := s.missing(); len(m) != 0 {
		t.Fatalf("complete settings reported missing: %v", m)
	}
}

func TestParseSettingsRefuses(t *testing.T) {
	cases := map[string]storage.Settings{
		"region":     {"region": "auto"},
		"endpoint":   {"endpoint": "ftp://x"},
		"public_url": {"public_url": "https://user:pw@x.example.com"},
		"key_prefix": {"key_prefix": "a/../b"},
		"bucket":     {"bucket": 42},
	}
	for field, m := range cases {
		_, fe := parseSettings(m)
		if len(fe) != 1 || fe[0].Field != field {
			t.Errorf("%v: field errors %v, want one for %s", m, fe, field)
		}
	}
	_, fe := parseSettings(storage.Settings{"region": "AUTO"})
	if len(fe) != 1 || !strings.Contains(fe[0].Message, "Cloudflare R2") {
		t.Errorf("region AUTO: %v, want a message pointing at the R2 provider", fe)
	}
}

func TestMissingNeedsRegionNotAccountID(t *testing.T) {
	s, _ := parseSettings(storage.Settings{"access_key_id": "a", "secret_access_key": "b", "bucket": "media"})
	m := s.missing()
	if len(m) != 1 || m[0].Field != "region" {
		t.Fatalf("missing = %v, want only region", m)
	}
	s.Region = "us-east-1"
	if m := s.missing(); len(m) != 0 {
		t.Fatalf("missing with AWS defaults = %v, want none (no endpoint is needed)", m)
	}
}

func TestResolvedEndpoint(t *testing.T) {
	cases := []struct {
		s    Settings
		want string
	}{
		{Settings{Region: "us-east-1"}, "https://s3.us-east-1.amazonaws.com"},
		{Settings{Region: "cn-north-1"}, "https://s3.cn-north-1.amazonaws.com.cn"},
		{Settings{Region: "us-east-1", Endpoint: "http://127.0.0.1:9000"}, "http://127.0.0.1:9000"},
		{Settings{}, ""},
	}
	for _, c := range cases {
		if got := c.s.ResolvedEndpoint(); got != c.want {
			t.Errorf("%+v: endpoint %q, want %q", c.s, got, c.want)
		}
	}
}

func TestBucketID(t *testing.T) {
	cases := []struct {
		s    Settings
		want string
	}{
		{Settings{Region: "us-east-1", Bucket: "media"}, "s3:us-east-1/media"},
		{Settings{Region: "eu-west-1", Bucket: "media"}, "s3:eu-west-1/media"},
		{Settings{Region: "us-east-1", Bucket: "media", Endpoint: "https://s3.wasabisys.com"}, "s3.wasabisys.com/media"},
		{Settings{Region: "us-east-1", Bucket: "media", Endpoint: "https://S3.Wasabisys.com:443"}, "s3.wasabisys.com/media"},
		{Settings{Region: "us-east-1", Bucket: "media", Endpoint: "http://minio.internal:9000"}, "minio.internal:9000/media"},
		{Settings{Region: "us-east-1", Bucket: "media", Endpoint: "http://[::1]:9000"}, "[::1]:9000/media"},
		{Settings{Region: "us-east-1", Bucket: "media", Endpoint: "https://[::1]"}, "[::1]/media"},
		{Settings{Region: "us-east-1", Bucket: "media", Endpoint: "https://gw.example.com/s3"}, "gw.example.com/s3/media"},
	}
	for _, c := range cases {
		got := c.s.BucketID()
		if got != c.want {
			t.Errorf("%+v: bucket id %q, want %q", c.s, got, c.want)
		}
	}
	// Never a secret, whatever the settings.
	s := Settings{AccessKeyID: "AKIDSECRETISH", SecretAccessKey: "topsecret", Region: "us-east-1", Bucket: "media"}
	if id := s.BucketID(); strings.Contains(id, "topsecret") || strings.Contains(id, "AKIDSECRETISH") {
		t.Fatalf("bucket id %q carries a credential", id)
	}
}

// TestBundleIsValid: the manifest passes the manifest schema, and the
// settings schema compiles, declares the fields the host expects of every
// provider, and gates completeness on region but no R2 field.
func TestBundleIsValid(t *testing.T) {
	files, err := Bundle()
	if err != nil {
		t.Fatal(err)
	}
	data, err := fs.ReadFile(files, "manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if m.ID != ID || m.Name != Name || m.SettingsSchema != "schema/settings.schema.json" {
		t.Fatalf("manifest = %+v", m)
	}
	if _, err := fs.Stat(files, m.Migrations); err != nil {
		t.Fatalf("migrations folder %q: %v", m.Migrations, err)
	}
	doc, err := fs.ReadFile(files, m.SettingsSchema)
	if err != nil {
		t.Fatal(err)
	}
	schema, err := settingsschema.Compile(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, hosts := range []string{"enabled", "delete_local"} {
		if fe := schema.Validate(storage.Settings{hosts: false}); len(fe) == 0 {
			t.Errorf("the schema declares the host's %s", hosts)
		}
	}
	for _, field := range []string{"access_key_id", "secret_access_key", "region", "endpoint", "bucket", "use_path_style", "key_prefix", "public_url"} {
		if !strings.Contains(string(doc), `"`+field+`": {`) {
			t.Errorf("the schema does not declare %s", field)
		}
	}
	for _, r2only := range []string{"account_id", "jurisdiction"} {
		if fe := schema.Validate(storage.Settings{r2only: "x"}); len(fe) == 0 {
			t.Errorf("the schema accepts R2's %s", r2only)
		}
	}
	if got := schema.WriteOnly(); len(got) != 1 || got[0] != "secret_access_key" {
		t.Errorf("write-only fields %v, want only the secret", got)
	}
	complete := map[string]any{"access_key_id": "a", "secret_access_key": "b", "region": "us-east-1", "bucket": "media"}
	if !schema.FullyConfigured(complete) {
		t.Error("AWS settings without an endpoint are not fully configured")
	}
	delete(complete, "region")
	if schema.FullyConfigured(complete) {
		t.Error("settings without a region count as fully configured")
	}
	for _, v := range []storage.Settings{{"region": "US East"}, {"bucket": "Bad_Name"}, {"endpoint": "s3.example.com"}} {
		if fe := schema.Validate(v); len(fe) == 0 {
			t.Errorf("the schema accepts %v", v)
		}
	}
	if fe := schema.Validate(storage.Settings{"region": "us-east-1", "bucket": "my.media-bucket", "endpoint": "http://127.0.0.1:9000", "use_path_style": true}); len(fe) != 0 {
		t.Errorf("valid settings refused: %v", fe)
	}
}

// recordingClient answers every request with an error after noting its
// host and signing scope.
type recordingClient struct {
	mu    sync.Mutex
	hosts []string
	auth  []string
}

func (c *recordingClient) Do(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.hosts = append(c.hosts, r.URL.Host)
	c.auth = append(c.auth, r.Header.Get("Authorization"))
	c.mu.Unlock()
	return nil, errors.New("recorded, not sent")
}

// TestAmazonS3WithoutEndpoint: with no endpoint, requests go to Amazon S3's
// endpoint for the region, signed for that region, never R2's "auto".
func TestAmazonS3WithoutEndpoint(t *testing.T) {
	rec := &recordingClient{}
	p := New(Options{HTTPClient: rec})
	res, err := p.Configure(context.Background(), storage.Settings{"access_key_id": "AK", "secret_access_key": "SK", "region": "eu-central-1", "bucket": "media"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Bucket != "s3:eu-central-1/media" || res.KeyPrefix != "" {
		t.Fatalf("configure = %+v", res)
	}
	_, err = p.Stat(context.Background(), "a.png")
	if err == nil {
		t.Fatal("stat through a failing client succeeded")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.hosts) == 0 {
		t.Fatal("no request was made")
	}
	for i, h := range rec.hosts {
		if h != "media.s3.eu-central-1.amazonaws.com" {
			t.Errorf("request %d went to %q, want media.s3.eu-central-1.amazonaws.com", i, h)
		}
		if !strings.Contains(rec.auth[i], "/eu-central-1/s3/aws4_request") || strings.Contains(rec.auth[i], "/auto/") {
			t.Errorf("request %d signed with %q, want region eu-central-1", i, rec.auth[i])
		}
	}
}
