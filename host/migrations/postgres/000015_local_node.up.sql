-- Local copies belong to their node. Several host nodes may share this
-- database, each with its own results folder.
--
-- results.local_node: the node whose results folder holds the result's
-- local copy; '' when any node may read it (all nodes mount one shared
-- results folder, or the row is from before this column).
ALTER TABLE results ADD COLUMN local_node TEXT NOT NULL DEFAULT '';

-- jobs.node: the node that must run the job, because the job reads or
-- removes a local copy that only that node has; '' when any node may.
ALTER TABLE jobs ADD COLUMN node TEXT NOT NULL DEFAULT '';

-- A worker claims the due jobs of its own node and those of any node: one
-- ordered range of this index each, so jobs waiting for another node
-- (down, or gone) are never read past. Nodes on a shared results folder
-- take every job, through jobs_due_idx as before.
CREATE INDEX jobs_node_due_idx ON jobs (node, next_attempt_at, id);
