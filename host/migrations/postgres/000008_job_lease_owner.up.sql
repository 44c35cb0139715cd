-- locked_by: who holds a job's lease, "<node id>/<process>/<claim>" ('' when
-- unleased). A restarted node releases at once the leases its earlier
-- process held, instead of waiting for them to expire.
ALTER TABLE jobs ADD COLUMN locked_by TEXT NOT NULL DEFAULT '';
