-- The same as the Postgres migration 0041: a key's deletion, by what the event's hashed body
-- says; a cheap text predicate, the key parsed only from the events it admits.
CREATE INDEX audit_events_deletions_by_body ON audit_events (json_extract(body, '$.resources[0].ARN'))
    WHERE instr(body, '"eventName":"DeleteKey"') > 0;
