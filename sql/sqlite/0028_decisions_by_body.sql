-- The same as the Postgres migration 0042: an access key's latest status event and a grant's
-- end, by what the event's hashed body says; cheap text predicates.
CREATE INDEX audit_events_access_keys_by_body ON audit_events (json_extract(body, '$.requestParameters.target'), seq)
    WHERE (instr(body, '"eventName":"DeactivateAccessKey"') > 0
        OR instr(body, '"eventName":"ActivateAccessKey"') > 0
        OR instr(body, '"eventName":"DeleteAccessKey"') > 0);
CREATE INDEX audit_events_ended_grant_ids_by_body ON audit_events (json_extract(body, '$.additionalEventData.grantId'), json_extract(body, '$.resources[0].ARN'))
    WHERE instr(body, '"eventName":"GrantEnded"') > 0;
