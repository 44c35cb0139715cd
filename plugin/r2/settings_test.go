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
	s := Settings{PublicURL: "https://pub-1.r2.dev"}
	got := s.publicURL("magicads/my file+1%/ünï#?.png")
	want := "https://pub-1.r2.dev/magicads/my%20file%2B1%25/%C3%BCn%C3%AF%23%3F.png"
	if got != want {
		t.Fatalf("publicURL = %q, want %q", got, want)
	}
	if (Settings{}).publicURL("k") != "" {
		t.Fatal("a URL without a public base")
	}
}
