DROP INDEX jobs_node_due_idx;
ALTER TABLE jobs DROP COLUMN node;
ALTER TABLE results DROP COLUMN local_node;
