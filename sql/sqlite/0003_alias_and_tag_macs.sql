-- As sql/0016_alias_and_tag_macs.sql: an alias row's MAC, and a key's MAC over its tags.
ALTER TABLE aliases ADD COLUMN mac BLOB;
ALTER TABLE keys ADD COLUMN tags_mac BLOB;
ALTER TABLE keys ADD COLUMN attrs_mac BLOB;

-- A tag row moved from one key to another changes both keys.
DROP TRIGGER key_tags_update_change;
CREATE TRIGGER key_tags_update_change AFTER UPDATE ON key_tags
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(OLD.key_id)));
    INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(NEW.key_id)));
END;

-- A principal deleted, and a session deleted, reach every process's caches.
CREATE TRIGGER principals_delete_change AFTER DELETE ON principals
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_identity_changed', OLD.arn);
END;
CREATE TRIGGER sessions_delete_change AFTER DELETE ON sessions
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_identity_changed', OLD.role_arn);
END;

-- An access key created reaches every process (the negative cache forgets the id).
CREATE TRIGGER access_keys_insert_change AFTER INSERT ON access_keys
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_identity_changed', NEW.principal_arn);
END;
