DROP INDEX IF EXISTS settings_owner_idx;
DROP TABLE IF EXISTS settings;
