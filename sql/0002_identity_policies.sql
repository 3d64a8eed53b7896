-- Identity-based policies attached to principals (users and roles), by name.
CREATE TABLE identity_policies (
    principal_arn  TEXT NOT NULL REFERENCES principals (arn) ON DELETE CASCADE,
    policy_name    TEXT NOT NULL CHECK (policy_name ~ '^[A-Za-z0-9+=,.@_-]{1,128}$'),
    document       TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (principal_arn, policy_name)
);

-- Every node drops its cached identity policies when any change.
CREATE FUNCTION kms_notify_identity_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('kms_identity_changed', COALESCE(NEW.principal_arn, OLD.principal_arn));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER identity_policies_changed AFTER INSERT OR UPDATE OR DELETE ON identity_policies
    FOR EACH ROW EXECUTE FUNCTION kms_notify_identity_change();
CREATE TRIGGER access_keys_changed AFTER UPDATE OR DELETE ON access_keys
    FOR EACH ROW EXECUTE FUNCTION kms_notify_identity_change();
