-- One index for every decision the service reads from the trail's hashed bodies (an access
-- key's creation, activation, deactivation and deletion; a principal's deletion and a role's
-- trust replaced; a key's deletion; a grant's end; a material's leases; seal coverage), keyed
-- on the event's name and what the decision looks up, both read from the body, so that a
-- renamed `event_name` column still hides nothing. It replaces four indexes that each worked
-- the event's name out of the body again on every append (about half the append's cost in
-- Postgres on an Encrypt: docs/benchmarks.md, round eight); every event is tested once now.
-- The lookups name its predicate and its expressions (src/store/identity.rs, keys.rs,
-- grants.rs, audit.rs). No release reads the indexes dropped (the previous release, 791a319,
-- predates them), so the floor stays.
DROP INDEX IF EXISTS audit_events_access_keys_by_body;
DROP INDEX IF EXISTS audit_events_deletions_by_body;
DROP INDEX IF EXISTS audit_events_ended_grant_ids_by_body;
DROP INDEX IF EXISTS audit_events_decisions_by_body;
CREATE INDEX audit_events_decided_by_body ON audit_events ((split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1)), (CASE WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'InvocationsLeased' THEN ((body::json) #>> '{additionalEventData,materialId}') WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'CreateAccessKey' THEN ((body::json) #>> '{requestParameters,details,access_key_id}') WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) IN ('CreateRole', 'DeletePrincipal', 'ActivateAccessKey', 'DeactivateAccessKey', 'DeleteAccessKey') THEN ((body::json) #>> '{requestParameters,target}') WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'DeleteKey' THEN ((body::json) #>> '{resources,0,ARN}') WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'GrantEnded' THEN ((body::json) #>> '{additionalEventData,grantId}') END), seq)
    WHERE split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) IN ('ActivateAccessKey', 'CreateAccessKey', 'CreateRole', 'DeactivateAccessKey', 'DeleteAccessKey', 'DeleteKey', 'DeletePrincipal', 'GrantEnded', 'InvocationsLeased', 'SealCoverage');
