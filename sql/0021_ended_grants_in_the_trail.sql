-- A grant retired or revoked leaves a GrantEnded event in the audit trail (hash-chained, signed,
-- anchored outside the database) before its row is deleted. The genuine row put back (from an
-- older backup, or saved by a database writer) is refused while that event exists, and removing
-- the event breaks the chain. This index makes the check one lookup per key on a cold load of
-- its grants.
CREATE INDEX audit_events_ended_grants ON audit_events ((key_arns[1])) WHERE event_name = 'GrantEnded';
