package providers

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/magicads/r2storage/shared/manifest"
	"github.com/magicads/r2storage/shared/sdk"
)

// rolloutPurpose is what a rollout's MAC is for (see
// settingsstore.Keyring.MAC).
const rolloutPurpose = "plugin rollout v1"

// DefaultCanaryTimeout bounds a canary's handshake and describe.
const DefaultCanaryTimeout = 15 * time.Second

// rolloutPoll is how often AwaitRollout reads the nodes' answers.
const rolloutPoll = 200 * time.Millisecond

// Canary starts the plugin binary bin (checked against sum) and checks it
// describes itself as plugin id at version; it is always stopped again.
// timeout bounds the handshake and the describe (0 is DefaultCanaryTimeout).
func Canary(ctx context.Context, bin string, sum []byte, id, version string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultCanaryTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	c, err := sdk.Launch(ctx, sdk.LaunchConfig{Path: bin, SHA256: sum, StartTimeout: timeout})
	if err != nil {
		return err
	}
	defer c.Close()
	info, err := c.Describe(ctx)
	if err != nil {
		return fmt.Errorf("the plugin started but does not describe itself: %w", err)
	}
	if info.ID != id || info.Version != version {
		return fmt.Errorf("the plugin describes itself as %s %s, the manifest says %s %s", info.ID, info.Version, id, version)
	}
	return nil
}

// rolloutMessage is what a rollout's MAC covers: plugin id, version and
// the executable's sha256 (hex), each length-prefixed.
func rolloutMessage(id, version, sum string) []byte {
	var b []byte
	for _, f := range []string{id, version, sum} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// PublishBundle stores the bundle of inst, installed (not yet activated) at
// <plugins dir>/<id>/<version>, in plugin_bundles for the other nodes'
// canaries, without touching the plugins record; Activate keeps it. Only
// on PostgreSQL; elsewhere it does nothing.
func (m *Manager) PublishBundle(ctx context.Context, inst Installed) error {
	if !m.shared() {
		return nil
	}
	p, err := m.load(inst.ID, inst.Version)
	if err != nil {
		return err
	}
	return m.shareBundle(ctx, p)
}

// DropBundle removes the stored bundle of plugin id's version, unless the
// plugins record is at that version: the undo of PublishBundle.
func (m *Manager) DropBundle(ctx context.Context, id, version string) {
	if !m.shared() {
		return
	}
	if _, err := m.db.ExecContext(ctx, `DELETE FROM plugin_bundles WHERE id = $1 AND version = $2
		AND NOT EXISTS (SELECT 1 FROM plugins WHERE id = $1 AND version = $2)`, id, version); err != nil {
		m.log.Warn("removing the stored bundle of a version that was not installed; it is removed at the plugin's next install", "plugin", id, "version", version, "error", err)
	}
}

// StartRollout asks the other nodes to check plugin inst (its bundle
// published, see PublishBundle) before its record switches: it writes a
// rollout (MAC'd under APP_KEY over id, version and the executable's
// sha256) in place of any earlier one of the plugin and announces it. It
// returns the rollout's token, for AwaitRollout and EndRollout.
func (m *Manager) StartRollout(ctx context.Context, inst Installed) (string, error) {
	if m.keys == nil {
		return "", errors.New("the host has no APP_KEY keyring to authenticate rollouts with")
	}
	sum := hex.EncodeToString(inst.SHA256)
	mac, err := m.keys.MAC(rolloutPurpose, rolloutMessage(inst.ID, inst.Version, sum))
	if err != nil {
		return "", fmt.Errorf("authenticating the rollout of %s %s: %w", inst.ID, inst.Version, err)
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	if _, err := m.db.ExecContext(ctx, `DELETE FROM plugin_rollouts WHERE plugin_id = $1`, inst.ID); err != nil {
		return "", fmt.Errorf("removing an earlier rollout of %s: %w", inst.ID, err)
	}
	if _, err := m.db.ExecContext(ctx, `INSERT INTO plugin_rollouts (token, plugin_id, version, sha256, mac, node_id, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		token, inst.ID, inst.Version, sum, hex.EncodeToString(mac), m.nodeID, time.Now().UnixMilli()); err != nil {
		return "", fmt.Errorf("recording the rollout of %s %s for the other nodes: %w", inst.ID, inst.Version, err)
	}
	m.announcePlugins(ctx, inst.ID)
	return token, nil
}

// EndRollout removes rollout token and the nodes' answers to it.
func (m *Manager) EndRollout(ctx context.Context, token string) {
	for _, q := range []string{`DELETE FROM plugin_rollout_nodes WHERE token = $1`, `DELETE FROM plugin_rollouts WHERE token = $1`} {
		if _, err := m.db.ExecContext(ctx, q, token); err != nil {
			m.log.Warn("removing a finished rollout; the plugin's next install removes it", "error", err)
			return
		}
	}
}

// RolloutError says which nodes could not run a rollout's version, and why.
type RolloutError struct {
	// Failed maps each node whose check failed to its reason.
	Failed map[string]string
	// Silent lists the nodes that did not answer before the deadline.
	Silent []string
	// Timeout is how long the nodes were waited for.
	Timeout time.Duration
}

// Nodes lists the nodes that failed or did not answer, sorted.
func (e *RolloutError) Nodes() []string {
	out := slices.Clone(e.Silent)
	for n := range e.Failed {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Error names each node and its reason.
func (e *RolloutError) Error() string {
	var parts []string
	for _, n := range e.Nodes() {
		if why, ok := e.Failed[n]; ok {
			parts = append(parts, fmt.Sprintf("node %s: %s", n, why))
		} else {
			parts = append(parts, fmt.Sprintf("node %s did not answer within %v (it heartbeats but does not check rollouts: is it stuck, or running an older host version? upgrade or stop it, then try again)", n, e.Timeout))
		}
	}
	return strings.Join(parts, "; ") + "; every node keeps running the previous version"
}

// AwaitRollout waits until each of nodes answered rollout token, for at
// most timeout: nil when all are ready, a *RolloutError naming the nodes
// that failed (as soon as one did) or did not answer in time.
func (m *Manager) AwaitRollout(ctx context.Context, token string, nodes []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		answers, err := m.rolloutAnswers(ctx, token)
		if err != nil {
			return err
		}
		e := &RolloutError{Failed: map[string]string{}, Timeout: timeout}
		for _, n := range nodes {
			a, ok := answers[n]
			switch {
			case !ok:
				e.Silent = append(e.Silent, n)
			case a.state != "ready":
				e.Failed[n] = a.err
			}
		}
		switch {
		case len(e.Failed) > 0:
			e.Silent = nil // only those that failed; the others may still be checking
			return e
		case len(e.Silent) == 0:
			return nil
		case time.Now().After(deadline):
			return e
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the other nodes to check the new version: %w", ctx.Err())
		case <-time.After(rolloutPoll):
		}
	}
}

type rolloutAnswer struct{ state, err string }

func (m *Manager) rolloutAnswers(ctx context.Context, token string) (map[string]rolloutAnswer, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT node_id, state, error FROM plugin_rollout_nodes WHERE token = $1`, token)
	if err != nil {
		return nil, fmt.Errorf("reading the other nodes' checks of the new version: %w", err)
	}
	defer rows.Close()
	out := map[string]rolloutAnswer{}
	for rows.Next() {
		var n string
		var a rolloutAnswer
		if err := rows.Scan(&n, &a.state, &a.err); err != nil {
			return nil, fmt.Errorf("reading the other nodes' checks of the new version: %w", err)
		}
		out[n] = a
	}
	return out, rows.Err()
}

// pendingRollout is a rollout this node has not answered.
type pendingRollout struct {
	token, id, version, sha256, mac string
}

// syncRollouts checks each rollout started through another node that this
// node has not answered, and records its answer.
func (m *Manager) syncRollouts(ctx context.Context) {
	if !m.shared() || m.nodeID == "" {
		return
	}
	rows, err := m.db.QueryContext(ctx, `SELECT r.token, r.plugin_id, r.version, r.sha256, r.mac FROM plugin_rollouts r
		WHERE r.node_id <> $1 AND NOT EXISTS (SELECT 1 FROM plugin_rollout_nodes n WHERE n.token = r.token AND n.node_id = $1)
		ORDER BY r.created_ms`, m.nodeID)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("checking for updates other nodes wait on; trying again shortly", "error", err)
		}
		return
	}
	var list []pendingRollout
	for rows.Next() {
		var r pendingRollout
		if err := rows.Scan(&r.token, &r.id, &r.version, &r.sha256, &r.mac); err != nil {
			rows.Close()
			m.log.Warn("checking for updates other nodes wait on; trying again shortly", "error", err)
			return
		}
		list = append(list, r)
	}
	rows.Close()
	for _, r := range list {
		state, reason := "ready", ""
		if err := m.checkRollout(ctx, r); err != nil {
			if ctx.Err() != nil {
				return
			}
			state, reason = "failed", err.Error()
			m.log.Error("a plugin version another node installs cannot run on this node; the cluster stays on the previous version", "plugin", r.id, "version", r.version, "error", err)
		} else {
			m.log.Info("a plugin version another node installs passed its canary on this node", "plugin", r.id, "version", r.version)
		}
		if _, err := m.db.ExecContext(ctx, `INSERT INTO plugin_rollout_nodes (token, node_id, state, error, at_ms) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (token, node_id) DO NOTHING`, r.token, m.nodeID, state, reason, time.Now().UnixMilli()); err != nil && ctx.Err() == nil {
			// Most often the rollout ended meanwhile.
			m.log.Info("recording this node's check of an update; the installing node stops waiting at its deadline", "plugin", r.id, "version", r.version, "error", err)
		}
	}
}

// checkRollout unpacks rollout r's bundle into a staging folder of its own
// (never the installed versions' folders: a version that fails must leave
// nothing behind, and the plugins dir holds only installed records),
// checks the rollout's MAC and the executable's sha256, and runs the
// executable as a canary. The staging folder is removed; the version is
// unpacked again into its place when the record switches (syncPlugins).
func (m *Manager) checkRollout(ctx context.Context, r pendingRollout) error {
	got, err := hex.DecodeString(r.mac)
	if m.keys == nil || err != nil {
		return errors.New("the rollout carries no valid MAC; it was not checked")
	}
	if ok, _ := m.keys.VerifyMAC(rolloutPurpose, rolloutMessage(r.id, r.version, r.sha256), got); !ok {
		return errors.New("the rollout does not verify against this node's APP_KEY: it was written outside the host, or the nodes run with different APP_KEYs (give every node the same APP_KEY)")
	}
	if _, err := m.versionDir(r.id, r.version); err != nil {
		return err
	}
	stagingRoot := filepath.Join(m.pluginsDir, ".staging")
	if err := os.MkdirAll(stagingRoot, 0o755); err != nil {
		return fmt.Errorf("staging the new version: %w", err)
	}
	staging, err := os.MkdirTemp(stagingRoot, r.id+"-rollout-")
	if err != nil {
		return fmt.Errorf("staging the new version: %w", err)
	}
	defer os.RemoveAll(staging)
	root := filepath.Join(staging, "plugin")
	if err := m.unpackBundle(ctx, r.id, r.version, root); err != nil {
		return err
	}
	if m.rolloutStaged != nil {
		m.rolloutStaged(ctx, r.id, r.version, root)
	}
	data, err := os.ReadFile(filepath.Join(root, manifest.Path))
	if err != nil {
		return fmt.Errorf("reading the new version's manifest.json: %w", err)
	}
	man, err := manifest.Parse(data)
	if err != nil {
		return err
	}
	if man.ID != r.id || man.Version != r.version {
		return fmt.Errorf("the bundle's manifest says %s %s, the rollout %s %s", man.ID, man.Version, r.id, r.version)
	}
	exe, ok := man.Executable(runtime.GOOS, runtime.GOARCH)
	if !ok {
		return fmt.Errorf("the manifest names no executable for %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	bin := filepath.Join(root, filepath.FromSlash(exe))
	fi, err := os.Lstat(bin)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("the bundle lacks the executable %s as a regular file", exe)
	}
	sum, err := fileSHA256(bin)
	if err != nil {
		return fmt.Errorf("reading the new version's executable: %w", err)
	}
	if hex.EncodeToString(sum) != r.sha256 {
		return fmt.Errorf("the executable unpacked on this node has sha256 %x, the rollout pins %s: the stored bundle changed or was damaged; install again", sum, r.sha256)
	}
	if err := Canary(ctx, bin, sum, r.id, r.version, m.canaryTimeout); err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	return nil
}
