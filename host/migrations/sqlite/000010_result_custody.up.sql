-- Result custody: where each offloaded result really is, and jobs that stop
-- retrying after a permanent error.
--
-- results.bucket: the identity of the bucket the object is in, as the
-- provider reported it at upload (e.g. "r2:<account>/<bucket>"); '' for a
-- local result and for a legacy row (uploaded before providers reported
-- it). With bucket <> '', object_key is the object's full key in that
-- bucket (the provider's key prefix included); with bucket = '' it is the
-- key given to Put, which the provider prefixes with its current settings.
-- The host adopts a provider's legacy rows (bucket and full key) at its
-- first configure that reports a bucket.
ALTER TABLE results ADD COLUMN bucket TEXT NOT NULL DEFAULT '';

-- jobs.state: 'queued' (waiting or running) or 'failed' (parked after a
-- permanent error; workers skip it until the provider's settings change or
-- an admin retries it). last_code is the contract code of last_error ('' for
-- none). bucket is where a delete job's object is (results.bucket), so the
-- delete is addressed to that bucket or not sent at all.
ALTER TABLE jobs ADD COLUMN state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'failed'));
ALTER TABLE jobs ADD COLUMN last_code TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN bucket TEXT NOT NULL DEFAULT '';
