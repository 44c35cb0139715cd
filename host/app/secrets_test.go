package app_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/internal/testdb"
)

// TestSecretStaysWithItsEndpoint: once R2 is configured, a save or a
// connection test that changes the endpoint, the account id or the
// jurisdiction with a blank or missing secret is 422 naming
// secret_access_key; the stored settings stay as they were and the plugin
// never sends a request to the new endpoint. Re-entering the secret saves.
func TestSecretStaysWithItsEndpoint(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)
			var hits atomic.Int64
			attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.WriteHeader(http.StatusOK)
			}))
			defer attacker.Close()

			h.configure("account_id", strings.Repeat("ab", 16), "jurisdiction", "eu")
			stored := func() map[string]any {
				t.Helper()
				v, err := h.app.Settings.Load(context.Background(), providers.EntryName(pluginID))
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			before := stored()

			for name, values := range map[string]map[string]any{
				"endpoint, blank secret":     h.settings("endpoint", attacker.URL, "secret_access_key", "", "account_id", strings.Repeat("ab", 16), "jurisdiction", "eu"),
				"endpoint, no secret":        without(h.settings("endpoint", attacker.URL, "account_id", strings.Repeat("ab", 16), "jurisdiction", "eu"), "secret_access_key"),
				"account id, blank secret":   h.settings("secret_access_key", "", "account_id", strings.Repeat("cd", 16), "jurisdiction", "eu"),
				"account id removed":         without(h.settings("secret_access_key", "", "jurisdiction", "eu"), "account_id"),
				"jurisdiction, blank secret": h.settings("secret_access_key", "", "account_id", strings.Repeat("ab", 16), "jurisdiction", "fedramp"),
			} {
				for _, call := range []struct{ method, path string }{
					{"PUT", "/api/v1/admin/plugins/" + pluginID + "/settings"},
					{"POST", "/api/v1/admin/plugins/" + pluginID + "/test"},
				} {
					var body struct {
						Error  string
						Fields map[string]string
					}
					code := h.do(call.method, call.path, map[string]any{"values": values}, &body)
					msg := body.Fields["secret_access_key"]
					if code != http.StatusUnprocessableEntity || body.Error == "" || !strings.Contains(msg, "re-enter the Secret Access Key") {
						t.Errorf("%s %s (%s): %d %+v, want 422 naming secret_access_key", call.method, call.path, name, code, body)
					}
					if strings.Contains(msg, h.s3.SecretKey) {
						t.Errorf("%s: the message quotes the secret", name)
					}
					if got := stored(); !reflect.DeepEqual(got, before) {
						t.Errorf("%s %s (%s) changed the stored settings", call.method, call.path, name)
					}
				}
			}
			if n := hits.Load(); n != 0 {
				t.Errorf("the plugin sent %d requests to the new endpoint without a re-entered secret", n)
			}

			// The stored settings still work: unchanged endpoint, blank secret.
			var test struct {
				OK      bool
				Message string
			}
			unchanged := h.settings("secret_access_key", "", "account_id", strings.Repeat("ab", 16), "jurisdiction", "eu")
			if code := h.do("POST", "/api/v1/admin/plugins/"+pluginID+"/test", map[string]any{"values": unchanged}, &test); code != 200 || !test.OK {
				t.Fatalf("test with the stored secret: %d %+v", code, test)
			}
			if got := stored()["secret_access_key"]; got != h.s3.SecretKey {
				t.Error("an unchanged endpoint with a blank secret did not keep the secret")
			}

			// Re-entered: the change is saved.
			moved := h.settings("account_id", strings.Repeat("cd", 16), "jurisdiction", "fedramp")
			if code := h.do("PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", map[string]any{"values": moved}, nil); code != 200 {
				t.Fatalf("save with the secret re-entered: %d", code)
			}
			if got := stored(); got["account_id"] != strings.Repeat("cd", 16) || got["jurisdiction"] != "fedramp" || got["secret_access_key"] != h.s3.SecretKey {
				t.Errorf("after re-entering the secret: account %v, jurisdiction %v", got["account_id"], got["jurisdiction"])
			}
		})
	}
}

// without returns m without key.
func without(m map[string]any, key string) map[string]any {
	delete(m, key)
	return m
}
