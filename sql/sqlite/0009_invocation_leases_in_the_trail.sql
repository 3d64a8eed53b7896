-- The same as the Postgres migration 0022: a material's latest InvocationsLeased events.
CREATE INDEX audit_events_leases ON audit_events (json_extract(body, '$.additionalEventData.materialId'), seq)
    WHERE event_name = 'InvocationsLeased';
