-- A change and the record that it committed are durable together: every write transaction of a
-- call that changes something also writes the call's change record here. The call's own event,
-- once chained, removes it (in the same statement); a record whose call never got its event
-- chained (the trail refused it, the node died) is chained by a sweeper as `ApiCallCommitted`.
-- `mac` (computed in the token) covers the event: a record written with SQL is refused.
CREATE TABLE audit_outbox (
    event_id      UUID PRIMARY KEY,
    event_time    TIMESTAMPTZ NOT NULL,
    event_name    TEXT NOT NULL,
    account_id    TEXT,
    key_arns      TEXT[] NOT NULL,
    body          TEXT NOT NULL,
    mac           BYTEA NOT NULL,
    -- A sweeper chaining the record holds it until then.
    claimed_until TIMESTAMPTZ
);
CREATE INDEX audit_outbox_by_time ON audit_outbox (event_time);
