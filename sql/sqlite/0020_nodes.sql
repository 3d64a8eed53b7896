-- The nodes of a deployment (see the Postgres migration 0033). Additive.
CREATE TABLE nodes (
    node_id      TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    version      TEXT NOT NULL,
    token_label  TEXT NOT NULL,
    ready        BOOLEAN NOT NULL,
    started_at   TEXT NOT NULL,
    last_seen    TEXT NOT NULL
);
