-- GetKeyLastUsage: a key's latest cryptographic calls, found in the trail by the key's ARN
-- (the first ARN of the event; ReEncrypt's source key is its second), newest first. Whether a
-- call succeeded is read from its body by the service (no JSON in an index predicate: a body
-- a database writer made invalid must stay writable, for `kms audit verify` to name it).
-- Additive.
CREATE INDEX audit_events_key_use ON audit_events ((key_arns[1]), seq)
    WHERE event_name IN ('Decrypt', 'DeriveSharedSecret', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext', 'GenerateDataKeyWithoutPlaintext', 'GenerateMac', 'ReEncrypt', 'Sign', 'Verify', 'VerifyMac');
CREATE INDEX audit_events_reencrypt_source ON audit_events ((key_arns[2]), seq)
    WHERE event_name = 'ReEncrypt';
