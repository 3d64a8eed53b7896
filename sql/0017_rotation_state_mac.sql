-- Distrusted storage, round three. Which material version a key encrypts with, its rotation
-- schedule and quota use, and which related multi-Region key is the primary all decide what
-- the service does with the key: one MAC (computed in the token) covers them together with the
-- key's identity, written with them by every path that changes them, so a current version set
-- back to retired material, a rotation postponed or its on-demand count reset, or a replica
-- made primary with SQL is refused. Rows from before this migration have none and are refused
-- until an operator seals them (`kms admin seal`).
ALTER TABLE keys ADD COLUMN rotation_mac BYTEA;
