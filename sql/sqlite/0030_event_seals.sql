-- As sql/0044_event_seals.sql: each event that can decide something is sealed (signed in the
-- token with the audit key over its sequence number and body) once it is chained; a decision
-- takes a permissive event only with its seal.
ALTER TABLE audit_events ADD COLUMN seal BLOB;
