-- Bulk storage operations an admin starts and watches: offload every local
-- result to the Default Storage provider, or bring every result of a
-- provider back to the local results disk.
--
-- bulk_runs: one row per operation. state is 'running', 'paused',
-- 'cancelled' or 'done'; active is 'active' while running or paused, NULL
-- otherwise (its unique index lets one operation be active at a time, on
-- every node). active_ms is how long the run was running before it was last
-- resumed (resumed_at), for the measured rate.
CREATE TABLE bulk_runs (
    id            INTEGER   PRIMARY KEY AUTOINCREMENT,
    direction     TEXT      NOT NULL CHECK (direction IN ('offload', 'local')),
    provider      TEXT      NOT NULL CHECK (provider <> ''),
    delete_remote INTEGER   NOT NULL DEFAULT 0,
    state         TEXT      NOT NULL CHECK (state IN ('running', 'paused', 'cancelled', 'done')),
    active        TEXT      CHECK (active IS NULL OR active = 'active'),
    total_results BIGINT    NOT NULL DEFAULT 0,
    total_bytes   BIGINT    NOT NULL DEFAULT 0,
    active_ms     BIGINT    NOT NULL DEFAULT 0,
    resumed_at    TIMESTAMP,
    created_at    TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    finished_at   TIMESTAMP
);
CREATE UNIQUE INDEX bulk_runs_one_active_idx ON bulk_runs (active);

-- bulk_items: the results an operation covers, taken when it started. state
-- is 'pending' (not queued yet), 'queued' (its job is in the jobs table),
-- 'done', 'failed' (error says why), 'skipped' (deleted or moved meanwhile)
-- or 'cancelled'.
CREATE TABLE bulk_items (
    run_id     BIGINT    NOT NULL,
    result_id  TEXT      NOT NULL,
    size       BIGINT    NOT NULL,
    state      TEXT      NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'queued', 'done', 'failed', 'skipped', 'cancelled')),
    error      TEXT      NOT NULL DEFAULT '',
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (run_id, result_id)
);
CREATE INDEX bulk_items_state_idx ON bulk_items (run_id, state);

-- jobs: a new kind 'restore' (download a result back to the local disk),
-- and bulk_run, the bulk operation that queued the job (0 for none). SQLite
-- cannot change a CHECK in place: the table is rebuilt.
CREATE TABLE jobs_new (
    id              INTEGER     PRIMARY KEY AUTOINCREMENT,
    kind            TEXT        NOT NULL CHECK (kind IN ('offload', 'delete', 'restore')),
    result_id       TEXT        NOT NULL,
    provider        TEXT        NOT NULL,
    object_key      TEXT        NOT NULL DEFAULT '',
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP   NOT NULL DEFAULT CURRENT_TIMESTAMP,
    locked_until    TIMESTAMP  ,
    last_error      TEXT        NOT NULL DEFAULT '',
    created_at      TIMESTAMP   NOT NULL DEFAULT CURRENT_TIMESTAMP,
    locked_by       TEXT        NOT NULL DEFAULT '',
    state           TEXT        NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'failed')),
    last_code       TEXT        NOT NULL DEFAULT '',
    bucket          TEXT        NOT NULL DEFAULT '',
    bulk_run        BIGINT      NOT NULL DEFAULT 0
);
INSERT INTO jobs_new (id, kind, result_id, provider, object_key, attempts, next_attempt_at, locked_until, last_error, created_at, locked_by, state, last_code, bucket)
    SELECT id, kind, result_id, provider, object_key, attempts, next_attempt_at, locked_until, last_error, created_at, locked_by, state, last_code, bucket FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_due_idx ON jobs (next_attempt_at);
CREATE UNIQUE INDEX jobs_one_per_result_idx ON jobs (kind, result_id);
CREATE INDEX jobs_bulk_run_idx ON jobs (bulk_run);
