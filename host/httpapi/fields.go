package httpapi

import (
	"net/http"

	"github.com/magicads/r2storage/shared/storage"
)

// writeFields answers 422 with the field problems.
func writeFields(w http.ResponseWriter, fields []storage.FieldError) {
	m := make(map[string]string, len(fields))
	for _, f := range fields {
		m[f.Field] = f.Message
	}
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": "invalid settings", "fields": m})
}
