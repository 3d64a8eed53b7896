-- `kms admin seal` finds the trail's latest SealCoverage event (the MAC kinds every row carried
-- when it was recorded) in one lookup.
CREATE INDEX audit_events_seal_coverage ON audit_events (seq) WHERE event_name = 'SealCoverage';
