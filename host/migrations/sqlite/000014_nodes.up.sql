-- nodes: the host nodes sharing this database, for the cluster view. Each
-- node upserts its row at start, then every few seconds sets last_seen (the
-- database's clock) and plugins, a JSON array of its plugins' states:
-- [{"id","version","state","error"}]. stopped_at is set by a clean shutdown
-- and cleared by the next start. instance is random per host process: a
-- process that finds another instance in its row knows a second process
-- runs with its node id. A node is live while stopped_at is NULL
-- and last_seen is recent; rows of nodes gone for days are pruned by any
-- node. On SQLite the database belongs to one data dir, so one host: the
-- table holds that one node (a start removes rows of earlier node ids).
CREATE TABLE nodes (
    id            TEXT        PRIMARY KEY CHECK (id <> ''),
    advertise_url TEXT        NOT NULL DEFAULT '',
    version       TEXT        NOT NULL DEFAULT '',
    started_at    TIMESTAMP   NOT NULL,
    last_seen     TIMESTAMP   NOT NULL,
    stopped_at    TIMESTAMP  ,
    plugins       TEXT        NOT NULL DEFAULT '[]',
    instance      TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX nodes_last_seen_idx ON nodes (last_seen);
