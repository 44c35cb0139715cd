package marketplace

import "context"

// ClusterLock takes the cluster-wide lock an install or uninstall of
// plugin id holds, for tests that play another node's install.
func (m *Marketplace) ClusterLock(ctx context.Context, id string) (func(), error) {
	return m.clusterLock(ctx, id)
}
