-- A key's deletion is looked up in the trail by what the event's hashed body says (its name and
-- its key), not by the event_name and key_arns columns, which are not hashed: a database writer
-- who renamed a DeleteKey event in its column hid the deletion of a key put back from a backup.
-- This index finds the deletions by the body. Additive; it reads every event once when built.
CREATE INDEX audit_events_deletions_by_body ON audit_events (json_extract(body, '$.resources[0].ARN'))
    WHERE json_extract(body, '$.eventName') = 'DeleteKey';
