-- The indexes of every cryptographic call made for GetKeyLastUsage (0016), read by nothing since
-- the lookup reads those of successful calls (0021); see the Postgres migration 0045.
DROP INDEX IF EXISTS audit_events_key_use;
DROP INDEX IF EXISTS audit_events_reencrypt_source;
