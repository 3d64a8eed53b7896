-- The same as the Postgres migration 0017: one MAC over a key's current material version,
-- rotation schedule, on-demand rotation count and multi-Region primary flag.
ALTER TABLE keys ADD COLUMN rotation_mac BLOB;
