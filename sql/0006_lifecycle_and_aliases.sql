-- Key lifecycle: the end of a key's deletion window.
ALTER TABLE keys ADD COLUMN deletion_date TIMESTAMPTZ;

-- Aliases: friendly names for keys, per account and region.
CREATE TABLE aliases (
    account_id     TEXT NOT NULL REFERENCES accounts (account_id),
    region         TEXT NOT NULL,
    alias_name     TEXT NOT NULL,
    key_id         UUID NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, region, alias_name)
);
CREATE INDEX aliases_by_key ON aliases (key_id);

CREATE FUNCTION kms_notify_alias_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('kms_alias_changed', COALESCE(NEW.alias_name, OLD.alias_name));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER aliases_changed AFTER INSERT OR UPDATE OR DELETE ON aliases
    FOR EACH ROW EXECUTE FUNCTION kms_notify_alias_change();
