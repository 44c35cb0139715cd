-- Back to offload and delete jobs only: restore jobs are dropped (their
-- results stay where they are recorded).
DELETE FROM jobs WHERE kind = 'restore';
CREATE TABLE jobs_old (
    id              INTEGER     PRIMARY KEY AUTOINCREMENT,
    kind            TEXT        NOT NULL CHECK (kind IN ('offload', 'delete')),
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
    bucket          TEXT        NOT NULL DEFAULT ''
);
INSERT INTO jobs_old (id, kind, result_id, provider, object_key, attempts, next_attempt_at, locked_until, last_error, created_at, locked_by, state, last_code, bucket)
    SELECT id, kind, result_id, provider, object_key, attempts, next_attempt_at, locked_until, last_error, created_at, locked_by, state, last_code, bucket FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_old RENAME TO jobs;
CREATE INDEX jobs_due_idx ON jobs (next_attempt_at);
CREATE UNIQUE INDEX jobs_one_per_result_idx ON jobs (kind, result_id);
DROP TABLE IF EXISTS bulk_items;
DROP TABLE IF EXISTS bulk_runs;
