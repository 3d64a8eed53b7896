-- Three more lookups the service decides by, moved from the event_name column (not hashed: a
-- database writer renames an event there without breaking the chain) to what each event's
-- hashed body says, as 0041 and 0042 did. Additive: the indexes on the column (0019, 0022)
-- stay for the previous release.
--
-- A material's latest leases of AES-GCM invocations (InvocationsLeased): leases renamed in the
-- column and the material's count set back passed the 2^32 bound of one material.
CREATE INDEX audit_events_leases_by_body ON audit_events ((CASE WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'InvocationsLeased' THEN ((body::json) #>> '{additionalEventData,materialId}') END), seq)
    WHERE split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'InvocationsLeased';

-- The MAC kinds every row carried (SealCoverage): the event renamed in the column, and a row
-- whose MAC a writer removed was offered to `kms admin seal` as never sealed.
CREATE INDEX audit_events_seal_coverage_by_body ON audit_events (seq)
    WHERE split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'SealCoverage';

-- A principal's deletion (DeletePrincipal) and a role's trust policy replaced (CreateRole),
-- which end a role's sessions, and an access key's creation (CreateAccessKey, by the key id it
-- names): an access key of a deleted principal, hidden from the deletion and put back once a
-- principal of the same name exists again, signed as that new principal; a role session's row
-- put back after its sessions ended signed again once the generations index lost their end.
CREATE INDEX audit_events_principal_changes_by_body ON audit_events ((CASE WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) IN ('CreateRole', 'DeletePrincipal') THEN ((body::json) #>> '{requestParameters,target}') END), seq)
    WHERE split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) IN ('CreateRole', 'DeletePrincipal');
CREATE INDEX audit_events_access_key_creations_by_body ON audit_events ((CASE WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'CreateAccessKey' THEN ((body::json) #>> '{requestParameters,details,access_key_id}') END), seq)
    WHERE split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'CreateAccessKey';
