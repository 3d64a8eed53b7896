-- Every lease of AES-GCM invocations is in the audit trail (an InvocationsLeased event naming
-- the material and the lease's end) before it is used, and a new lease must start at or after
-- the ends the trail holds for its material: a count set back in the database (to exceed the
-- 2^32 bound of one material) is refused. This index finds a material's latest leases.
CREATE INDEX audit_events_leases ON audit_events (((body::jsonb) #>> '{additionalEventData,materialId}'), seq)
    WHERE event_name = 'InvocationsLeased';
