-- Tags on principals (aws:PrincipalTag/<key> in policy conditions).
CREATE TABLE principal_tags (
    principal_arn  TEXT NOT NULL REFERENCES principals (arn) ON DELETE CASCADE,
    tag_key        TEXT NOT NULL,
    tag_value      TEXT NOT NULL,
    PRIMARY KEY (principal_arn, tag_key)
);
CREATE TRIGGER principal_tags_changed AFTER INSERT OR UPDATE OR DELETE ON principal_tags
    FOR EACH ROW EXECUTE FUNCTION kms_notify_identity_change();

-- Every identity change made with `kms admin`, for the audit trail.
CREATE TABLE admin_events (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    operator    TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      JSONB NOT NULL DEFAULT '{}'::jsonb
);

-- Key tags feed aws:ResourceTag/<key>: changes invalidate cached key data on every node.
CREATE FUNCTION kms_notify_key_tag_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('kms_key_changed', COALESCE(NEW.key_id, OLD.key_id)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER key_tags_changed AFTER INSERT OR UPDATE OR DELETE ON key_tags
    FOR EACH ROW EXECUTE FUNCTION kms_notify_key_tag_change();
