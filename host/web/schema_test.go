package web

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	r2storage "github.com/magicads/r2storage"
	"github.com/magicads/r2storage/host/providers"
)

// r2Schema is Cloudflare R2's settings schema as the host serves it: the
// plugin's own, with the host's settings (enabled, delete_local) added.
func r2Schema() ([]byte, error) {
	doc, err := r2storage.SettingsSchema()
	if err != nil {
		return nil, err
	}
	return providers.HostSchema(doc, "Cloudflare R2 Storage")
}

// TestFormShowsTheHostsSettingsForEveryProvider: whatever the provider's
// schema, the form of the schema the host serves starts with a General
// section holding the host's settings (Enable <name>, Delete local copy
// after upload), then the provider's own sections; a plugin whose older
// schema still declares enabled and delete_local shows each once.
func TestFormShowsTheHostsSettingsForEveryProvider(t *testing.T) {
	tiny := `{"type": "object", "additionalProperties": false,
		"x-sections": [{"id": "access", "title": "Access"}],
		"x-fully-configured": {"all": ["token"]},
		"properties": {"token": {"type": "string", "title": "API Token", "writeOnly": true, "x-section": "access", "x-order": 1},
			"container": {"type": "string", "title": "Container", "x-section": "access", "x-order": 2}}}`
	old, err := os.ReadFile(filepath.Join("..", "providers", "testdata", "r2-settings-before-host-policy.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, id, provider string
		schema             []byte
		want               []string
	}{
		{"no General section", "tiny-store", "Tiny Store", []byte(tiny), []string{"general:General:enabled,delete_local", "access:Access:token,container"}},
		{"declares them itself", "old-r2", "Cloudflare R2 Storage", old, []string{"general:General:enabled,delete_local",
			"credentials:Bucket Credentials:access_key_id,secret_access_key,account_id,bucket",
			"advanced:Advanced:endpoint,public_url,key_prefix,use_path_style,jurisdiction"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc, err := providers.HostSchema(c.schema, c.provider)
			if err != nil {
				t.Fatal(err)
			}
			f, err := buildForm(c.id, doc, map[string]any{"enabled": true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			labels := map[string]string{}
			for _, s := range f.Sections {
				var keys []string
				for _, fl := range s.Fields {
					keys = append(keys, fl.Key)
					labels[fl.Key] = fl.Label
					if fl.Key == "enabled" && (fl.Control != "checkbox" || !fl.Checked) {
						t.Errorf("enabled field %+v, want a checked checkbox", fl)
					}
				}
				got = append(got, s.ID+":"+s.Title+":"+strings.Join(keys, ","))
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("sections\n%v, want\n%v", got, c.want)
			}
			if labels["enabled"] != "Enable "+providers.ShortName(c.provider) || labels["delete_local"] != "Delete local copy after upload" {
				t.Errorf("labels %q and %q", labels["enabled"], labels["delete_local"])
			}
		})
	}
}
