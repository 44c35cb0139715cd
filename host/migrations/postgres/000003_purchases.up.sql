-- purchases: plugins bought on the marketplace, each proven by a receipt
-- signed by a trusted marketplace key.
CREATE TABLE purchases (
    plugin_id   TEXT        NOT NULL PRIMARY KEY,
    buyer       TEXT        NOT NULL DEFAULT '',
    receipt     TEXT        NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
