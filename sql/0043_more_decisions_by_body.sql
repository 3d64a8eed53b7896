-- The decisions the service still read from the event_name column (not hashed: a database
-- writer renames an event there without breaking the chain), moved to what each event's hashed
-- body says, as 0041 and 0042 did:
-- - a material's AES-GCM leases (InvocationsLeased, by material): leases renamed in the column
--   and the material's count set back passed the 2^32 bound of one material;
-- - the MAC kinds every row carried (SealCoverage): renamed, a row whose MAC a writer removed
--   was offered to `kms admin seal` as never sealed;
-- - a principal's deletion and a role's trust policy replaced (DeletePrincipal, CreateRole, by
--   target) against an access key's creation (CreateAccessKey, by the key id it names): a key
--   hidden from its principal's deletion signed as the principal re-created under the same
--   name, and a role session put back signed again once the generations index lost its end.
-- One index for all five names: a partial index's predicate is computed for every event
-- written, and one predicate reading the body costs a fifth of five. Additive: the indexes on
-- the column (0019, 0022) stay for the previous release.
CREATE INDEX audit_events_decisions_by_body ON audit_events ((split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1)), (CASE WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'InvocationsLeased' THEN ((body::json) #>> '{additionalEventData,materialId}') WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) = 'CreateAccessKey' THEN ((body::json) #>> '{requestParameters,details,access_key_id}') WHEN split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) IN ('CreateRole', 'DeletePrincipal') THEN ((body::json) #>> '{requestParameters,target}') END), seq)
    WHERE split_part(substr(body, strpos(body, '"eventName":"') + 13, 64), '"', 1) IN ('CreateAccessKey', 'CreateRole', 'DeletePrincipal', 'InvocationsLeased', 'SealCoverage');
