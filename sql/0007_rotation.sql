-- Rotation: schedule per key, and how each material version came to be.
ALTER TABLE keys ADD COLUMN rotation_enabled BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE keys ADD COLUMN rotation_period_days INTEGER;
ALTER TABLE keys ADD COLUMN next_rotation_date TIMESTAMPTZ;
ALTER TABLE keys ADD COLUMN on_demand_rotations INTEGER NOT NULL DEFAULT 0;
ALTER TABLE key_materials ADD COLUMN rotation_type TEXT CHECK (rotation_type IN ('AUTOMATIC', 'ON_DEMAND'));
CREATE INDEX keys_rotation_due ON keys (next_rotation_date) WHERE rotation_enabled;
CREATE INDEX keys_deletion_due ON keys (deletion_date) WHERE key_state = 'PendingDeletion';
