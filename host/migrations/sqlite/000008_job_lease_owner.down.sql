ALTER TABLE jobs DROP COLUMN locked_by;
