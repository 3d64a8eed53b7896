-- Two lookups the service decides by, moved from the event_name and key_arns columns (not
-- hashed: a database writer renames an event there without breaking the chain) to what each
-- event's hashed body says. The predicates are text tests (cheap on every event written; a
-- superset each lookup narrows by the parsed body); only the events they admit are parsed.
-- Additive: the indexes on the columns (0023, 0037) stay for the previous release.
--
-- An access key's latest status event (DeactivateAccessKey, ActivateAccessKey, DeleteAccessKey):
-- a key deactivated, its event renamed in the column and its Active row put back, signed again.
CREATE INDEX audit_events_access_keys_by_body ON audit_events (((body::jsonb) #>> '{requestParameters,target}'), seq)
    WHERE (strpos(body, '"eventName":"DeactivateAccessKey"') > 0
        OR strpos(body, '"eventName":"ActivateAccessKey"') > 0
        OR strpos(body, '"eventName":"DeleteAccessKey"') > 0);

-- A grant's end (GrantEnded), by its grant id and key: a grant put back with its end renamed in
-- the column allowed again.
CREATE INDEX audit_events_ended_grant_ids_by_body ON audit_events (((body::jsonb) #>> '{additionalEventData,grantId}'), ((body::jsonb) #>> '{resources,0,ARN}'))
    WHERE strpos(body, '"eventName":"GrantEnded"') > 0;
