package r2

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/magicads/r2storage/plugin/s3kit"
	"github.com/magicads/r2storage/shared/storage"
)

// Jurisdictions R2 offers; each has its own S3 endpoint host.
const (
	JurisdictionDefault = "default"
	JurisdictionEU      = "eu"
	JurisdictionFedRAMP = "fedramp"
)

// Settings are the plugin's settings, keyed exactly as schema/settings.schema.json.
// Whether the provider is enabled and whether local copies are deleted after
// upload are the host's settings: the host never passes them to the plugin.
type Settings struct {
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
	AccountID       string `json:"account_id"`
	Bucket          string `json:"bucket"`
	Endpoint        string `json:"endpoint"`
	PublicURL       string `json:"public_url"`
	KeyPrefix       string `json:"key_prefix"`
	UsePathStyle    bool   `json:"use_path_style"`
	Jurisdiction    string `json:"jurisdiction"`
}

// String describes the settings without the secret.
func (s Settings) String() string {
	return fmt.Sprintf("bucket=%q endpoint=%q public_url=%q key_prefix=%q", s.Bucket, s.ResolvedEndpoint(), s.PublicURL, s.KeyPrefix)
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
	s.AccountID = strings.TrimSpace(s.AccountID)
	s.Bucket = strings.TrimSpace(s.Bucket)
	s.Endpoint = strings.TrimRight(strings.TrimSpace(s.Endpoint), "/")
	s.PublicURL = strings.TrimRight(strings.TrimSpace(s.PublicURL), "/")
	s.KeyPrefix = strings.Trim(strings.TrimSpace(s.KeyPrefix), "/")
	if s.Jurisdiction == "" {
		s.Jurisdiction = JurisdictionDefault
	}
	return s, s.check()
}

// check finds problems the schema cannot express.
func (s Settings) check() []storage.FieldError {
	var fe []storage.FieldError
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
	switch s.Jurisdiction {
	case JurisdictionDefault, JurisdictionEU, JurisdictionFedRAMP:
	default:
		fe = append(fe, storage.FieldError{Field: "jurisdiction", Message: "must be default, eu or fedramp"})
	}
	return fe
}

// missing lists the fields a connection needs that are blank: access key,
// secret, bucket, and the account id or a custom endpoint.
func (s Settings) missing() []storage.FieldError {
	var fe []storage.FieldError
	req := func(field, value string) {
		if value == "" {
			fe = append(fe, storage.FieldError{Field: field, Message: "is required to connect"})
		}
	}
	req("access_key_id", s.AccessKeyID)
	req("secret_access_key", s.SecretAccessKey)
	req("bucket", s.Bucket)
	if s.AccountID == "" && s.Endpoint == "" {
		fe = append(fe, storage.FieldError{Field: "account_id", Message: "is required to connect unless a custom endpoint is set"})
	}
	return fe
}

// ResolvedEndpoint is the S3 API endpoint: the custom endpoint when set,
// else https://{account_id}.r2.cloudflarestorage.com (with .eu or .fedramp
// for those jurisdictions).
func (s Settings) ResolvedEndpoint() string {
	if s.Endpoint != "" {
		return s.Endpoint
	}
	if s.AccountID == "" {
		return ""
	}
	switch s.Jurisdiction {
	case JurisdictionEU:
		return "https://" + s.AccountID + ".eu.r2.cloudflarestorage.com"
	case JurisdictionFedRAMP:
		return "https://" + s.AccountID + ".fedramp.r2.cloudflarestorage.com"
	default:
		return "https://" + s.AccountID + ".r2.cloudflarestorage.com"
	}
}

// objectKey maps a caller key to the bucket key under the prefix.
func (s Settings) objectKey(key string) (string, error) { return s3kit.ObjectKey(s.KeyPrefix, key) }

// keyPrefix is what objectKey puts before a key: "<key_prefix>/", or ""
// without a key prefix (storage.ConfigureResult.KeyPrefix).
func (s Settings) keyPrefix() string { return s3kit.KeyPrefix(s.KeyPrefix) }

// callerKey is the key Get would take for a bucket key: without the key
// prefix when it has it, else the bucket key itself.
func (s Settings) callerKey(objectKey string) string { return s3kit.CallerKey(s.KeyPrefix, objectKey) }

// r2Host is the domain of R2's S3 endpoints: <account_id>[.<jurisdiction>].r2Host.
const r2Host = ".r2.cloudflarestorage.com"

// BucketID is the identity of the configured bucket
// (storage.ConfigureResult.Bucket): stable for one bucket, different for
// another, never a secret. For R2 it is "r2:<account_id>/<bucket>", with
// ".eu" or ".fedramp" after the account id in those jurisdictions. With a
// custom endpoint it is "<host[:port][/path]>/<bucket>": no scheme, the
// host in lower case, no default port; a custom endpoint that is an R2
// account endpoint gives the "r2:" form, so the same bucket keeps its
// identity however it is reached.
func (s Settings) BucketID() string {
	if s.Endpoint == "" {
		account := strings.ToLower(s.AccountID)
		if s.Jurisdiction != "" && s.Jurisdiction != JurisdictionDefault {
			account += "." + s.Jurisdiction
		}
		return "r2:" + account + "/" + s.Bucket
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
	if account, ok := strings.CutSuffix(host, r2Host); ok && account != "" && port == "" && path == "" {
		return "r2:" + account + "/" + s.Bucket
	}
	switch {
	case port != "":
		host = net.JoinHostPort(host, port)
	case strings.Contains(host, ":"):
		host = "[" + host + "]" // an IPv6 address
	}
	return host + path + "/" + s.Bucket
}
