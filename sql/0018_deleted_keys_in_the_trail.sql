-- A key deleted at the end of its waiting period leaves a DeleteKey event in the audit trail
-- (hash-chained, signed, anchored outside the database). Rows of a deleted key put back into
-- the database (from an older backup) are refused while that event exists, and removing the
-- event breaks the chain. This index makes the check one lookup on a cold key load.
CREATE INDEX audit_events_deleted_keys ON audit_events ((key_arns[1])) WHERE event_name = 'DeleteKey';
