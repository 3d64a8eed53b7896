-- Each event that can decide something (every event but a read-only call's) is sealed: signed
-- in the token with the audit key over its sequence number and its body, once it is chained.
-- The chain's hashes are not keyed: a database writer can append an event of its own (a
-- CreateAccessKey after a key's deletion, an ActivateAccessKey after its deactivation, a
-- SealCoverage) that hashes as chained, and the decisions read from the trail took it as the
-- service's. They now take such an event only with its seal. Additive.
ALTER TABLE audit_events ADD COLUMN seal BYTEA;
