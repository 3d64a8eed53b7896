-- Distrusted storage: a key's state decides whether it may be used at all. A MAC computed in
-- the token over the key's identity, state and deletion date makes a key re-enabled (or its
-- deletion cancelled) in the database unusable rather than usable. Keys stored before this
-- migration are sealed by `kms init` (an operator action).
ALTER TABLE keys ADD COLUMN state_mac BYTEA;
