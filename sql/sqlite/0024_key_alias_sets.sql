-- A key's sealed set of aliases (see the Postgres migration 0038). Additive.
ALTER TABLE keys ADD COLUMN alias_set TEXT;
ALTER TABLE keys ADD COLUMN aliases_mac BLOB;
