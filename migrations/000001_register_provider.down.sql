-- Removes the cloudflare-r2 provider's settings entry (and its stored,
-- encrypted settings). The same SQL runs on SQLite and PostgreSQL.
DELETE FROM settings WHERE name = 'storage.provider.cloudflare-r2' AND owner = 'cloudflare-r2';
