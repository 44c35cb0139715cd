ALTER TABLE results DROP COLUMN local_reason;
