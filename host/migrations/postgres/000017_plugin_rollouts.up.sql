-- plugin_rollouts: an install or update through one node that waits for
-- every other live node to check it before its plugins record switches.
-- token names the rollout; plugin_id and version name the bundle stored in
-- plugin_bundles; sha256 is the executable's, which each node checks after
-- unpacking; mac is over (plugin_id, version, sha256) under APP_KEY, so a
-- node refuses a rollout written outside the host. node_id is the node that
-- started it (and waits). Rows go when the rollout ends, either way.
CREATE TABLE plugin_rollouts (
    token      TEXT   PRIMARY KEY,
    plugin_id  TEXT   NOT NULL,
    version    TEXT   NOT NULL,
    sha256     TEXT   NOT NULL CHECK (length(sha256) = 64),
    mac        TEXT   NOT NULL,
    node_id    TEXT   NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX plugin_rollouts_plugin_idx ON plugin_rollouts (plugin_id);
-- plugin_rollout_nodes: each other node's answer to a rollout: ready (its
-- canary of the unpacked bundle passed) or failed, with the reason.
CREATE TABLE plugin_rollout_nodes (
    token   TEXT   NOT NULL REFERENCES plugin_rollouts (token) ON DELETE CASCADE,
    node_id TEXT   NOT NULL,
    state   TEXT   NOT NULL CHECK (state IN ('ready', 'failed')),
    error   TEXT   NOT NULL DEFAULT '',
    at_ms   BIGINT NOT NULL,
    PRIMARY KEY (token, node_id)
);
