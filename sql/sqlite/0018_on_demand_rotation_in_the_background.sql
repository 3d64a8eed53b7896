-- On-demand rotation runs in the background (see the Postgres migration 0031). Additive.
ALTER TABLE keys ADD COLUMN on_demand_rotation_start TEXT;
CREATE INDEX keys_on_demand_rotations ON keys (on_demand_rotation_start)
    WHERE on_demand_rotation_start IS NOT NULL;
