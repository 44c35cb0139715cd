-- owner: the platform's user id a result belongs to ('' when the studio sent
-- none); GET /api/v1/results?owner=… lists one owner's results.
ALTER TABLE results ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX results_owner_idx ON results (owner, deleted, created_at, id);
