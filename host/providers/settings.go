package providers

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/settingsstore"

	"github.com/magicads/r2storage/shared/storage"
)

// SettingsView is what the admin API shows of a provider's settings.
type SettingsView struct {
	Schema     []byte         `json:"-"`
	Values     map[string]any `json:"values"`
	SecretsSet []string       `json:"secrets_set"`
	// Problem says why the provider cannot be used yet, if it cannot.
	Problem string `json:"problem,omitempty"`
}

func (m *Manager) plugin(id string) (*plugin, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.plugins[id]
	if p == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotInstalled, id)
	}
	if p.schema == nil {
		// A refused record whose files could not be read.
		return nil, fmt.Errorf("%w: plugin %s: %s", ErrRefused, id, p.refused)
	}
	return p, nil
}

// Settings returns a provider's stored settings without its secrets.
func (m *Manager) Settings(ctx context.Context, id string) (SettingsView, error) {
	p, err := m.plugin(id)
	if err != nil {
		return SettingsView{}, err
	}
	values, err := m.settings.Load(ctx, EntryName(id))
	if err != nil && !isUnset(err) {
		return SettingsView{}, err
	}
	if values == nil {
		values = map[string]any{}
	}
	m.mu.Lock()
	problem := p.problem
	m.mu.Unlock()
	return SettingsView{Values: p.schema.Public(values), SecretsSet: p.schema.SecretsSet(values), Problem: problem}, nil
}

// SchemaJSON returns the provider's settings schema document.
func (m *Manager) SchemaJSON(id string) ([]byte, error) {
	p, err := m.plugin(id)
	if err != nil {
		return nil, err
	}
	return p.schema.Document(), nil
}

// Errors of SaveSettings and Test; nothing was stored with either.
var (
	// ErrPluginUnavailable: the provider's plugin could not check the
	// settings (it is not running, or the call failed).
	ErrPluginUnavailable = errors.New("the plugin cannot check the settings now")
	// ErrSaveConflict: other saves of the same provider kept changing the
	// stored settings while this one was being checked.
	ErrSaveConflict = errors.New("the settings were changed by another save while this one was checked")
)

// errStale: the stored settings changed between the check and the write.
var errStale = errors.New("the stored settings changed meanwhile")

// validateTimeout bounds the plugin's ValidateSettings call.
const validateTimeout = 10 * time.Second

// saveAttempts is how often SaveSettings checks again when another save
// changed the stored settings between its check and its write.
const saveAttempts = 3

// SaveSettings checks and stores a provider's settings (a blank secret
// keeps the stored one) and applies them to the running plugin. The values
// as they would be stored (incoming merged with the stored entry) are
// checked by the schema and then by the running plugin's ValidateSettings
// before anything is written; the problems of both come back as fields
// (the schema's message wins on a field both flag) and nothing is stored
// then. A plugin that cannot check them (not running, or the call failed)
// stores nothing either: ErrPluginUnavailable, unless the schema already
// found problems. A secret stays with where it was entered: a save that
// changes a property the schema marks x-binds-secrets (R2: endpoint,
// account_id, jurisdiction) and would keep a stored secret is a field
// problem on that secret. The write happens under the entry's row lock
// only if the stored entry is still what was checked (else the check runs
// again, up to saveAttempts times, then ErrSaveConflict). After a save,
// Options.SettingsChanged is told.
func (m *Manager) SaveSettings(ctx context.Context, id string, incoming map[string]any) ([]storage.FieldError, error) {
	p, err := m.plugin(id)
	if err != nil {
		return nil, err
	}
	prov := m.rt.Provider(id)
	for range saveAttempts {
		stored, err := m.settings.Load(ctx, EntryName(id))
		if err != nil && !isUnset(err) {
			return nil, err
		}
		checked := settingsstore.Merge(p.schema, stored, incoming)
		fields, err := m.check(ctx, p, prov, stored, incoming, checked)
		if err != nil || len(fields) > 0 {
			return fields, err
		}
		_, fields, err = m.settings.UpdateChecked(ctx, EntryName(id), id, p.schema, incoming, func(merged map[string]any) ([]storage.FieldError, error) {
			if !reflect.DeepEqual(merged, checked) {
				return nil, errStale
			}
			return nil, nil
		})
		if errors.Is(err, errStale) {
			continue
		}
		if err != nil || len(fields) > 0 {
			return fields, err
		}
		m.configure(ctx, p, prov)
		m.settingsChanged(ctx, id)
		return nil, nil
	}
	return nil, fmt.Errorf("%w: nothing was saved; reload the settings and save again", ErrSaveConflict)
}

// check returns the field problems of merged, the values a save of
// incoming over stored would write: the schema's, then the running
// plugin's ValidateSettings. Messages never carry a secret value.
func (m *Manager) check(ctx context.Context, p *plugin, prov storage.Provider, stored, incoming, merged map[string]any) ([]storage.FieldError, error) {
	fields := p.schema.SecretsToReenter(stored, incoming)
	fields = addFields(fields, p.schema.Validate(storage.Settings(merged)))
	secrets := p.schema.SecretValuesOf(merged)
	vctx, cancel := context.WithTimeout(ctx, validateTimeout)
	defer cancel()
	pluginFields, err := prov.ValidateSettings(vctx, storage.Settings(merged))
	var se *storage.Error
	switch {
	case err == nil:
	case errors.As(err, &se) && se.Code == storage.InvalidSettings && len(se.Fields) > 0:
		pluginFields = se.Fields
	case len(fields) > 0:
		// The schema's problems are answer enough.
	case ctx.Err() != nil:
		return nil, ctx.Err()
	default:
		return nil, fmt.Errorf("%w: %s; nothing was saved: save again once the plugin runs (its state is on the plugins page)",
			ErrPluginUnavailable, redact(err.Error(), secrets))
	}
	fields = addFields(fields, pluginFields)
	for i := range fields {
		fields[i].Message = redact(fields[i].Message, secrets)
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i].Field < fields[j].Field })
	return fields, nil
}

// addFields appends the problems of more on fields no problem in fields is on.
func addFields(fields, more []storage.FieldError) []storage.FieldError {
	for _, f := range more {
		if !slices.ContainsFunc(fields, func(g storage.FieldError) bool { return g.Field == f.Field }) {
			fields = append(fields, f)
		}
	}
	return fields
}

// redact replaces every secret value in msg.
func redact(msg string, secrets []string) string {
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return msg
}

// Test saves the settings (as SaveSettings, with the same field problems
// and errors, when nothing is saved), then has the plugin upload, read back
// and delete a probe object. A failed probe is a result, not an error: its
// message says that the settings were saved and where the test failed
// ("Settings saved, but the connection test failed at upload: …").
func (m *Manager) Test(ctx context.Context, id string, incoming map[string]any) (storage.TestResult, []storage.FieldError, error) {
	fields, err := m.SaveSettings(ctx, id, incoming)
	if err != nil || len(fields) > 0 {
		return storage.TestResult{}, fields, err
	}
	m.mu.Lock()
	p := m.plugins[id]
	configured, problem := p.configured, p.problem
	m.mu.Unlock()
	var res storage.TestResult
	if !configured {
		res = storage.TestResult{Step: storage.StepConfig, Message: problem}
	} else if res, err = m.rt.Provider(id).TestConnection(ctx); err != nil {
		res = storage.TestResult{Step: storage.StepConfig, Message: "the plugin is not available: " + err.Error()}
	}
	res.Message = savedMessage(res)
	return res, nil, nil
}

// savedMessage words a connection test's outcome after its save.
func savedMessage(res storage.TestResult) string {
	if res.OK {
		return "Settings saved. " + res.Message
	}
	step := res.Step
	if step == "" {
		step = storage.StepConfig
	}
	msg, _ := strings.CutPrefix(res.Message, "Connection failed: ")
	return fmt.Sprintf("Settings saved, but the connection test failed at %s: %s", step, msg)
}

// isUnset reports whether a settings load failed only because nothing was saved.
func isUnset(err error) bool {
	return errors.Is(err, settingsstore.ErrNotFound) || errors.Is(err, settingsstore.ErrNotConfigured)
}

// PluginStatus is an installed plugin's state, for the admin.
type PluginStatus struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version string `json:"installed_version"`
	// State is installed (running or restarting) or failed.
	State string `json:"state"`
	// Message explains a failed state or why the provider is not usable.
	Message string `json:"message"`
}

// Plugins lists the installed plugins and their states.
func (m *Manager) Plugins() []PluginStatus {
	m.mu.Lock()
	list := make([]PluginStatus, 0, len(m.plugins))
	for id, p := range m.plugins {
		st := PluginStatus{ID: id, Name: p.name, Version: p.inst.Version, State: "installed", Message: p.problem}
		if p.refused != "" {
			st.State, st.Message = "failed", p.refused
		}
		list = append(list, st)
	}
	m.mu.Unlock()
	for i := range list {
		if list[i].State == "failed" {
			continue
		}
		if st, ok := m.rt.Status(list[i].ID); ok && st.State == pluginrt.StateFailed {
			list[i].State, list[i].Message = "failed", st.LastError
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	return list
}
