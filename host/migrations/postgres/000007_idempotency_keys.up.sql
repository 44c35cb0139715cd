-- idempotency_keys: the Idempotency-Key of each POST /api/v1/results that
-- sent one, per caller (the service token or an admin), so a retried POST
-- returns the result the first one created instead of creating another.
-- A request holds its key while it uploads by keeping locked_until in the
-- future (token names the holder); result_id is set just before the result
-- is recorded and done once it is. A row expires at expires_at (24 h) and
-- is then pruned lazily.
CREATE TABLE idempotency_keys (
    caller       TEXT        NOT NULL,
    idem_key     TEXT        NOT NULL,
    token        TEXT        NOT NULL,
    result_id    TEXT        NOT NULL DEFAULT '',
    done         BOOLEAN     NOT NULL DEFAULT FALSE,
    locked_until TIMESTAMPTZ,
    expires_at   TIMESTAMPTZ NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, idem_key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
