-- A key's deletion is looked up in the trail by what the event's hashed body says (its name and
-- its key), not by the event_name and key_arns columns, which are not hashed: a database writer
-- who renamed a DeleteKey event in its column hid the deletion of a key put back from a backup.
-- The predicate is a text test (cheap on every event written; a superset the lookup narrows by
-- the parsed body); only the events it admits are parsed for the key. Additive.
CREATE INDEX audit_events_deletions_by_body ON audit_events ((((body::jsonb) #>> '{resources,0,ARN}')))
    WHERE strpos(body, '"eventName":"DeleteKey"') > 0;
