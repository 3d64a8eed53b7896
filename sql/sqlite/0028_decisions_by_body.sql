-- The same as the Postgres migration 0042: an access key's latest status event and a grant's
-- end, by what the event's hashed body says.
CREATE INDEX audit_events_access_keys_by_body ON audit_events (json_extract(body, '$.requestParameters.target'), seq)
    WHERE substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1)
        IN ('DeactivateAccessKey', 'ActivateAccessKey', 'DeleteAccessKey');
CREATE INDEX audit_events_ended_grant_ids_by_body ON audit_events (json_extract(body, '$.additionalEventData.grantId'), json_extract(body, '$.resources[0].ARN'))
    WHERE substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) = 'GrantEnded';
