-- Installed plugins, results and the durable job queue.

-- plugins: what is installed and how to launch it. sha256 is recorded at
-- install and checked by go-plugin at every launch (never recomputed).
CREATE TABLE plugins (
    id           TEXT        NOT NULL PRIMARY KEY CHECK (id <> ''),
    version      TEXT        NOT NULL,
    dir          TEXT        NOT NULL,
    binary_path  TEXT        NOT NULL,
    sha256       TEXT        NOT NULL CHECK (length(sha256) = 64),
    installed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- results: every finalized studio result and where it lives. storage is
-- 'local' or a provider id: the one place the result is served from.
CREATE TABLE results (
    id            TEXT        NOT NULL PRIMARY KEY,
    path          TEXT        NOT NULL UNIQUE,
    content_type  TEXT        NOT NULL,
    size          BIGINT      NOT NULL CHECK (size >= 0),
    sha256        TEXT        NOT NULL,
    storage       TEXT        NOT NULL DEFAULT 'local',
    object_key    TEXT        NOT NULL DEFAULT '',
    url           TEXT        NOT NULL DEFAULT '',
    local_present BOOLEAN     NOT NULL DEFAULT TRUE,
    deleted       BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX results_listing_idx ON results (deleted, created_at, id);

-- jobs: offloads and deletes waiting to be (re)tried. A node leases a job by
-- setting locked_until; an expired lease lets another node take it.
CREATE TABLE jobs (
    id              BIGSERIAL   PRIMARY KEY,
    kind            TEXT        NOT NULL CHECK (kind IN ('offload', 'delete')),
    result_id       TEXT        NOT NULL,
    provider        TEXT        NOT NULL,
    object_key      TEXT        NOT NULL DEFAULT '',
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    locked_until    TIMESTAMPTZ,
    last_error      TEXT        NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX jobs_due_idx ON jobs (next_attempt_at);
CREATE UNIQUE INDEX jobs_one_per_result_idx ON jobs (kind, result_id);
