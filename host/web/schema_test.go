package web

import (
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
