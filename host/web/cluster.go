package web

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

// ClusterPath is the cluster page: every host node sharing the database.
const ClusterPath = "/app/admin/general/cluster"

// clusterTitle is the cluster page's title.
const clusterTitle = "Cluster"

// clusterJSON is GET /api/v1/admin/cluster.
type clusterJSON struct {
	Nodes []struct {
		ID           string     `json:"id"`
		AdvertiseURL string     `json:"advertise_url"`
		Version      string     `json:"version"`
		StartedAt    time.Time  `json:"started_at"`
		LastSeen     time.Time  `json:"last_seen"`
		StoppedAt    *time.Time `json:"stopped_at"`
		Live         bool       `json:"live"`
		Self         bool       `json:"self"`
		Plugins      []struct {
			ID      string `json:"id"`
			Version string `json:"version"`
			State   string `json:"state"`
			Error   string `json:"error"`
			// SettingsApplied is nil when not known.
			SettingsApplied *bool `json:"settings_applied"`
		} `json:"plugins"`
	} `json:"nodes"`
	Dialect string `json:"dialect"`
}

// pluginCell is one plugin on one node.
type pluginCell struct {
	// ID is the plugin's id.
	ID string
	// Installed is false when the node does not report the plugin.
	Installed bool
	Version   string
	State     string
	Error     string
	// Differs is true when live nodes run different versions of it.
	Differs bool
	// Settings says whether the node's plugin runs the provider settings
	// stored now: "applied", "pending", or "" when not known.
	Settings string
}

// StatusClass is the badge colour of the plugin's state.
func (c pluginCell) StatusClass() string {
	switch c.State {
	case "running":
		return "ok"
	case "starting", "restarting", "installed":
		return "degraded"
	case "failed":
		return "failing"
	}
	return "unknown"
}

// nodeRow is one node of the table.
type nodeRow struct {
	ID, AdvertiseURL, Version string
	Live, Self, Stopped       bool
	// Seen says how long ago it was last seen ("3 s ago"); SeenAt is the time.
	Seen, SeenAt string
	// StartedAt is when its process started.
	StartedAt string
	// VersionDiffers is true when live nodes run different host versions.
	VersionDiffers bool
	Plugins        []pluginCell
}

// clusterView is the cluster page's data.
type clusterView struct {
	Nodes []nodeRow
	// PluginIDs are the table's plugin columns.
	PluginIDs []string
	// Live counts the live nodes.
	Live int
	// SQLite is true when the host runs on SQLite, one node.
	SQLite bool
	// Mismatches say which plugins (or the host) differ in version
	// between live nodes, and where.
	Mismatches []string
}

// ago says how long before now t was, for a person.
func ago(now, t time.Time) string {
	d := max(now.Sub(t), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
}

// differing returns, for versions by node id of the live nodes, "" when
// they agree, else "V1 on a, b; V2 on c" (sorted).
func differing(byNode map[string]string) string {
	where := map[string][]string{}
	for node, v := range byNode {
		where[v] = append(where[v], node)
	}
	if len(where) < 2 {
		return ""
	}
	var parts []string
	for v, nodes := range where {
		sort.Strings(nodes)
		if v == "" {
			v = "not installed"
		}
		parts = append(parts, v+" on "+strings.Join(nodes, ", "))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// newClusterView builds the page from the API's answer at now.
func newClusterView(c clusterJSON, now time.Time) clusterView {
	v := clusterView{SQLite: c.Dialect == "sqlite"}
	ids := map[string]bool{}
	for _, n := range c.Nodes {
		for _, p := range n.Plugins {
			ids[p.ID] = true
		}
	}
	for id := range ids {
		v.PluginIDs = append(v.PluginIDs, id)
	}
	sort.Strings(v.PluginIDs)
	// Versions of the host and of each plugin on the live nodes.
	hostVersions := map[string]string{}
	pluginVersions := map[string]map[string]string{}
	for _, id := range v.PluginIDs {
		pluginVersions[id] = map[string]string{}
	}
	for _, n := range c.Nodes {
		if !n.Live {
			continue
		}
		v.Live++
		hostVersions[n.ID] = n.Version
		for _, id := range v.PluginIDs {
			pluginVersions[id][n.ID] = ""
		}
		for _, p := range n.Plugins {
			pluginVersions[p.ID][n.ID] = p.Version
		}
	}
	hostDiffers := differing(hostVersions)
	if hostDiffers != "" {
		v.Mismatches = append(v.Mismatches, "the host: "+hostDiffers)
	}
	differs := map[string]bool{}
	for _, id := range v.PluginIDs {
		if d := differing(pluginVersions[id]); d != "" {
			differs[id] = true
			v.Mismatches = append(v.Mismatches, id+": "+d)
		}
	}
	for _, n := range c.Nodes {
		row := nodeRow{ID: n.ID, AdvertiseURL: n.AdvertiseURL, Version: n.Version, Live: n.Live, Self: n.Self, Stopped: n.StoppedAt != nil,
			Seen: ago(now, n.LastSeen), SeenAt: n.LastSeen.UTC().Format("2006-01-02 15:04:05 UTC"),
			StartedAt: n.StartedAt.UTC().Format("2006-01-02 15:04:05 UTC"), VersionDiffers: n.Live && hostDiffers != ""}
		for _, id := range v.PluginIDs {
			cell := pluginCell{ID: id}
			for _, p := range n.Plugins {
				if p.ID == id {
					cell = pluginCell{ID: id, Installed: true, Version: p.Version, State: p.State, Error: p.Error, Differs: n.Live && differs[id]}
					if p.SettingsApplied != nil {
						cell.Settings = map[bool]string{true: "applied", false: "pending"}[*p.SettingsApplied]
					}
				}
			}
			row.Plugins = append(row.Plugins, cell)
		}
		v.Nodes = append(v.Nodes, row)
	}
	return v
}

// clusterPage renders the cluster from GET /api/v1/admin/cluster.
func (h *handler) clusterPage(w http.ResponseWriter, r *http.Request) {
	p := page{Name: "cluster", Title: clusterTitle, Nav: "storage",
		Crumbs: append(slices.Clip(settingsCrumbs), crumb{storageTitle, StoragePath}, crumb{clusterTitle, ""})}
	var body clusterJSON
	if err := h.apiGet(w, r, "/api/v1/admin/cluster", &body); err != nil {
		h.renderAPIError(w, r, p, err)
		return
	}
	p.Problem = problemOf(h.storageHealth(w, r))
	p.Data = newClusterView(body, h.opts.Now())
	h.render(w, r, http.StatusOK, "cluster", p)
}
