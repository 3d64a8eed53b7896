-- On-demand rotation runs in the background, as on AWS: RotateKeyOnDemand records when it
-- started (under the key's rotation seal, shown as GetKeyRotationStatus's
-- OnDemandRotationStartDate) and the background jobs complete it, exactly once across nodes.
-- Additive.
ALTER TABLE keys ADD COLUMN on_demand_rotation_start TIMESTAMPTZ;
CREATE INDEX keys_on_demand_rotations ON keys (on_demand_rotation_start)
    WHERE on_demand_rotation_start IS NOT NULL;
