-- Distrusted storage, round two. An alias decides which key a request uses, and a key's tags
-- decide aws:ResourceTag conditions: an alias row carries a MAC (computed in the token) over
-- its account, region, name and target, and a key row carries one over its whole set of tags,
-- so a tag inserted, altered, deleted or moved between keys is refused. Rows from before this
-- migration have none and are refused until an operator seals them (`kms admin seal`).
ALTER TABLE aliases ADD COLUMN mac BYTEA;
ALTER TABLE keys ADD COLUMN tags_mac BYTEA;
-- What a key is (spec, usage, origin, manager, multi-Region family), fixed at creation: one
-- MAC, so a key made to look AWS managed, imported, or another family's member is refused.
ALTER TABLE keys ADD COLUMN attrs_mac BYTEA;

-- A tag row moved from one key to another changes both keys: tell every node about both.
CREATE OR REPLACE FUNCTION kms_notify_key_tag_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('kms_key_changed', OLD.key_id::text);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.key_id <> OLD.key_id) THEN
        PERFORM pg_notify('kms_key_changed', NEW.key_id::text);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- A principal deleted, and a session deleted (its role's trust policy replaced), reach every
-- node's caches at once: cached signing keys of the sessions stop working.
CREATE TRIGGER principals_deleted AFTER DELETE ON principals
    FOR EACH ROW EXECUTE FUNCTION kms_notify_principal_change();
CREATE FUNCTION kms_notify_session_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('kms_identity_changed', OLD.role_arn);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER sessions_deleted AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION kms_notify_session_change();

-- An access key created reaches every node at once (an id recently found unknown is no longer
-- answered from the negative cache). A session's id is new by construction: no trigger.
CREATE TRIGGER access_keys_inserted AFTER INSERT ON access_keys
    FOR EACH ROW EXECUTE FUNCTION kms_notify_identity_change();
