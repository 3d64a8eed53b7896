-- The audit trail: one hash chain of events shared by every server instance. Each event's hash
-- covers its sequence number, its predecessor's hash and its canonical JSON body, so altering,
-- inserting, deleting or reordering events breaks the chain at that event. Appends lock the
-- head row, so instances take turns (in batches: group commit).
CREATE TABLE audit_events (
    seq         BIGINT PRIMARY KEY CHECK (seq > 0),
    event_id    UUID NOT NULL,
    event_time  TIMESTAMPTZ NOT NULL,
    event_name  TEXT NOT NULL,
    account_id  TEXT,
    key_arns    TEXT[] NOT NULL DEFAULT '{}',
    body        TEXT NOT NULL,
    prev_hash   BYTEA NOT NULL,
    hash        BYTEA NOT NULL
);
CREATE INDEX audit_events_by_time ON audit_events (event_time);

CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- Signed checkpoints: the chain head at `seq`, signed in the token with the audit key.
CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    hash       BYTEA NOT NULL,
    signed_at  TIMESTAMPTZ NOT NULL,
    signature  BYTEA NOT NULL
);
