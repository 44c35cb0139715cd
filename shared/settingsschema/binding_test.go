package settingsschema

import (
	"strings"
	"testing"
)

// bindingDoc is a provider schema whose secret is bound to where it is sent.
const bindingDoc = `{
  "type": "object",
  "properties": {
    "token": {"type": "string", "title": "API Token", "writeOnly": true},
    "other_secret": {"type": "string", "writeOnly": true},
    "endpoint": {"type": "string", "title": "Endpoint", "default": "", "x-binds-secrets": true},
    "region": {"type": "string", "title": "Region", "enum": ["default", "eu"], "default": "default", "x-binds-secrets": true},
    "port": {"type": "integer", "x-binds-secrets": true},
    "bucket": {"type": "string", "title": "Bucket", "x-binds-secrets": false}
  }
}`

func TestSecretsToReenter(t *testing.T) {
	s, err := Compile([]byte(bindingDoc))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.BindsSecrets(), ","); got != "endpoint,port,region" {
		t.Fatalf("BindsSecrets = %s", got)
	}
	stored := map[string]any{"token": "t0ken", "endpoint": "https://a.example", "region": "eu", "port": float64(443), "bucket": "b"}
	base := func(kv ...any) map[string]any {
		in := map[string]any{"endpoint": "https://a.example", "region": "eu", "port": 443, "bucket": "b"}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<missing>" {
				delete(in, kv[i].(string))
				continue
			}
			in[kv[i].(string)] = kv[i+1]
		}
		return in
	}
	for _, c := range []struct {
		name     string
		stored   map[string]any
		incoming map[string]any
		changed  string // "" when nothing must be re-entered
	}{
		{"nothing changed, secret kept", stored, base(), ""},
		{"nothing changed, secret null", stored, base("token", nil), ""},
		{"only an unbound field changed", stored, base("bucket", "other"), ""},
		{"endpoint changed", stored, base("endpoint", "https://evil.example"), "Endpoint (endpoint)"},
		{"endpoint changed, secret blank", stored, base("endpoint", "https://evil.example", "token", ""), "Endpoint (endpoint)"},
		{"endpoint cleared", stored, base("endpoint", ""), "Endpoint (endpoint)"},
		{"endpoint removed", stored, base("endpoint", "<missing>"), "Endpoint (endpoint)"},
		{"region and port changed", stored, base("region", "default", "port", 8443), "port and Region (region)"},
		{"number written differently", stored, base("port", float64(443)), ""},
		{"secret re-entered", stored, base("endpoint", "https://evil.example", "token", "n3w"), ""},
		{"no stored secret", map[string]any{"endpoint": "https://a.example"}, base("endpoint", "https://evil.example"), ""},
		{"stored secret blank", map[string]any{"token": "", "endpoint": "https://a.example"}, base("endpoint", "https://evil.example"), ""},
		{"nothing stored", nil, base(), ""},
		// Missing, "" and the schema default are the same value.
		{"endpoint unset: missing vs empty", map[string]any{"token": "t0ken", "region": "default", "port": 443}, map[string]any{"endpoint": "", "port": 443}, ""},
		{"region unset vs its default", map[string]any{"token": "t0ken", "endpoint": "", "port": 443}, map[string]any{"region": "default", "port": 443}, ""},
		{"endpoint set from unset", map[string]any{"token": "t0ken", "port": 443}, map[string]any{"endpoint": "https://evil.example", "port": 443}, "Endpoint (endpoint)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fe := s.SecretsToReenter(c.stored, c.incoming)
			if c.changed == "" {
				if fe != nil {
					t.Fatalf("field errors %v, want none", fe)
				}
				return
			}
			if len(fe) != 1 || fe[0].Field != "token" {
				t.Fatalf("field errors %v, want one on token", fe)
			}
			want := "re-enter the API Token: " + c.changed + " changed, and a stored secret is only sent to where it was entered"
			if fe[0].Message != want {
				t.Errorf("message %q, want %q", fe[0].Message, want)
			}
			if strings.Contains(fe[0].Message, "t0ken") {
				t.Error("the message quotes the secret")
			}
		})
	}

	// Every stored secret that would be kept is named.
	both := map[string]any{"token": "t0ken", "other_secret": "x", "endpoint": "https://a.example"}
	fe := s.SecretsToReenter(both, map[string]any{"endpoint": "https://evil.example", "other_secret": ""})
	if len(fe) != 2 || fe[0].Field != "other_secret" || fe[1].Field != "token" || !strings.HasPrefix(fe[0].Message, "re-enter the other_secret: ") {
		t.Errorf("two kept secrets: %v", fe)
	}
}

func TestCompileChecksBindsSecrets(t *testing.T) {
	for doc, want := range map[string]string{
		`{"properties": {"e": {"type": "string", "x-binds-secrets": "yes"}}}`:                   `property "e": x-binds-secrets must be true or false`,
		`{"properties": {"k": {"type": "string", "writeOnly": true, "x-binds-secrets": true}}}`: `property "k": a write-only (secret) property cannot carry x-binds-secrets`,
	} {
		_, err := Compile([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%s) = %v, want an error saying %q", doc, err, want)
		}
	}
	// A schema without the keyword binds nothing.
	s, err := Compile([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if fe := s.SecretsToReenter(map[string]any{"secret": "s", "bucket": "a"}, map[string]any{"bucket": "b"}); fe != nil {
		t.Errorf("no x-binds-secrets, yet %v", fe)
	}
}
