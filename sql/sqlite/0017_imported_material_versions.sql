-- Rotation of imported key material: the records of a key's materials after its first (see
-- the Postgres migration 0030 for what the columns mean). Additive.
ALTER TABLE key_imports ADD COLUMN description TEXT;
CREATE TABLE key_material_imports (
    key_id            BLOB NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    version           INTEGER NOT NULL CHECK (version > 1),
    material_check    BLOB NOT NULL,
    invocations       INTEGER NOT NULL DEFAULT 0,
    expiration_model  TEXT,
    valid_to          TEXT,
    description       TEXT,
    pending           INTEGER NOT NULL,
    rotated_at        TEXT,
    mac               BLOB NOT NULL,
    PRIMARY KEY (key_id, version)
) STRICT;
CREATE UNIQUE INDEX key_material_imports_one_pending ON key_material_imports (key_id) WHERE pending;
CREATE INDEX key_material_imports_valid_to ON key_material_imports (valid_to) WHERE valid_to IS NOT NULL;
