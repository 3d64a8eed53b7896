-- The trail viewer's lookups read one account's events newest first (account_id = $1 AND
-- seq < $2 ORDER BY seq DESC). Without this index they walked every account's events back
-- from the head, so one tenant's search that matched nothing read the whole trail of every
-- tenant. Additive.
CREATE INDEX audit_events_by_account ON audit_events (account_id, seq);

-- GetKeyLastUsage reads a key's latest successful call. Through audit_events_key_use it walked
-- every failed call first, and another account that knows a key's ARN can add failed calls
-- (denied ones) to it at its own request rate: millions of rows to walk for each answer. These
-- indexes hold only calls whose body records no top-level error code: bodies are written with
-- their members sorted, so a top-level "errorCode" comes before the first "eventCategory" (a
-- caller's encryption context key named errorCode comes after it). The lookup names the same
-- predicate, and the service still reads each body it is given. Additive.
CREATE INDEX audit_events_key_success ON audit_events ((key_arns[1]), seq)
    WHERE event_name IN ('Decrypt', 'DeriveSharedSecret', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext', 'GenerateDataKeyWithoutPlaintext', 'GenerateMac', 'ReEncrypt', 'Sign', 'Verify', 'VerifyMac')
    AND NOT (strpos(body, '"errorCode":') BETWEEN 1 AND strpos(body, '"eventCategory":'));
CREATE INDEX audit_events_reencrypt_source_success ON audit_events ((key_arns[2]), seq)
    WHERE event_name = 'ReEncrypt' AND NOT (strpos(body, '"errorCode":') BETWEEN 1 AND strpos(body, '"eventCategory":'));
