-- The same as the Postgres migration 0043: a material's latest leases, the latest SealCoverage,
-- a principal's deletion or trust policy change and an access key's creation, by what the event's hashed body says.
CREATE INDEX audit_events_leases_by_body ON audit_events ((CASE WHEN substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) = 'InvocationsLeased' THEN json_extract(body, '$.additionalEventData.materialId') END), seq)
    WHERE substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) = 'InvocationsLeased';
CREATE INDEX audit_events_seal_coverage_by_body ON audit_events (seq)
    WHERE substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) = 'SealCoverage';
CREATE INDEX audit_events_principal_changes_by_body ON audit_events ((CASE WHEN substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) IN ('CreateRole', 'DeletePrincipal') THEN json_extract(body, '$.requestParameters.target') END), seq)
    WHERE substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) IN ('CreateRole', 'DeletePrincipal');
CREATE INDEX audit_events_access_key_creations_by_body ON audit_events ((CASE WHEN substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) = 'CreateAccessKey' THEN json_extract(body, '$.requestParameters.details.access_key_id') END), seq)
    WHERE substr(substr(body, instr(body, '"eventName":"') + 13, 64), 1, instr(substr(body, instr(body, '"eventName":"') + 13, 64), '"') - 1) = 'CreateAccessKey';
