package app

import (
	"github.com/magicads/r2storage/host/cluster"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/providers"
)

// pluginStates is this node's plugins for its heartbeat: each installed
// plugin's version, its runtime state (running, restarting, failed, …;
// failed too when its install was refused) and its last error, with the
// current secrets scrubbed.
func (a *App) pluginStates() []cluster.Plugin {
	list := a.Providers.Plugins()
	applied := a.Providers.AppliedStamps()
	out := make([]cluster.Plugin, 0, len(list))
	for _, p := range list {
		st := cluster.Plugin{ID: p.ID, Version: p.Version, State: p.State, Settings: applied[p.ID]}
		if p.State == "failed" {
			st.Error = p.Message
		}
		if rs, ok := a.Runtime.Status(p.ID); ok && p.State != "failed" {
			st.State = string(rs.State)
			if rs.State != pluginrt.StateRunning {
				st.Error = rs.LastError
			}
		}
		st.Error = providers.Redact(st.Error, a.Providers.Secrets())
		out = append(out, st)
	}
	return out
}
