DROP INDEX results_owner_idx;
ALTER TABLE results DROP COLUMN owner;
