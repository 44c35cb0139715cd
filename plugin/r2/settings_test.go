package r2

import (
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/storage"
)

func TestResolvedEndpoint(t *testing.T) {
	acct := "0123456789abcdef0123456789abcdef"
	cases := []struct {
		s    Settings
		want string
	}{
		{Settings{AccountID: acct}, "https://" + acct + ".r2.cloudflarestorage.com"},
		{Settings{AccountID: acct, Jurisdiction: JurisdictionDefault}, "https://" + acct + ".r2.cloudflarestorage.com"},
		{Settings{AccountID: acct, Jurisdiction: JurisdictionEU}, "https://" + acct + ".eu.r2.cloudflarestorage.com"},
		{Settings{AccountID: acct, Jurisdiction: JurisdictionFedRAMP}, "https://" + acct + ".fedramp.r2.cloudflarestorage.com"},
		{Settings{AccountID: acct, Endpoint: "http://127.0.0.1:9000"}, "http://127.0.0.1:9000"},
		{Settings{Endpoint: "https://s3.example.com"}, "https://s3.example.com"},
		{Settings{}, ""},
	}
	for _, c := range cases {
		if got := c.s.ResolvedEndpoint(); got != c.want {
			t.Errorf("%+v: endpoint %q, want %q", c.s, got, c.want)
		}
	}
}

func TestParseSettingsNormalises(t *testing.T) {
	s, fe := parseSettings(storage.Settings{
		"access_key_id": " AK ", "secret_access_key": "SK", "bucket": "media",
		"endpoint": "https://x.example.com/", "public_url": "https://pub-1.r2.dev/", "key_prefix": "/magicads/",
	})
	if len(fe) != 0 {
		t.Fatalf("field errors: %v", fe)
	}
	if s.AccessKeyID != "AK" || s.Endpoint != "https://x.example.com" || s.PublicURL != "https://pub-1.r2.dev" || s.KeyPrefix != "magicads" || s.Jurisdiction != JurisdictionDefault {
		t.Fatalf("not normalised: %+v", s)
	}
	if m := s.missing(); len(m) != 0 {
		t.Fatalf("complete settings reported missing: %v", m)
	}
}

func TestParseSettingsRefuses(t *testing.T) {
	cases := map[string]storage.Settings{
		"endpoint":     {"endpoint": "ftp://x"},
		"public_url":   {"public_url": "https://user:pw@x.example.com"},
		"key_prefix":   {"key_prefix": "a/../b"},
		"jurisdiction": {"jurisdiction": "mars"},
		"bucket":       {"bucket": 42},
	}
	for field, m := range cases {
		_, fe := parseSettings(m)
		if len(fe) != 1 || fe[0].Field != field {
			t.Errorf("%v: field errors %v, want one for %s", m, fe, field)
		}
	}
}

func TestMissing(t *testing.T) {
	s := Settings{Endpoint: "http://x"}
	got := map[string]bool{}
	for _, f := range s.missing() {
		got[f.Field] = true
	}
	for _, f := range []string{"access_key_id", "secret_access_key", "bucket"} {
		if !got[f] {
			t.Errorf("missing() does not name %s: %v", f, got)
		}
	}
	if got["account_id"] {
		t.Errorf("account id required although a custom endpoint is set")
	}
	if m := (Settings{AccessKeyID: "a", SecretAccessKey: "b", Bucket: "c"}).missing(); len(m) != 1 || m[0].Field != "account_id" {
		t.Errorf("account id or endpoint not required: %v", m)
	}
}

func TestObjectKey(t *testing.T) {
	s := Settings{KeyPrefix: "magicads"}
	got, err := s.objectKey("images/gemini/0b6f.png")
	if err != nil || got != "magicads/images/gemini/0b6f.png" {
		t.Fatalf("objectKey = %q, %v", got, err)
	}
	if got, _ := (Settings{}).objectKey("images/a.png"); got != "images/a.png" {
		t.Fatalf("no prefix: %q", got)
	}
	for _, bad := range []string{"../x", "a/../../b", "/abs", "a\x00b", "", strings.Repeat("a", 1025)} {
		if _, err := s.objectKey(bad); storage.Code(err) != storage.InvalidArgument {
			t.Errorf("objectKey(%q) = %v, want InvalidArgument", bad, err)
		}
	}
	// The prefix counts toward the 1024-byte limit.
	if _, err := s.objectKey(strings.Repeat("a", 1020)); storage.Code(err) != storage.InvalidArgument {
		t.Errorf("a key that is too long with its prefix was accepted")
	}
}

func TestPublicURLEscapes(t *testing.T) {
	// The URL of an object is storage.PublicURL of its bucket key, as the
	// host rebuilds it.
	got := storage.PublicURL("https://pub-1.r2.dev", "magicads/my file+1%/ünï#?.png")
	want := "https://pub-1.r2.dev/magicads/my%20file%2B1%25/%C3%BCn%C3%AF%23%3F.png"
	if got != want {
		t.Fatalf("public URL = %q, want %q", got, want)
	}
	if storage.PublicURL("", "k") != "" {
		t.Fatal("a URL without a public base")
	}
}

// TestBucketID: the bucket identity names the account (and jurisdiction)
// or the endpoint, and the bucket; it is the same however one R2 bucket
// is reached, differs between buckets, and holds no secret.
func TestBucketID(t *testing.T) {
	const acct = "0123456789abcdef0123456789abcdef"
	base := storage.Settings{"access_key_id": "AKIDEXAMPLE", "secret_access_key": "SECRETEXAMPLE0123456789", "bucket": "media"}
	cases := []struct {
		settings storage.Settings
		want     string
	}{
		{storage.Settings{"account_id": acct}, "r2:" + acct + "/media"},
		{storage.Settings{"account_id": strings.ToUpper(acct), "jurisdiction": "default"}, "r2:" + acct + "/media"},
		{storage.Settings{"account_id": acct, "jurisdiction": "eu"}, "r2:" + acct + ".eu/media"},
		{storage.Settings{"account_id": acct, "jurisdiction": "fedramp"}, "r2:" + acct + ".fedramp/media"},
		{storage.Settings{"account_id": acct, "bucket": "archive"}, "r2:" + acct + "/archive"},
		{storage.Settings{"account_id": acct, "key_prefix": "media/prod", "public_url": "https://cdn.example.com"}, "r2:" + acct + "/media"},
		{storage.Settings{"endpoint": "https://" + acct + ".eu.r2.cloudflarestorage.com/"}, "r2:" + acct + ".eu/media"},
		{storage.Settings{"endpoint": "https://" + acct + ".r2.cloudflarestorage.com", "use_path_style": true}, "r2:" + acct + "/media"},
		{storage.Settings{"endpoint": "http://127.0.0.1:9000", "account_id": acct}, "127.0.0.1:9000/media"},
		{storage.Settings{"endpoint": "https://S3.Example.com:443/base/path/"}, "s3.example.com/base/path/media"},
		{storage.Settings{"endpoint": "http://s3.example.com:80"}, "s3.example.com/media"},
		{storage.Settings{"endpoint": "https://s3.example.com:8443"}, "s3.example.com:8443/media"},
		{storage.Settings{"endpoint": "http://[::1]:9000"}, "[::1]:9000/media"},
		{storage.Settings{"endpoint": "http://[::1]"}, "[::1]/media"},
	}
	for _, c := range cases {
		m := storage.Settings{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range c.settings {
			m[k] = v
		}
		s, fe := parseSettings(m)
		if len(fe) > 0 {
			t.Fatalf("%v: %v", c.settings, fe)
		}
		got := s.BucketID()
		if got != c.want {
			t.Errorf("%v: bucket id %q, want %q", c.settings, got, c.want)
		}
		if strings.Contains(got, "SECRETEXAMPLE") || strings.Contains(got, "AKIDEXAMPLE") {
			t.Errorf("%v: bucket id %q holds a credential", c.settings, got)
		}
	}
}

func TestKeyPrefixAndCallerKey(t *testing.T) {
	for _, c := range []struct {
		prefix, want string
	}{{"", ""}, {"media", "media/"}, {"/media/prod/", "media/prod/"}} {
		s, fe := parseSettings(storage.Settings{"key_prefix": c.prefix})
		if len(fe) > 0 {
			t.Fatal(fe)
		}
		if got := s.keyPrefix(); got != c.want {
			t.Errorf("key_prefix %q: KeyPrefix %q, want %q", c.prefix, got, c.want)
		}
		if got, _ := s.objectKey("a/b.png"); got != c.want+"a/b.png" {
			t.Errorf("key_prefix %q: bucket key %q, want KeyPrefix + key", c.prefix, got)
		}
	}
	s := Settings{KeyPrefix: "media"}
	for objectKey, want := range map[string]string{"media/a/b.png": "a/b.png", "other/a/b.png": "other/a/b.png", "mediax/a.png": "mediax/a.png"} {
		if got := s.callerKey(objectKey); got != want {
			t.Errorf("callerKey(%q) = %q, want %q", objectKey, got, want)
		}
	}
}
