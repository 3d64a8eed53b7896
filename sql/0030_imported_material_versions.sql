-- Rotation of imported key material: a symmetric key with origin EXTERNAL holds several
-- materials (AWS: ImportType NEW_KEY_MATERIAL, then RotateKeyOnDemand), each imported, expiring
-- and deleted on its own, with its own record. Additive: `key_imports` stays the record of a
-- key's first material (version 1) as earlier releases read and write it, now with AWS's
-- KeyMaterialDescription; the materials imported after it (versions 2 and up) have their
-- records in `key_material_imports`. There `pending` marks material imported for a rotation
-- that has not happened yet (AWS's PENDING_ROTATION: not yet part of the key, never used; at
-- most one per key), and `rotated_at` is when a rotation made the material current (its
-- RotationDate, kept while the material is deleted).
ALTER TABLE key_imports ADD COLUMN description TEXT;
CREATE TABLE key_material_imports (
    key_id           UUID NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    version          INT NOT NULL CHECK (version > 1),
    material_check   BYTEA NOT NULL,
    invocations      BIGINT NOT NULL DEFAULT 0,
    expiration_model TEXT,
    valid_to         TIMESTAMPTZ,
    description      TEXT,
    pending          BOOLEAN NOT NULL,
    rotated_at       TIMESTAMPTZ,
    mac              BYTEA NOT NULL,
    PRIMARY KEY (key_id, version)
);
CREATE UNIQUE INDEX key_material_imports_one_pending ON key_material_imports (key_id) WHERE pending;
CREATE INDEX key_material_imports_valid_to ON key_material_imports (valid_to) WHERE valid_to IS NOT NULL;
