-- The same as the Postgres migration 0019.
CREATE INDEX audit_events_seal_coverage ON audit_events (seq) WHERE event_name = 'SealCoverage';
