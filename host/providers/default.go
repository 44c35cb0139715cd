package providers

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/host/settingsstore"
	"github.com/magicads/r2storage/shared/storage"
)

var _ results.Router = (*Manager)(nil)

// usable reports whether provider id can take new results: installed,
// enabled and fully configured (the plugin accepted its settings). With
// running set it must also be running now (the Default Storage options);
// without, a plugin that is restarting still counts, so its results are
// queued and retried rather than dropped, and only the crash-loop breaker
// (state failed) sends new results back to local. It returns the stored
// settings when usable.
func (m *Manager) usable(ctx context.Context, id string, running bool) (map[string]any, bool) {
	m.mu.Lock()
	p := m.plugins[id]
	configured := p != nil && p.configured
	m.mu.Unlock()
	if !configured {
		return nil, false
	}
	st, ok := m.rt.Status(id)
	if !ok || st.State == pluginrt.StateFailed || st.State == pluginrt.StateStopped || (running && st.State != pluginrt.StateRunning) {
		return nil, false
	}
	values, err := m.settings.Load(ctx, EntryName(id))
	if err != nil {
		return nil, false
	}
	if enabled, _ := values["enabled"].(bool); !enabled {
		return nil, false
	}
	return values, true
}

// Options returns the Default Storage choices: local, then every enabled,
// fully configured, running provider.
func (m *Manager) Options(ctx context.Context) []Option {
	out := []Option{{ID: Local, Name: LocalName}}
	m.mu.Lock()
	ids := make([]string, 0, len(m.plugins))
	names := map[string]string{}
	for id, p := range m.plugins {
		ids = append(ids, id)
		names[id] = p.name
	}
	m.mu.Unlock()
	sort.Strings(ids)
	for _, id := range ids {
		if _, ok := m.usable(ctx, id, true); ok {
			out = append(out, Option{ID: id, Name: names[id]})
		}
	}
	return out
}

// Default returns the chosen Default Storage ("local" when none was chosen).
// The choice is kept even while its provider is unusable; new results then
// stay local (see Active).
func (m *Manager) Default(ctx context.Context) (string, error) {
	v, err := m.settings.Load(ctx, defaultEntry)
	if errors.Is(err, settingsstore.ErrNotFound) || errors.Is(err, settingsstore.ErrNotConfigured) {
		return Local, nil
	}
	if err != nil {
		return Local, err
	}
	id, _ := v["default"].(string)
	if id == "" {
		return Local, nil
	}
	return id, nil
}

// SetDefault chooses the Default Storage; it must be one of Options. It never
// moves or deletes existing results.
func (m *Manager) SetDefault(ctx context.Context, id string) error {
	ok := false
	for _, o := range m.Options(ctx) {
		ok = ok || o.ID == id
	}
	if !ok {
		return fmt.Errorf("%w: %q must be local or an enabled, fully configured, running provider", ErrNotAnOption, id)
	}
	return m.settings.Save(ctx, defaultEntry, "host", map[string]any{"default": id})
}

// Active is the results.Router view: the provider new results go to, or
// false when they stay local.
func (m *Manager) Active(ctx context.Context) (results.Target, bool) {
	id, err := m.Default(ctx)
	if err != nil {
		m.log.Error("Default Storage cannot be read; new results stay local", "error", err)
		return results.Target{}, false
	}
	if id == Local {
		return results.Target{}, false
	}
	values, ok := m.usable(ctx, id, false)
	if !ok {
		return results.Target{}, false
	}
	deleteLocal, _ := values["delete_local"].(bool)
	return results.Target{ID: id, Provider: m.rt.Provider(id), DeleteLocal: deleteLocal}, true
}

// Provider returns an installed provider by id (for retries and deletes);
// calls fail with storage.Unavailable while it is not running.
func (m *Manager) Provider(_ context.Context, id string) (storage.Provider, bool) {
	m.mu.Lock()
	_, ok := m.plugins[id]
	m.mu.Unlock()
	if !ok {
		return nil, false
	}
	return m.rt.Provider(id), true
}
