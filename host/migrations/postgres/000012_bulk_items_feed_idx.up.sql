-- The bulk feeder takes a run's pending items in result_id order, and the
-- reconciler its queued ones: an index in that order lets each step read
-- only the rows it takes, instead of sorting every pending item of the run
-- on every step (10,000 rows for a 10,000-result offload). With size in it,
-- the progress counts (per state: results and bytes), read every second
-- while an admin watches, come from the index alone.
CREATE INDEX bulk_items_feed_idx ON bulk_items (run_id, state, result_id, size);
DROP INDEX bulk_items_state_idx;
