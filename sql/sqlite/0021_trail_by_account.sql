-- The trail viewer's lookups by account (see the Postgres migration 0035). Additive.
CREATE INDEX audit_events_by_account ON audit_events (account_id, seq);

-- GetKeyLastUsage's successful calls only (see the Postgres migration 0035). Additive.
CREATE INDEX audit_events_key_success ON audit_events (json_extract(key_arns, '$[0]'), seq)
    WHERE event_name IN ('Decrypt', 'DeriveSharedSecret', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext', 'GenerateDataKeyWithoutPlaintext', 'GenerateMac', 'ReEncrypt', 'Sign', 'Verify', 'VerifyMac')
    AND NOT (instr(body, '"errorCode":') BETWEEN 1 AND instr(body, '"eventCategory":'));
CREATE INDEX audit_events_reencrypt_source_success ON audit_events (json_extract(key_arns, '$[1]'), seq)
    WHERE event_name = 'ReEncrypt' AND NOT (instr(body, '"errorCode":') BETWEEN 1 AND instr(body, '"eventCategory":'));
