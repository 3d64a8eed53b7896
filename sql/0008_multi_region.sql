-- Multi-Region keys. Related keys share a public id (`mrk-…`, stored in mrk_id) and their key
-- material; each region's key is its own row, whose key_id is derived from (mrk_id, region), so
-- every per-key table (tags, aliases, grants, material) keeps working per region.
ALTER TABLE keys ADD COLUMN mrk_id UUID;
ALTER TABLE keys ADD COLUMN mrk_primary BOOLEAN NOT NULL DEFAULT false;
-- The waiting period a primary key pending replica deletion will get once its last replica goes.
ALTER TABLE keys ADD COLUMN pending_window_days INTEGER;
CREATE UNIQUE INDEX keys_mrk_region ON keys (mrk_id, region) WHERE mrk_id IS NOT NULL;
CREATE UNIQUE INDEX keys_mrk_one_primary ON keys (mrk_id) WHERE mrk_primary;
ALTER TABLE keys ADD CONSTRAINT keys_mrk_primary_has_id CHECK (NOT mrk_primary OR mrk_id IS NOT NULL);
