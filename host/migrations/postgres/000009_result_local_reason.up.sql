-- local_reason: why a result whose Default Storage is a provider is still
-- local: queued for it (and why it is not there yet), or kept local for good
-- (the job was dropped, the provider takes no new results). '' otherwise.
ALTER TABLE results ADD COLUMN local_reason TEXT NOT NULL DEFAULT '';
