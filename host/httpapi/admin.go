package httpapi

import (
	"encoding/json"
	"net/http"
)

func (a *API) getStorage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.dbContext(r)
	defer cancel()
	body := map[string]any{"options": a.providers.Options(ctx)}
	def, err := a.providers.Default(ctx)
	if err != nil {
		// New results go to local while the choice cannot be read; say why.
		a.opts.Logger.Error("Default Storage cannot be read; using local", "error", err)
		def, body["warning"] = "local", "Default Storage cannot be read, so new results stay local: "+err.Error()
	}
	body["default"] = def
	writeJSON(w, http.StatusOK, body)
}

func (a *API) putStorage(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Default string `json:"default"`
	}
	if !decode(w, r, &body) {
		return
	}
	ctx, cancel := a.dbContext(r)
	defer cancel()
	if err := a.providers.SetDefault(ctx, body.Default); err != nil {
		a.providerError(w, r, "saving Default Storage", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"default": body.Default})
}

func (a *API) getSettings(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := a.dbContext(r)
	defer cancel()
	view, err := a.providers.Settings(ctx, id)
	if err != nil {
		a.providerError(w, r, "reading the settings", err)
		return
	}
	schema, err := a.providers.SchemaJSON(id)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"schema": json.RawMessage(schema), "values": view.Values, "secrets_set": view.SecretsSet, "problem": view.Problem})
}

type settingsBody struct {
	Values map[string]any `json:"values"`
}

func (a *API) putSettings(w http.ResponseWriter, r *http.Request) {
	var body settingsBody
	if !decode(w, r, &body) {
		return
	}
	fields, err := a.providers.SaveSettings(r.Context(), r.PathValue("id"), body.Values)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	if len(fields) > 0 {
		writeFields(w, fields)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "saved"})
}

func (a *API) testConnection(w http.ResponseWriter, r *http.Request) {
	var body settingsBody
	if !decode(w, r, &body) {
		return
	}
	res, fields, err := a.providers.Test(r.Context(), r.PathValue("id"), body.Values)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	if len(fields) > 0 {
		writeFields(w, fields)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": res.OK, "step": res.Step, "message": res.Message})
}
