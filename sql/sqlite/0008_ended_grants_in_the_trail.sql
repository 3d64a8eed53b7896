-- The same as the Postgres migration 0021: a key's GrantEnded events in one lookup.
CREATE INDEX audit_events_ended_grants ON audit_events (json_extract(key_arns, '$[0]')) WHERE event_name = 'GrantEnded';
