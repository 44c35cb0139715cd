package httpapi

import (
	"net/http"
	"testing"

	"github.com/magicads/r2storage/internal/testdb"
)

// TestSettingsAPIKeepsItsShape: enabled and delete_local are the host's
// settings, not the provider's schema's, yet the settings API carries
// them as before: the schema it answers declares them, a PUT with them is
// stored and read back in values, and an unknown field is still 422
// naming it.
func TestSettingsAPIKeepsItsShape(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			a := newAdminAPI(t, d)
			path := "/api/v1/admin/plugins/" + pluginID + "/settings"
			s := settings()
			s["delete_local"] = true
			if rec := a.call("PUT", path, map[string]any{"values": s}, nil); rec.Code != http.StatusOK {
				t.Fatalf("saving with enabled and delete_local: %d %s", rec.Code, rec.Body)
			}
			var got struct {
				Schema struct {
					Properties map[string]struct {
						Title   string `json:"title"`
						Type    string `json:"type"`
						Section string `json:"x-section"`
					} `json:"properties"`
				} `json:"schema"`
				Values     map[string]any `json:"values"`
				SecretsSet []string       `json:"secrets_set"`
			}
			if rec := a.call("GET", path, nil, &got); rec.Code != http.StatusOK {
				t.Fatalf("reading: %d %s", rec.Code, rec.Body)
			}
			if got.Values["enabled"] != true || got.Values["delete_local"] != true || got.Values["bucket"] != "results-bucket" {
				t.Fatalf("values %v", got.Values)
			}
			if _, ok := got.Values["secret_access_key"]; ok || len(got.SecretsSet) != 1 {
				t.Fatalf("secret: values %v, secrets_set %v", got.Values, got.SecretsSet)
			}
			for k, title := range map[string]string{"enabled": "Enable Cloudflare R2", "delete_local": "Delete local copy after upload"} {
				if p := got.Schema.Properties[k]; p.Title != title || p.Type != "boolean" || p.Section != "general" {
					t.Errorf("schema property %s = %+v, want the host's %q in general", k, p, title)
				}
			}

			s["colour"] = "blue"
			var bad struct {
				Fields map[string]string `json:"fields"`
			}
			rec := a.call("PUT", path, map[string]any{"values": s}, &bad)
			if rec.Code != http.StatusUnprocessableEntity || bad.Fields["colour"] != "is not a known setting" || len(bad.Fields) != 1 {
				t.Fatalf("unknown field: %d %s", rec.Code, rec.Body)
			}
		})
	}
}
