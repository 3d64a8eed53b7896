-- An access key deactivated or deleted by an operator leaves its event in the audit trail
-- (DeactivateAccessKey, DeleteAccessKey; ActivateAccessKey when it is turned back on). A key's
-- genuine Active row put back (saved by a database writer, or from an older backup) is refused
-- while the trail's latest such event for it says otherwise. This index finds that event.
CREATE INDEX audit_events_access_keys ON audit_events (((body::jsonb) #>> '{requestParameters,target}'), seq)
    WHERE event_name IN ('DeactivateAccessKey', 'ActivateAccessKey', 'DeleteAccessKey');
