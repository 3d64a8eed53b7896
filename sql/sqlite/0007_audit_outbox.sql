-- The same as the Postgres migration 0020.
CREATE TABLE audit_outbox (
    event_id      BLOB PRIMARY KEY,
    event_time    TEXT NOT NULL,
    event_name    TEXT NOT NULL,
    account_id    TEXT,
    -- JSON array of key ARNs.
    key_arns      TEXT NOT NULL,
    body          TEXT NOT NULL,
    mac           BLOB NOT NULL,
    claimed_until TEXT
) STRICT;
CREATE INDEX audit_outbox_by_time ON audit_outbox (event_time);
