-- Grants: delegated, revocable permissions on one key.
CREATE TABLE grants (
    grant_id            TEXT PRIMARY KEY,
    key_id              UUID NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    name                TEXT,
    grantee_principal   TEXT NOT NULL,
    retiring_principal  TEXT,
    operations          TEXT[] NOT NULL,
    -- {"EncryptionContextEquals": {...}} or {"EncryptionContextSubset": {...}}, or NULL.
    constraints         JSONB,
    issuing_account     TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX grants_by_key ON grants (key_id, created_at);
CREATE INDEX grants_by_retiring ON grants (retiring_principal);

CREATE FUNCTION kms_notify_grant_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('kms_grant_changed', COALESCE(NEW.key_id, OLD.key_id)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER grants_changed AFTER INSERT OR UPDATE OR DELETE ON grants
    FOR EACH ROW EXECUTE FUNCTION kms_notify_grant_change();
