-- The same as the Postgres migration 0018: find a deleted key's DeleteKey event in one lookup.
CREATE INDEX audit_events_deleted_keys ON audit_events (json_extract(key_arns, '$[0]')) WHERE event_name = 'DeleteKey';
