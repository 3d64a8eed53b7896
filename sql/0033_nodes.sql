-- The nodes of a deployment, as each last reported itself (every few seconds): what the
-- console's operator view lists as the nodes seen. Shown only, never trusted: nothing is
-- decided from it. Additive.
CREATE TABLE nodes (
    node_id      TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    version      TEXT NOT NULL,
    token_label  TEXT NOT NULL,
    ready        BOOLEAN NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    last_seen    TIMESTAMPTZ NOT NULL
);
