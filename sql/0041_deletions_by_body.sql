-- A key's deletion is looked up in the trail by what the event's hashed body says (its name and
-- its key), not by the event_name and key_arns columns, which are not hashed: a database writer
-- who renamed a DeleteKey event in its column hid the deletion of a key put back from a backup.
-- The predicate reads the body's top-level event name as text (the value of its first
-- "eventName": bodies are written with their members sorted, and no caller's text comes before
-- it): cheap on every event written, and no caller's event is admitted. The key is read as json
-- only from an event so named (CASE), whatever order a plan tests conditions in: a caller's
-- body may hold an escape (\u0000) that json and jsonb cannot turn into text. Additive.
CREATE INDEX audit_events_deletions_by_body ON audit_events ((CASE WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'DeleteKey' THEN ((body::json) #>> '{resources,0,ARN}') END))
    WHERE split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'DeleteKey';
