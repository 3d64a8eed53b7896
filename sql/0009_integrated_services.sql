-- Integrated services. AWS services call KMS on a user's behalf and their requests carry
-- kms:ViaService = <service>.<region>.amazonaws.com, which AWS managed key policies (and any
-- key policy) can require. On premises, the operator registers the principal an integrated
-- service signs as; that principal's requests then carry kms:ViaService for its service.
ALTER TABLE principals ADD COLUMN via_service TEXT
    CHECK (via_service ~ '^[a-z0-9][a-z0-9-]{0,62}$');

CREATE FUNCTION kms_notify_principal_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('kms_identity_changed', COALESCE(NEW.arn, OLD.arn));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER principals_changed AFTER UPDATE ON principals
    FOR EACH ROW EXECUTE FUNCTION kms_notify_principal_change();
