-- Two more lookups the service decides by, moved from the event_name and key_arns columns (not
-- hashed: a database writer renames an event there without breaking the chain) to what each
-- event's hashed body says, as 0041 did for deletions (the predicate reads the top-level event
-- name as text; the rest is read as json only from an event so named). Additive: the indexes
-- on the columns (0023, 0037) stay for the previous release.
--
-- An access key's latest status event (DeactivateAccessKey, ActivateAccessKey, DeleteAccessKey):
-- a key deactivated, its event renamed in the column and its Active row put back, signed again.
CREATE INDEX audit_events_access_keys_by_body ON audit_events ((CASE WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) IN ('DeactivateAccessKey', 'ActivateAccessKey', 'DeleteAccessKey') THEN ((body::json) #>> '{requestParameters,target}') END), seq)
    WHERE split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) IN ('DeactivateAccessKey', 'ActivateAccessKey', 'DeleteAccessKey');

-- A grant's end (GrantEnded), by its grant id and key: a grant put back with its end renamed in
-- the column allowed again.
CREATE INDEX audit_events_ended_grant_ids_by_body ON audit_events ((CASE WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'GrantEnded' THEN ((body::json) #>> '{additionalEventData,grantId}') END), (CASE WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'GrantEnded' THEN ((body::json) #>> '{resources,0,ARN}') END))
    WHERE split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'GrantEnded';

-- ListAliases pages an account's aliases in byte order (as the listing merges them with AWS's
-- predefined names), whatever the database's collation: an index in that order.
CREATE INDEX aliases_in_byte_order ON aliases (account_id, region, alias_name COLLATE "C");
