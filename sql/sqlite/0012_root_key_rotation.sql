-- Root key rotation re-wraps every stored blob under the new root key, in batches of the blobs
-- still under an older one (`root_version < current`): an index keeps each batch from scanning
-- every material version.
CREATE INDEX key_materials_by_root ON key_materials (root_version);
