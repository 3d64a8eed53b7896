-- One grant's end of one key in the trail, directly (see the Postgres migration 0037). Additive.
CREATE INDEX audit_events_ended_grant_ids ON audit_events (json_extract(body, '$.additionalEventData.grantId'), json_extract(key_arns, '$[0]'))
    WHERE event_name = 'GrantEnded';
