// Package cluster keeps the nodes table: each host node sharing the
// database heartbeats its row (advertised URL, host version, its plugins'
// versions and states), and any node reads every node's row for the
// cluster view. A node is live while it beats: its last heartbeat is
// within the live window (LiveWindow) by the database's clock, and it did
// not stop cleanly. On SQLite the database belongs to one host, so the
// table holds that one node.
package cluster

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
)

const (
	// DefaultInterval is how often a node heartbeats its row.
	DefaultInterval = 2 * time.Second
	// LiveWindow is how recent a node's last heartbeat must be for it to
	// count as live: five heartbeats, so a slow database or a pause of
	// a few seconds does not flap it.
	LiveWindow = 10 * time.Second
	// PruneAfter is how long a node must have been gone before any node
	// removes its row.
	PruneAfter = 7 * 24 * time.Hour
	// DefaultTimeout bounds each of the heartbeat's statements.
	DefaultTimeout = 5 * time.Second
	// ErrorRunes is how much of a plugin's last error a row keeps.
	ErrorRunes = 200
	// pruneEvery is how often a running node prunes gone nodes' rows.
	pruneEvery = time.Hour
)

// Plugin is one plugin's version and state on a node.
type Plugin struct {
	// ID is the plugin's id.
	ID string `json:"id"`
	// Version is the version installed on the node.
	Version string `json:"version"`
	// State is its runtime state: starting, running, restarting, failed,
	// stopped (or installed, when the runtime does not know it yet).
	State string `json:"state"`
	// Error is the start of its last error, "" for none.
	Error string `json:"error"`
	// Settings stamps the provider settings its running plugin was last
	// given ("" before any; see settingsstore.Stamps).
	Settings string `json:"settings,omitempty"`
	// SettingsApplied, in a View, says whether those are the settings
	// stored now; nil when the node reports none or they are not known.
	SettingsApplied *bool `json:"settings_applied,omitempty"`
}

// Node is one host node's row.
type Node struct {
	// ID is the node's id (--node-id).
	ID string `json:"id"`
	// AdvertiseURL is where other nodes reach it (--advertise-url).
	AdvertiseURL string `json:"advertise_url"`
	// Version is its host version.
	Version string `json:"version"`
	// StartedAt is when its current (or last) process started.
	StartedAt time.Time `json:"started_at"`
	// LastSeen is its last heartbeat.
	LastSeen time.Time `json:"last_seen"`
	// StoppedAt is when it shut down cleanly; nil while it runs or after
	// a crash.
	StoppedAt *time.Time `json:"stopped_at"`
	// Live is true while it heartbeats (see LiveWindow).
	Live bool `json:"live"`
	// Self is true for the node answering.
	Self bool `json:"self"`
	// Plugins are its plugins, by id.
	Plugins []Plugin `json:"plugins"`
}

// View is every node's row, as one node sees them.
type View struct {
	// Nodes are sorted by id.
	Nodes []Node `json:"nodes"`
	// Dialect is the database's: sqlite (one node) or postgres.
	Dialect string `json:"dialect"`
}

// Options configure a node's heartbeat.
type Options struct {
	// NodeID names the node; required.
	NodeID string
	// AdvertiseURL is where other nodes reach this one.
	AdvertiseURL string
	// Version is the host version.
	Version string
	// Plugins returns the plugins' current versions and states; nil
	// reports none.
	Plugins func() []Plugin
	// Settings returns the stamp of the settings stored now, by plugin
	// id, for View's SettingsApplied; nil leaves it unset.
	Settings func(ctx context.Context) (map[string]string, error)
	// Interval is how often the row is updated; zero means DefaultInterval.
	Interval time.Duration
	// LiveWindow is how recent a heartbeat keeps a node live; zero means
	// LiveWindow.
	LiveWindow time.Duration
	// Timeout bounds each statement; zero means DefaultTimeout.
	Timeout time.Duration
	// Logger receives the heartbeat's failures; nil discards them.
	Logger *slog.Logger
}

// Heartbeat keeps one node's row. Its methods are safe for concurrent use.
type Heartbeat struct {
	db      *sql.DB
	dialect dbmigrate.Dialect
	opts    Options

	// instance is random per process: a row with another instance was
	// written by another process using the same node id.
	instance string

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	lastErr string // the last failure logged, "" after a success
}

// New returns the heartbeat of node opts.NodeID on db; Start starts it.
func New(db *sql.DB, dialect dbmigrate.Dialect, opts Options) *Heartbeat {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.LiveWindow <= 0 {
		opts.LiveWindow = LiveWindow
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Heartbeat{db: db, dialect: dialect, opts: opts, instance: hex.EncodeToString(b[:])}
}

// ErrSharedNodeID is wrapped by the heartbeat's error when another host
// process runs with this node's id.
var ErrSharedNodeID = errors.New("node id shared by two host processes")

// now is the database's current time, in a form its timestamp columns
// compare with: SQLite keeps text with milliseconds.
func (h *Heartbeat) now() string {
	if h.dialect == dbmigrate.SQLite {
		return `strftime('%Y-%m-%d %H:%M:%f', 'now')`
	}
	return `now()`
}

// ago is the database's time n seconds ago (n is parameter $param).
func (h *Heartbeat) ago(param int) string {
	if h.dialect == dbmigrate.SQLite {
		return fmt.Sprintf(`strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-' || $%d || ' seconds')`, param)
	}
	return fmt.Sprintf(`now() - make_interval(secs => $%d)`, param)
}

// Start records the node as started (its row upserted, stopped_at
// cleared), prunes the rows of nodes gone longer than PruneAfter (on
// SQLite, every other node's row), then heartbeats every Interval until
// Stop. The heartbeat runs even when the first write fails: its error is
// returned for the caller to log, and the next beats try again.
func (h *Heartbeat) Start(ctx context.Context) error {
	if h.opts.NodeID == "" {
		return errors.New("cluster: no node id: give the node one with --node-id")
	}
	err := h.register(ctx)
	if err == nil {
		err = h.prune(ctx)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	h.mu.Lock()
	h.cancel, h.done = cancel, make(chan struct{})
	done := h.done
	h.mu.Unlock()
	go h.loop(loopCtx, done)
	return err
}

// loop heartbeats until ctx ends.
func (h *Heartbeat) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(h.opts.Interval)
	defer tick.Stop()
	lastPrune := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := h.beat(ctx)
		if err == nil && time.Since(lastPrune) >= pruneEvery {
			lastPrune = time.Now()
			err = h.prune(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		h.report(err)
	}
}

// report logs a heartbeat failure once until it changes, and the recovery.
func (h *Heartbeat) report(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err == nil && h.lastErr != "":
		h.opts.Logger.Info("the node heartbeat writes its row again", "node", h.opts.NodeID)
		h.lastErr = ""
	case err != nil && err.Error() != h.lastErr && errors.Is(err, ErrSharedNodeID):
		h.opts.Logger.Error("two host processes use one node id: their job leases and cluster rows mix up", "node", h.opts.NodeID, "error", err)
		h.lastErr = err.Error()
	case err != nil && err.Error() != h.lastErr:
		h.opts.Logger.Warn("the node heartbeat failed; other nodes may show this one as down until it succeeds again", "node", h.opts.NodeID, "error", err)
		h.lastErr = err.Error()
	}
}

// pluginsJSON is the plugins column: the snapshot sorted by id, errors cut
// to ErrorRunes.
func (h *Heartbeat) pluginsJSON() string {
	var list []Plugin
	if h.opts.Plugins != nil {
		list = h.opts.Plugins()
	}
	out := make([]Plugin, 0, len(list))
	for _, p := range list {
		if r := []rune(strings.TrimSpace(p.Error)); len(r) > ErrorRunes {
			p.Error = string(r[:ErrorRunes-1]) + "…"
		} else {
			p.Error = string(r)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	data, err := json.Marshal(out)
	if err != nil {
		return "[]"
	}
	return string(data)
}

// register upserts the node's row as just started.
func (h *Heartbeat) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	now := h.now()
	_, err := h.db.ExecContext(ctx, `INSERT INTO nodes (id, advertise_url, version, started_at, last_seen, stopped_at, plugins, instance)
		VALUES ($1, $2, $3, `+now+`, `+now+`, NULL, $4, $5)
		ON CONFLICT (id) DO UPDATE SET advertise_url = excluded.advertise_url, version = excluded.version,
			started_at = excluded.started_at, last_seen = excluded.last_seen, stopped_at = NULL, plugins = excluded.plugins,
			instance = excluded.instance`,
		h.opts.NodeID, h.opts.AdvertiseURL, h.opts.Version, h.pluginsJSON(), h.instance)
	if err != nil {
		return fmt.Errorf("recording node %s in the nodes table: %w", h.opts.NodeID, err)
	}
	return nil
}

// beat updates last_seen and the plugins; a row another node pruned (or
// that the start could not write) is recorded again. A row another process
// with the same node id wrote is taken back, and ErrSharedNodeID returned.
func (h *Heartbeat) beat(ctx context.Context) error {
	bctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	res, err := h.db.ExecContext(bctx, `UPDATE nodes SET last_seen = `+h.now()+`, plugins = $1, stopped_at = NULL WHERE id = $2 AND instance = $3`,
		h.pluginsJSON(), h.opts.NodeID, h.instance)
	if err != nil {
		return fmt.Errorf("heartbeat of node %s: %w", h.opts.NodeID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return nil
	}
	var other string
	err = h.db.QueryRowContext(bctx, `SELECT advertise_url FROM nodes WHERE id = $1`, h.opts.NodeID).Scan(&other)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("heartbeat of node %s: %w", h.opts.NodeID, err)
	}
	if rerr := h.register(ctx); rerr != nil || errors.Is(err, sql.ErrNoRows) {
		return rerr
	}
	return fmt.Errorf("%w: another host process uses node id %s too (it advertises %s, this one %s): give each node its own --node-id (MAGICADS_NODE_ID), or its own data dir when the id comes from data/node.id",
		ErrSharedNodeID, h.opts.NodeID, other, h.opts.AdvertiseURL)
}

// prune removes the rows of nodes gone longer than PruneAfter; on SQLite,
// where this host is the only one, every other node's row.
func (h *Heartbeat) prune(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	var err error
	if h.dialect == dbmigrate.SQLite {
		_, err = h.db.ExecContext(ctx, `DELETE FROM nodes WHERE id <> $1`, h.opts.NodeID)
	} else {
		_, err = h.db.ExecContext(ctx, `DELETE FROM nodes WHERE id <> $1 AND last_seen < `+h.ago(2), h.opts.NodeID, int64(PruneAfter/time.Second))
	}
	if err != nil {
		return fmt.Errorf("pruning the rows of nodes gone for over %v: %w", PruneAfter, err)
	}
	return nil
}

// halt ends the heartbeat and waits for it; it leaves the row as it is.
func (h *Heartbeat) halt() {
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.cancel = nil
	h.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Stop ends the heartbeat and marks the node stopped: other nodes show it
// down at once instead of after the live window. It waits for a beat in
// flight; the write is bounded by ctx and the statement timeout.
func (h *Heartbeat) Stop(ctx context.Context) error {
	h.halt()
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	now := h.now()
	// Only this process's row: another process with the same id runs on.
	if _, err := h.db.ExecContext(ctx, `UPDATE nodes SET stopped_at = `+now+`, last_seen = `+now+` WHERE id = $1 AND instance = $2`, h.opts.NodeID, h.instance); err != nil {
		return fmt.Errorf("marking node %s stopped in the nodes table (other nodes show it down after %v anyway): %w", h.opts.NodeID, h.opts.LiveWindow, err)
	}
	return nil
}

// View reads every node's row, liveness judged by the database's clock.
func (h *Heartbeat) View(ctx context.Context) (View, error) {
	rows, err := h.db.QueryContext(ctx, `SELECT id, advertise_url, version, started_at, last_seen, stopped_at, plugins, `+h.now()+` FROM nodes ORDER BY id`)
	if err != nil {
		return View{}, fmt.Errorf("reading the nodes table: %w", err)
	}
	defer rows.Close()
	v := View{Nodes: []Node{}, Dialect: string(h.dialect)}
	var current map[string]string
	if h.opts.Settings != nil {
		if current, err = h.opts.Settings(ctx); err != nil {
			current = nil // the view still shows the rest
		}
	}
	for rows.Next() {
		var n Node
		var started, seen, now timeValue
		var stopped nullTime
		var plugins string
		if err := rows.Scan(&n.ID, &n.AdvertiseURL, &n.Version, &started, &seen, &stopped, &plugins, &now); err != nil {
			return View{}, fmt.Errorf("reading the nodes table: %w", err)
		}
		n.StartedAt, n.LastSeen = time.Time(started), time.Time(seen)
		if stopped.valid {
			t := time.Time(stopped.t)
			n.StoppedAt = &t
		}
		n.Live = !stopped.valid && time.Time(now).Sub(n.LastSeen) <= h.opts.LiveWindow
		n.Self = n.ID == h.opts.NodeID
		if json.Unmarshal([]byte(plugins), &n.Plugins) != nil || n.Plugins == nil {
			n.Plugins = []Plugin{}
		}
		for i, p := range n.Plugins {
			n.Plugins[i].SettingsApplied = nil
			if cur, ok := current[p.ID]; ok && p.Settings != "" {
				applied := p.Settings == cur
				n.Plugins[i].SettingsApplied = &applied
			}
		}
		v.Nodes = append(v.Nodes, n)
	}
	if err := rows.Err(); err != nil {
		return View{}, fmt.Errorf("reading the nodes table: %w", err)
	}
	return v, nil
}

// timeValue scans a timestamp of either dialect.
type timeValue = dbmigrate.TimeValue

// nullTime scans a timestamp that may be NULL.
type nullTime struct {
	t     timeValue
	valid bool
}

// Scan accepts NULL and what timeValue accepts.
func (n *nullTime) Scan(v any) error {
	if v == nil {
		n.valid = false
		return nil
	}
	n.valid = true
	return n.t.Scan(v)
}

// MaxNodeIDLen is the longest node id.
const MaxNodeIDLen = 64

// CheckNodeID returns an error unless id is 1 to 64 letters, digits, dots,
// underscores and hyphens (a job lease's owner is "<node id>/…").
func CheckNodeID(id string) error {
	if id == "" || len(id) > MaxNodeIDLen {
		return fmt.Errorf("a node id is 1 to %d characters, got %d", MaxNodeIDLen, len(id))
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("a node id holds only letters, digits, '.', '_' and '-', got %q", id)
		}
	}
	return nil
}

// NodeURL returns node's advertised base URL and whether it is live (see
// View); an unknown node is not live.
func (h *Heartbeat) NodeURL(ctx context.Context, node string) (baseURL string, live bool, err error) {
	var seen, now timeValue
	var stopped nullTime
	err = h.db.QueryRowContext(ctx, `SELECT advertise_url, last_seen, stopped_at, `+h.now()+` FROM nodes WHERE id = $1`, node).
		Scan(&baseURL, &seen, &stopped, &now)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading node %s's row: %w", node, err)
	}
	return baseURL, !stopped.valid && time.Time(now).Sub(time.Time(seen)) <= h.opts.LiveWindow, nil
}
