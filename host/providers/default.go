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

// usable reports whether provider id is a Default Storage option:
// installed, enabled, fully configured (the plugin accepted its settings)
// and running now.
func (m *Manager) usable(ctx context.Context, id string) bool {
	m.mu.Lock()
	p := m.plugins[id]
	configured := p != nil && p.configured
	m.mu.Unlock()
	if !configured {
		return false
	}
	if st, ok := m.rt.Status(id); !ok || st.State != pluginrt.StateRunning {
		return false
	}
	values, err := m.settings.Load(ctx, EntryName(id))
	if err != nil {
		return false
	}
	return enabledIn(values)
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
		if m.usable(ctx, id) {
			out = append(out, Option{ID: id, Name: names[id]})
		}
	}
	return out
}

// Default returns the chosen Default Storage ("local" when none was chosen).
// The choice is kept even while its provider is unusable (see Route).
func (m *Manager) Default(ctx context.Context) (string, error) {
	v, err := m.settings.Load(ctx, defaultEntry)
	if errors.Is(err, settingsstore.ErrNotFound) || errors.Is(err, settingsstore.ErrNotConfigured) {
		m.remember(Local)
		return Local, nil
	}
	if err != nil {
		return Local, err
	}
	id, _ := v["default"].(string)
	if id == "" {
		id = Local
	}
	m.remember(id)
	return id, nil
}

// remember keeps the Default Storage last read, for Route to fall back on
// while the entry cannot be read.
func (m *Manager) remember(id string) {
	m.mu.Lock()
	m.lastDefault = id
	m.mu.Unlock()
}

// SetDefault chooses the Default Storage; it must be one of Options. It never
// moves or deletes existing results. The uploads parked failed for the
// provider it moves away from are dropped (no retry would send them
// there): their results stay local and say why.
func (m *Manager) SetDefault(ctx context.Context, id string) error {
	ok := false
	for _, o := range m.Options(ctx) {
		ok = ok || o.ID == id
	}
	if !ok {
		return fmt.Errorf("%w: %q must be local or an enabled, fully configured, running provider", ErrNotAnOption, id)
	}
	from, fromErr := m.Default(ctx)
	if err := m.settings.Save(ctx, defaultEntry, "host", map[string]any{"default": id}); err != nil {
		return err
	}
	if fromErr != nil {
		m.log.Warn("Default Storage changed, but its earlier value could not be read: failed uploads to it stay parked; retry them or change Default Storage again", "default", id, "error", fromErr)
		return nil
	}
	if _, err := results.DropParkedAfterDefaultChange(ctx, m.db, from, id); err != nil {
		m.log.Warn("Default Storage changed, but the failed uploads to the provider it left stay parked; retry them from the admin console", "from", from, "default", id, "error", err)
	}
	return nil
}

// Route is the results.Router view of Default Storage: local; a provider
// that takes results now (ready); one that cannot right now for a passing
// reason (waiting: results are queued for it): not installed on this node
// yet, its settings unreadable, not configured yet, or its plugin starting,
// restarting or being updated; or one that takes no new results (off):
// disabled, failed by the crash-loop breaker, or its install record
// refused. When the Default Storage entry itself cannot be read, Route
// answers with the value last read, marked as a guess.
func (m *Manager) Route(ctx context.Context) results.Route {
	id, err := m.Default(ctx)
	if err != nil {
		m.mu.Lock()
		last := m.lastDefault
		m.mu.Unlock()
		m.log.Warn("Default Storage cannot be read; new results follow the last value read and are queued, not uploaded", "last", last, "error", err)
		r := results.Route{State: results.RouteWaiting, Default: last, Guess: true, Reason: "Default Storage cannot be read: " + err.Error()}
		if last == Local {
			r.State = results.RouteLocal
		} else if last != "" {
			r.Target.ID = last
		}
		return r
	}
	if id == Local {
		return results.Route{State: results.RouteLocal, Default: Local}
	}
	return m.route(ctx, id)
}

// route is Route for Default Storage = provider id.
func (m *Manager) route(ctx context.Context, id string) results.Route {
	r := results.Route{Default: id, Target: results.Target{ID: id}}
	waiting := func(why string) results.Route {
		r.State, r.Reason = results.RouteWaiting, why
		return r
	}
	off := func(why string) results.Route {
		r.State, r.Reason = results.RouteOff, why
		return r
	}
	m.mu.Lock()
	p := m.plugins[id]
	var configured bool
	var problem, refused string
	if p != nil {
		configured, problem, refused = p.configured, p.problem, p.refused
	}
	m.mu.Unlock()
	if p == nil {
		return waiting("the plugin is not installed on this node")
	}
	if refused != "" {
		return off(refused)
	}
	st, running := m.rt.Status(id)
	if running && st.State == pluginrt.StateFailed {
		return off("the plugin failed (it crashed repeatedly): " + st.LastError)
	}
	values, err := m.settings.Load(ctx, EntryName(id))
	switch {
	case isUnset(err):
		return off("the provider has no settings")
	case err != nil:
		return waiting("its settings cannot be read: " + err.Error())
	}
	if !enabledIn(values) {
		return off("the provider is disabled")
	}
	if !configured {
		if problem == "" {
			problem = "the plugin was not configured yet"
		}
		return waiting("not configured: " + problem)
	}
	switch {
	case !running:
		return waiting("the plugin is not started")
	case st.State != pluginrt.StateRunning:
		return waiting(fmt.Sprintf("the plugin is %s", st.State))
	}
	r.State, r.Target.Provider, r.Target.DeleteLocal = results.RouteReady, m.rt.Provider(id), deleteLocalIn(values)
	return r
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

// Placement returns where provider id puts new objects and what it
// accepts, as its last successful Configure (and Describe) on this node
// said; ok=false when it is not installed, or not configured now (never
// here, or its last configure failed): a plugin that is not configured
// would refuse calls with "not configured", so callers wait instead.
func (m *Manager) Placement(_ context.Context, id string) (results.Placement, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.plugins[id]
	if p == nil || !p.placed || !p.configured {
		return results.Placement{}, false
	}
	return p.placement, true
}
