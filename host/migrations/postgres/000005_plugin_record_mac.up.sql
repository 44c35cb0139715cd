-- plugins.mac authenticates the install record: HMAC-SHA256, under a key
-- derived from APP_KEY, of the plugin's id, version, binary path (relative
-- to the plugins dir) and sha256. The host checks it before every launch and
-- launches nothing for a record that fails, so whoever can write this table
-- cannot choose what the host runs. The binary path itself is derived from
-- the plugins dir, id, version and manifest; dir and binary_path are kept for
-- information only. Records written before this column existed have an empty
-- MAC and are refused until the plugin is reinstalled.
ALTER TABLE plugins ADD COLUMN mac TEXT NOT NULL DEFAULT '';
