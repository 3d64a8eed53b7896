-- One index for every decision the service reads from the trail's hashed bodies (an access
-- key's creation, activation, deactivation and deletion; a principal's deletion and a role's
-- trust replaced; a key's deletion; a grant's end; a material's leases; seal coverage), keyed
-- on the event's name and what the decision looks up, both read from the body, so that a
-- renamed `event_name` column still hides nothing. It replaces four indexes that each worked
-- the event's name out of the body again on every append (see the Postgres migration 0046); every event is tested once now.
-- The lookups name its predicate and its expressions (src/store/identity.rs, keys.rs,
-- grants.rs, audit.rs). No release reads the indexes dropped (the previous release, 791a319,
-- predates them), so the floor stays.
DROP INDEX IF EXISTS audit_events_access_keys_by_body;
DROP INDEX IF EXISTS audit_events_deletions_by_body;
DROP INDEX IF EXISTS audit_events_ended_grant_ids_by_body;
DROP INDEX IF EXISTS audit_events_decisions_by_body;
CREATE INDEX audit_events_decided_by_body ON audit_events ((substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1)), (CASE WHEN substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) = 'InvocationsLeased' THEN json_extract(body, '$.additionalEventData.materialId') WHEN substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) = 'CreateAccessKey' THEN json_extract(body, '$.requestParameters.details.access_key_id') WHEN substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) IN ('CreateRole', 'DeletePrincipal', 'ActivateAccessKey', 'DeactivateAccessKey', 'DeleteAccessKey') THEN json_extract(body, '$.requestParameters.target') WHEN substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) = 'DeleteKey' THEN json_extract(body, '$.resources[0].ARN') WHEN substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) = 'GrantEnded' THEN json_extract(body, '$.additionalEventData.grantId') END), seq)
    WHERE substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) IN ('ActivateAccessKey', 'CreateAccessKey', 'CreateRole', 'DeactivateAccessKey', 'DeleteAccessKey', 'DeleteKey', 'DeletePrincipal', 'GrantEnded', 'InvocationsLeased', 'SealCoverage');
