-- Host settings entries: one row per setting name. The host registers each
-- plugin's entry (owner = plugin id) when it installs it; it writes value as
-- AES-256-GCM ciphertext under the APP_KEY named by key_id. NULL value means
-- "not configured yet".
CREATE TABLE settings (
    name       TEXT        NOT NULL PRIMARY KEY CHECK (name <> ''),
    owner      TEXT        NOT NULL DEFAULT 'host' CHECK (owner <> ''),
    value      BYTEA,
    key_id     TEXT        NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX settings_owner_idx ON settings (owner);
