-- Distrusted storage: what a principal may do is decided by its identity policies, its tags,
-- its integrated-service registration and (for a role) its trust policy. One MAC, computed in
-- the token over all of them together, lives on the principal: a policy or tag altered,
-- inserted or deleted in the database no longer matches it, and the principal is refused.
-- Principals stored before this migration are sealed by `kms init` (an operator action).
ALTER TABLE principals ADD COLUMN authz_mac BYTEA;
