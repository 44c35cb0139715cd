-- Host settings entries: one row per setting name. The host registers each
-- plugin's entry (owner = plugin id) when it installs it; it writes value as
-- AES-256-GCM ciphertext under the APP_KEY named by key_id. NULL value means
-- "not configured yet".
CREATE TABLE settings (
    name       TEXT      NOT NULL PRIMARY KEY CHECK (name <> ''),
    owner      TEXT      NOT NULL DEFAULT 'host' CHECK (owner <> ''),
    value      BLOB,
    key_id     TEXT      NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX settings_owner_idx ON settings (owner);
