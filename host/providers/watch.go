package providers

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/pluginrt"
)

// SettingsChannel is the PostgreSQL notification channel on which a node
// announces that it saved a provider's settings; the payload is the
// provider id.
const SettingsChannel = "magicads_settings"

// DefaultSettingsPoll is how often Watch looks for plugins and settings
// changed through another node when no notification arrives.
const DefaultSettingsPoll = time.Second

// Applied is what this node's running plugin was last given.
type Applied struct {
	// Stamp identifies the stored settings applied ("" before any).
	Stamp string `json:"stamp"`
	// Current is the stamp of the settings stored now.
	Current string `json:"current"`
	// At is when they were applied.
	At time.Time `json:"at,omitzero"`
}

// InSync reports whether the running plugin has the settings stored now.
func (a Applied) InSync() bool { return a.Stamp == a.Current }

// Watch applies, until ctx ends, what other nodes change to this node:
// plugins installed, updated or uninstalled (syncPlugins), and provider
// settings saved (syncSettings); and it answers the rollouts other nodes
// wait on before they switch a plugin's record (syncRollouts). It checks every poll, and at once on
// PostgreSQL when a node announces a change on PluginsChannel or
// SettingsChannel (polling stays the fallback while the notification
// connection is down). A provider whose stored settings differ from those
// its running plugin was given is configured again, as after a save on
// this node.
func (m *Manager) Watch(ctx context.Context, poll time.Duration) {
	if poll <= 0 {
		poll = DefaultSettingsPoll
	}
	wake := make(chan struct{}, 1)
	if m.dialect == dbmigrate.Postgres {
		go m.listenSettings(ctx, wake)
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		m.syncPlugins(ctx)
		m.syncRollouts(ctx)
		m.syncSettings(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
	}
}

// syncSettings configures again every running plugin whose stored settings
// changed since it was last configured.
func (m *Manager) syncSettings(ctx context.Context) {
	stamps, err := m.settings.Stamps(ctx, EntryName(""))
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("checking for provider settings saved by other nodes; trying again shortly", "error", err)
		}
		return
	}
	m.mu.Lock()
	var stale []*plugin
	for id, p := range m.plugins {
		if p.schema != nil && p.tried != stamps[EntryName(id)] {
			stale = append(stale, p)
		}
	}
	m.mu.Unlock()
	for _, p := range stale {
		id := p.inst.ID
		if st, ok := m.rt.Status(id); !ok || st.State != pluginrt.StateRunning {
			continue // configured with the stored settings when it starts
		}
		m.log.Info("applying provider settings saved on another node", "plugin", id)
		m.configure(ctx, p, m.rt.Provider(id))
	}
}

// listenSettings wakes Watch on every notification on SettingsChannel
// or PluginsChannel, on a connection of its own, reconnecting after a
// failure.
func (m *Manager) listenSettings(ctx context.Context, wake chan<- struct{}) {
	for ctx.Err() == nil {
		err := m.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("listening for settings saved by other nodes; polling meanwhile", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

func (m *Manager) listenOnce(ctx context.Context, wake chan<- struct{}) error {
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return errors.New("the PostgreSQL connection is not pgx's")
		}
		pc := c.Conn()
		if _, err := pc.Exec(ctx, "LISTEN "+SettingsChannel+"; LISTEN "+PluginsChannel); err != nil {
			return err
		}
		defer pc.Exec(context.WithoutCancel(ctx), "UNLISTEN *") //nolint:errcheck // the connection may be gone
		for {
			if _, err := pc.WaitForNotification(ctx); err != nil {
				return err
			}
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
}

// announceSettings tells the other nodes (on PostgreSQL) that provider
// id's settings were saved; they also find out by polling.
func (m *Manager) announceSettings(ctx context.Context, id string) {
	if m.dialect != dbmigrate.Postgres {
		return
	}
	if _, err := m.db.ExecContext(ctx, "SELECT pg_notify($1, $2)", SettingsChannel, id); err != nil {
		m.log.Warn("announcing saved settings to other nodes; they apply them at their next poll", "plugin", id, "error", err)
	}
}

// AppliedStamps returns, per installed provider, the stamp of the settings
// its running plugin on this node was last given ("" before any).
func (m *Manager) AppliedStamps() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.plugins))
	for id, p := range m.plugins {
		out[id] = p.applied
	}
	return out
}

// StoredStamps returns, per provider id, the stamp of its settings stored
// now.
func (m *Manager) StoredStamps(ctx context.Context) (map[string]string, error) {
	stamps, err := m.settings.Stamps(ctx, EntryName(""))
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(stamps))
	for name, st := range stamps {
		out[strings.TrimPrefix(name, EntryName(""))] = st
	}
	return out, nil
}

// AppliedSettings returns, per installed provider, the settings its
// running plugin on this node was last given and those stored now.
func (m *Manager) AppliedSettings(ctx context.Context) (map[string]Applied, error) {
	stamps, err := m.settings.Stamps(ctx, EntryName(""))
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Applied, len(m.plugins))
	for id, p := range m.plugins {
		out[id] = Applied{Stamp: p.applied, Current: stamps[EntryName(id)], At: p.appliedAt}
	}
	return out, nil
}
