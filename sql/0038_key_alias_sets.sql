-- A key's aliases are what kms:ResourceAliases holds in a policy's conditions. Each alias row
-- is sealed, so a row cannot be forged, moved or put back; but a row deleted in the database
-- left no trace, and a condition on the key's aliases (a Deny for `alias/restricted-*`, an
-- Allow for `ForAllValues` of `alias/dev-*`) then decided as if the alias had never been.
-- Each key now keeps the set of its aliases as the service last wrote it (`alias_set`: JSON,
-- each name with the generation of its row then) under a seal (`aliases_mac`, with its own
-- generation in the trail). A name of the set missing from the rows is refused unless the
-- trail holds a later generation of that alias (deleted or moved by a call). NULL for a key
-- from before this migration: it is sealed at its next alias change. Additive.
ALTER TABLE keys ADD COLUMN alias_set TEXT;
ALTER TABLE keys ADD COLUMN aliases_mac BYTEA;
