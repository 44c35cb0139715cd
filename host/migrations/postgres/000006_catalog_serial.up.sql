-- catalog_serial: the highest marketplace index serial this host has
-- accepted. Every node on the database shares it, and it survives restarts,
-- so a stale or replayed index (a lower serial) is refused by all of them.
-- One row per catalog name; the host uses 'marketplace'.
CREATE TABLE catalog_serial (
    name        TEXT        NOT NULL PRIMARY KEY CHECK (name <> ''),
    serial      BIGINT      NOT NULL CHECK (serial > 0),
    accepted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
