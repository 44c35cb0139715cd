CREATE INDEX bulk_items_state_idx ON bulk_items (run_id, state);
DROP INDEX bulk_items_feed_idx;
