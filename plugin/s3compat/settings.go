package s3compat

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/magicads/r2storage/plugin/s3kit"
	"github.com/magicads/r2storage/shared/storage"
)

// Settings are the plugin's settings, keyed exactly as
// bundle/schema/settings.schema.json. Whether the provider is enabled and
// whether local copies are deleted after upload are the host's settings: the
// host never passes them to the plugin.
type Settings struct {
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
	Region          string `json:"region"`
	Endpoint        string `json:"endpoint"`
	Bucket          string `json:"bucket"`
	UsePathStyle    bool   `json:"use_path_style"`
	KeyPrefix       string `json:"key_prefix"`
	PublicURL       string `json:"public_url"`
}

// String describes the settings without the secret.
func (s Settings) String() string {
	return fmt.Sprintf("region=%q bucket=%q endpoint=%q public_url=%q key_prefix=%q", s.Region, s.Bucket, s.ResolvedEndpoint(), s.PublicURL, s.KeyPrefix)
}

// parseSettings decodes the settings map. The schema has already checked
// types; a type mismatch here still comes back as a field error.
func parseSettings(m storage.Settings) (Settings, []storage.FieldError) {
	var s Settings
	data, err := json.Marshal(m)
	if err != nil {
		return s, []storage.FieldError{{Field: "settings", Message: "not a JSON object"}}
	}
	if err := json.Unmarshal(data, &s); err != nil {
		field := "settings"
		if te, ok := err.(*json.UnmarshalTypeError); ok && te.Field != "" {
			field = te.Field
		}
		return s, []storage.FieldError{{Field: field, Message: "has the wrong type"}}
	}
	s.AccessKeyID = strings.TrimSpace(s.AccessKeyID)
	s.SecretAccessKey = strings.TrimSpace(s.SecretAccessKey)
	s.Region = strings.TrimSpace(s.Region)
	s.Bucket = strings.TrimSpace(s.Bucket)
	s.Endpoint = strings.TrimRight(strings.TrimSpace(s.Endpoint), "/")
	s.PublicURL = strings.TrimRight(strings.TrimSpace(s.PublicURL), "/")
	s.KeyPrefix = strings.Trim(strings.TrimSpace(s.KeyPrefix), "/")
	return s, s.check()
}

// check finds problems the schema cannot express.
func (s Settings) check() []storage.FieldError {
	var fe []storage.FieldError
	if strings.EqualFold(s.Region, "auto") {
		fe = append(fe, storage.FieldError{Field: "region", Message: `must be the bucket's region such as us-east-1: "auto" is Cloudflare R2's region, which S3-compatible services do not accept (use the Cloudflare R2 provider for R2)`})
	}
	for _, u := range []struct{ field, value string }{{"endpoint", s.Endpoint}, {"public_url", s.PublicURL}} {
		if u.value == "" {
			continue
		}
		parsed, err := url.Parse(u.value)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" || parsed.User != nil || parsed.RawQuery != "" || parsed.Fragment != "" {
			fe = append(fe, storage.FieldError{Field: u.field, Message: "must be an http(s) URL such as https://example.com, without credentials, query or fragment"})
		}
	}
	if s.KeyPrefix != "" {
		if err := storage.ValidateKey(s.KeyPrefix); err != nil {
			fe = append(fe, storage.FieldError{Field: "key_prefix", Message: "must be a folder path such as magicads or media/prod (no .., //, or control characters)"})
		}
	}
	return fe
}

// missing lists the fields a connection needs that are blank: access key,
// secret, region and bucket.
func (s Settings) missing() []storage.FieldError {
	var fe []storage.FieldError
	req := func(field, value string) {
		if value == "" {
			fe = append(fe, storage.FieldError{Field: field, Message: "is required to connect"})
		}
	}
	req("access_key_id", s.AccessKeyID)
	req("secret_access_key", s.SecretAccessKey)
	req("region", s.Region)
	req("bucket", s.Bucket)
	return fe
}

// ResolvedEndpoint is the S3 API endpoint requests go to: the endpoint
// setting when set, else Amazon S3's endpoint for the region.
func (s Settings) ResolvedEndpoint() string {
	if s.Endpoint != "" {
		return s.Endpoint
	}
	if s.Region == "" {
		return ""
	}
	host := "s3." + s.Region + ".amazonaws.com"
	if strings.HasPrefix(s.Region, "cn-") {
		host += ".cn"
	}
	return "https://" + host
}

// objectKey maps a caller key to the bucket key under the prefix.
func (s Settings) objectKey(key string) (string, error) { return s3kit.ObjectKey(s.KeyPrefix, key) }

// keyPrefix is what objectKey puts before a key: "<key_prefix>/", or ""
// without a key prefix (storage.ConfigureResult.KeyPrefix).
func (s Settings) keyPrefix() string { return s3kit.KeyPrefix(s.KeyPrefix) }

// callerKey is the key Get would take for a bucket key: without the key
// prefix when it has it, else the bucket key itself.
func (s Settings) callerKey(objectKey string) string { return s3kit.CallerKey(s.KeyPrefix, objectKey) }

// BucketID is the identity of the configured bucket
// (storage.ConfigureResult.Bucket): stable for one bucket, different for
// another, never a secret. On Amazon S3 (no endpoint) it is
// "s3:<region>/<bucket>": bucket names are global there, and the region
// says where. With an endpoint it is "<host[:port][/path]>/<bucket>": no
// scheme, the host in lower case, no default port, so the same bucket
// keeps its identity whichever scheme or path style reaches it.
func (s Settings) BucketID() string {
	if s.Endpoint == "" {
		return "s3:" + strings.ToLower(s.Region) + "/" + s.Bucket
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil || u.Host == "" {
		return s.Endpoint + "/" + s.Bucket // not reached: check refuses such an endpoint
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	path := strings.TrimRight(u.EscapedPath(), "/")
	switch {
	case port != "":
		host = net.JoinHostPort(host, port)
	case strings.Contains(host, ":"):
		host = "[" + host + "]" // an IPv6 address
	}
	return host + path + "/" + s.Bucket
}
