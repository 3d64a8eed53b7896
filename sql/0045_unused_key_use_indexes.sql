-- GetKeyLastUsage reads the trail through the indexes of successful calls (0035:
-- audit_events_key_success, audit_events_reencrypt_source_success) since the lookup names their
-- predicate; the indexes of every cryptographic call that 0029 made for it are read by nothing
-- since, and each cryptographic call's append still wrote an entry in one of them (the larger:
-- each holds the key's full ARN). No release uses them (the previous release, 791a319, predates
-- both migrations), so the floor stays: an older binary would only read more slowly.
DROP INDEX IF EXISTS audit_events_key_use;
DROP INDEX IF EXISTS audit_events_reencrypt_source;
