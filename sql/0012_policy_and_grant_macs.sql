-- Distrusted storage: key policies and grants decide who may use a key, so each carries a MAC
-- computed in the token. A policy or grant altered or inserted in the database is refused.
-- Keys created before this migration get their policy MAC from `kms init` (an operator action).
ALTER TABLE keys ADD COLUMN policy_mac BYTEA;
ALTER TABLE grants ADD COLUMN mac BYTEA;
