-- Rolling upgrades: old and new binaries run against one database while nodes are replaced.
-- A migration is additive (expand: new tables, columns with defaults, indexes) unless it says
-- otherwise; a binary whose schema is at or above `oldest_release_schema` runs against a newer
-- schema, reading and writing what it knows. A migration that removes or changes something an
-- older binary uses (contract, in a later release than the one that stopped using it) raises
-- the floor to its own version in the same file:
--     UPDATE schema_floor SET oldest_release_schema = <its version> WHERE id = 1;
-- Binaries below the floor then refuse the database in one sentence. Releases before this
-- migration refuse any newer schema.
CREATE TABLE schema_floor (
    id                    INTEGER PRIMARY KEY CHECK (id = 1),
    oldest_release_schema INTEGER NOT NULL
);
INSERT INTO schema_floor (id, oldest_release_schema) VALUES (1, 14);
