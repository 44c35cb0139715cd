package providers

import (
	"context"
	"errors"
	"fmt"
	"sort"

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

// SaveSettings validates and stores a provider's settings (a blank secret
// keeps the stored one) and applies them to the running plugin. Field
// problems come back as fields; nothing is stored then. A secret stays with
// where it was entered: a save that changes a property the schema marks
// x-binds-secrets (R2: endpoint, account_id, jurisdiction) and would keep a
// stored secret is a field problem on that secret, checked under the
// entry's row lock by settingsstore.Update.
func (m *Manager) SaveSettings(ctx context.Context, id string, incoming map[string]any) ([]storage.FieldError, error) {
	p, err := m.plugin(id)
	if err != nil {
		return nil, err
	}
	_, fields, err := m.settings.Update(ctx, EntryName(id), id, p.schema, incoming)
	if err != nil || len(fields) > 0 {
		return fields, err
	}
	m.configure(ctx, p, m.rt.Provider(id))
	return nil, nil
}

// Test saves the settings (as SaveSettings, with the same field problems),
// then has the plugin upload, read back and delete a probe object. A failed
// probe is a result, not an error.
func (m *Manager) Test(ctx context.Context, id string, incoming map[string]any) (storage.TestResult, []storage.FieldError, error) {
	fields, err := m.SaveSettings(ctx, id, incoming)
	if err != nil || len(fields) > 0 {
		return storage.TestResult{}, fields, err
	}
	m.mu.Lock()
	p := m.plugins[id]
	configured, problem := p.configured, p.problem
	m.mu.Unlock()
	if !configured {
		return storage.TestResult{Step: storage.StepConfig, Message: "Connection failed: " + problem}, nil, nil
	}
	res, err := m.rt.Provider(id).TestConnection(ctx)
	if err != nil {
		return storage.TestResult{Step: storage.StepConfig, Message: "Connection failed: the plugin is not available: " + err.Error()}, nil, nil
	}
	return res, nil, nil
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
