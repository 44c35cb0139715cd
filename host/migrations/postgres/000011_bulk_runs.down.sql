-- Back to offload and delete jobs only: restore jobs are dropped (their
-- results stay where they are recorded).
DELETE FROM jobs WHERE kind = 'restore';
DROP INDEX IF EXISTS jobs_bulk_run_idx;
ALTER TABLE jobs DROP COLUMN IF EXISTS bulk_run;
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('offload', 'delete'));
DROP TABLE IF EXISTS bulk_items;
DROP TABLE IF EXISTS bulk_runs;
