-- The same as the Postgres migration 0041: a key's deletion, by what the event's hashed body
-- says; the predicate reads the body's top-level event name as text.
CREATE INDEX audit_events_deletions_by_body ON audit_events ((CASE WHEN substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) = 'DeleteKey' THEN json_extract(body, '$.resources[0].ARN') END))
    WHERE substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) = 'DeleteKey';
