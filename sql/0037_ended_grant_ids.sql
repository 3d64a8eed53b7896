-- A grant named by a grant token is checked against the trail on every call that carries the
-- token. It was checked by reading every GrantEnded event of its key; a key whose grants are
-- created and retired in a loop made each such call read all of them. This index finds the
-- one grant's end of the one key directly. Additive.
CREATE INDEX audit_events_ended_grant_ids ON audit_events (((body::jsonb) #>> '{additionalEventData,grantId}'), (key_arns[1]))
    WHERE event_name = 'GrantEnded';
