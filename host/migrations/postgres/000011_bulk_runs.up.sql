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
    id            BIGSERIAL   PRIMARY KEY,
    direction     TEXT        NOT NULL CHECK (direction IN ('offload', 'local')),
    provider      TEXT        NOT NULL CHECK (provider <> ''),
    delete_remote BOOLEAN     NOT NULL DEFAULT FALSE,
    state         TEXT        NOT NULL CHECK (state IN ('running', 'paused', 'cancelled', 'done')),
    active        TEXT        CHECK (active IS NULL OR active = 'active'),
    total_results BIGINT      NOT NULL DEFAULT 0,
    total_bytes   BIGINT      NOT NULL DEFAULT 0,
    active_ms     BIGINT      NOT NULL DEFAULT 0,
    resumed_at    TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at   TIMESTAMPTZ
);
CREATE UNIQUE INDEX bulk_runs_one_active_idx ON bulk_runs (active);

-- bulk_items: the results an operation covers, taken when it started. state
-- is 'pending' (not queued yet), 'queued' (its job is in the jobs table),
-- 'done', 'failed' (error says why), 'skipped' (deleted or moved meanwhile)
-- or 'cancelled'.
CREATE TABLE bulk_items (
    run_id     BIGINT      NOT NULL,
    result_id  TEXT        NOT NULL,
    size       BIGINT      NOT NULL,
    state      TEXT        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'queued', 'done', 'failed', 'skipped', 'cancelled')),
    error      TEXT        NOT NULL DEFAULT '',
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, result_id)
);
CREATE INDEX bulk_items_state_idx ON bulk_items (run_id, state);

-- jobs: a new kind 'restore' (download a result back to the local disk),
-- and bulk_run, the bulk operation that queued the job (0 for none).
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('offload', 'delete', 'restore'));
ALTER TABLE jobs ADD COLUMN bulk_run BIGINT NOT NULL DEFAULT 0;
CREATE INDEX jobs_bulk_run_idx ON jobs (bulk_run);
