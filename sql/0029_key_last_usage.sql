-- GetKeyLastUsage: a key's latest successful cryptographic call, found in the trail by the
-- key's ARN (the first ARN of the event; ReEncrypt's source key is its second). Additive.
CREATE INDEX audit_events_key_use ON audit_events ((key_arns[1]), seq)
    WHERE event_name IN ('Decrypt', 'DeriveSharedSecret', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext', 'GenerateDataKeyWithoutPlaintext', 'GenerateMac', 'ReEncrypt', 'Sign', 'Verify', 'VerifyMac')
      AND ((body::jsonb) ->> 'errorCode') IS NULL;
CREATE INDEX audit_events_reencrypt_source ON audit_events ((key_arns[2]), seq)
    WHERE event_name = 'ReEncrypt' AND ((body::jsonb) ->> 'errorCode') IS NULL;
