-- Back to addressing every object by the key given to Put: the older host
-- reads object_key that way. Failed jobs become queued again (the older
-- host retries every job).
UPDATE jobs SET object_key = COALESCE((SELECT r.path FROM results r WHERE r.id = jobs.result_id), object_key)
    WHERE kind = 'delete' AND bucket <> '';
UPDATE results SET object_key = path WHERE bucket <> '' AND object_key <> '';
ALTER TABLE jobs DROP COLUMN bucket;
ALTER TABLE jobs DROP COLUMN last_code;
ALTER TABLE jobs DROP COLUMN state;
ALTER TABLE results DROP COLUMN bucket;
