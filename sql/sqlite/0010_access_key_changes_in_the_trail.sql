-- The same as the Postgres migration 0023: an access key's latest status event.
CREATE INDEX audit_events_access_keys ON audit_events (json_extract(body, '$.requestParameters.target'), seq)
    WHERE event_name IN ('DeactivateAccessKey', 'ActivateAccessKey', 'DeleteAccessKey');
