package web

import (
	"encoding/json"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// r2ConfigPage renders the R2 config screen over stored values.
func r2ConfigPage(t *testing.T, values map[string]any, secretsSet []string) (string, *html.Node) {
	t.Helper()
	schema, err := r2Schema()
	if err != nil {
		t.Fatal(err)
	}
	api := newFakeAPI()
	api.set("/api/v1/admin/plugins/cloudflare-r2/settings", 200, map[string]any{
		"schema": json.RawMessage(schema), "values": values, "secrets_set": secretsSet,
	})
	res, body, doc := get(t, New(Options{API: api}), PluginsPath+"/cloudflare-r2")
	checkLayout(t, res, doc, "config")
	return body, doc
}

// TestConfigPageWarnsBeforeMovingASecret: the inputs that decide where the
// secret is sent (the schema's x-binds-secrets) carry their stored value,
// and the secret field carries a warning, hidden until the script sees one
// of them edited while the secret is blank but stored.
func TestConfigPageWarnsBeforeMovingASecret(t *testing.T) {
	account := strings.Repeat("ab", 16)
	body, doc := r2ConfigPage(t, map[string]any{"endpoint": "https://r2.example.com", "account_id": account, "jurisdiction": "eu", "bucket": "media"},
		[]string{"secret_access_key"})

	for key, stored := range map[string]string{"endpoint": "https://r2.example.com", "account_id": account, "jurisdiction": "eu"} {
		n := mustID(t, doc, "field-"+key)
		if v, _ := attr(n, "data-binds-secrets"); v != "true" {
			t.Errorf("%s: data-binds-secrets %q, want true", key, v)
		}
		if v, ok := attr(n, "data-stored"); !ok || v != stored {
			t.Errorf("%s: data-stored %q, want the stored %q", key, v, stored)
		}
	}
	if v, _ := attr(mustID(t, doc, "field-jurisdiction"), "data-default"); v != "default" {
		t.Errorf("jurisdiction data-default %q, want the schema default", v)
	}
	for _, key := range []string{"bucket", "public_url", "access_key_id", "key_prefix", "secret_access_key"} {
		if _, ok := attr(mustID(t, doc, "field-"+key), "data-binds-secrets"); ok {
			t.Errorf("%s is marked as deciding where the secret goes", key)
		}
	}

	secret := mustID(t, doc, "field-secret_access_key")
	if v, _ := attr(secret, "data-stored-secret"); v != "true" {
		t.Errorf("secret data-stored-secret %q, want true", v)
	}
	if v, _ := attr(secret, "aria-describedby"); !strings.Contains(v, "warning-secret_access_key") {
		t.Errorf("secret aria-describedby %q does not name the warning", v)
	}
	warn := mustID(t, doc, "warning-secret_access_key")
	if _, hidden := attr(warn, "hidden"); !hidden || !hasClass(warn, "field-warning") {
		t.Errorf("warning: hidden %v, class field-warning %v; want a hidden .field-warning until something is edited", hidden, hasClass(warn, "field-warning"))
	}
	if v, _ := attr(warn, "role"); v != "status" {
		t.Errorf("warning role %q", v)
	}
	want := "Changing Account ID, Custom Endpoint or Jurisdiction does not keep the stored Secret Access Key: enter it again before you save."
	if got := textOf(warn); got != want {
		t.Errorf("warning %q, want %q", got, want)
	}
	if warn.Parent == nil || !hasClass(warn.Parent, "field") {
		t.Error("the warning is not next to the secret field")
	} else if id, _ := attr(warn.Parent, "id"); id != "wrap-secret_access_key" {
		t.Errorf("the warning sits in #%s", id)
	}

	// The script shows it: it watches the bound inputs and the secret.
	for _, js := range []string{"function secretWarnings(", "data-binds-secrets", "dataset.stored", "dataset.storedSecret", "'warning-' +"} {
		if !strings.Contains(body, js) {
			t.Errorf("the page script lacks %q", js)
		}
	}

	// No stored secret: nothing to warn about.
	_, doc = r2ConfigPage(t, map[string]any{}, []string{})
	if v, _ := attr(mustID(t, doc, "field-secret_access_key"), "data-stored-secret"); v == "true" {
		t.Error("data-stored-secret on a secret that is not stored")
	}
	if v, _ := attr(mustID(t, doc, "field-endpoint"), "data-stored"); v != "" {
		t.Errorf("unset endpoint data-stored %q", v)
	}
	if v, _ := attr(mustID(t, doc, "field-jurisdiction"), "data-stored"); v != "default" {
		t.Errorf("unset jurisdiction data-stored %q, want its default", v)
	}
}

// TestConfigPageNoWarningWithoutBoundFields: a schema that binds nothing
// gets no warning.
func TestConfigPageNoWarningWithoutBoundFields(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/plugins/wasabi/settings", 200, map[string]any{
		"schema": json.RawMessage(otherSchema), "values": map[string]any{}, "secrets_set": []string{"api_key"},
	})
	_, _, doc := get(t, New(Options{API: api}), PluginsPath+"/wasabi")
	if byID(doc, "warning-api_key") != nil {
		t.Error("a warning on a schema without x-binds-secrets")
	}
}
