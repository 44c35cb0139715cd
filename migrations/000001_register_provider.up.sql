-- Registers the cloudflare-r2 provider's encrypted settings entry in the host's
-- settings table. The value stays NULL (not configured) until an admin saves
-- the settings; the host encrypts them with APP_KEY. The same SQL runs on
-- SQLite and PostgreSQL.
INSERT INTO settings (name, owner) VALUES ('storage.provider.cloudflare-r2', 'cloudflare-r2') ON CONFLICT (name) DO NOTHING;
