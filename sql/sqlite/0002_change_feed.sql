-- What Postgres announces with NOTIFY, the embedded store records here: every process on the
-- database polls `changes` and drops what its caches hold for the rows named (the same
-- channels and payloads as the Postgres triggers; key ids as 32 hex digits).
CREATE TABLE changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    channel  TEXT NOT NULL,
    payload  TEXT NOT NULL
) STRICT;

CREATE TRIGGER keys_update_change AFTER UPDATE ON keys
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(NEW.key_id)));
END;

CREATE TRIGGER keys_delete_change AFTER DELETE ON keys
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(OLD.key_id)));
END;

CREATE TRIGGER identity_policies_insert_change AFTER INSERT ON identity_policies
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_identity_changed', NEW.principal_arn);
END;

CREATE TRIGGER identity_policies_update_change AFTER UPDATE ON identity_policies
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_identity_changed', NEW.principal_arn);
END;

CREATE TRIGGER identity_policies_delete_change AFTER DELETE ON identity_policies
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_identity_changed', OLD.principal_arn);
END;

CREATE TRIGGER access_keys_update_change AFTER UPDATE ON access_keys
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_identity_changed', NEW.principal_arn);
END;

CREATE TRIGGER access_keys_delete_change AFTER DELETE ON access_keys
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_identity_changed', OLD.principal_arn);
END;

CREATE TRIGGER grants_insert_change AFTER INSERT ON grants
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_grant_changed', lower(hex(NEW.key_id)));
END;

CREATE TRIGGER grants_update_change AFTER UPDATE ON grants
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_grant_changed', lower(hex(NEW.key_id)));
END;

CREATE TRIGGER grants_delete_change AFTER DELETE ON grants
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_grant_changed', lower(hex(OLD.key_id)));
END;

CREATE TRIGGER principal_tags_insert_change AFTER INSERT ON principal_tags
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_identity_changed', NEW.principal_arn);
END;

CREATE TRIGGER principal_tags_update_change AFTER UPDATE ON principal_tags
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_identity_changed', NEW.principal_arn);
END;

CREATE TRIGGER principal_tags_delete_change AFTER DELETE ON principal_tags
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_identity_changed', OLD.principal_arn);
END;

CREATE TRIGGER key_tags_insert_change AFTER INSERT ON key_tags
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(NEW.key_id)));
END;

CREATE TRIGGER key_tags_update_change AFTER UPDATE ON key_tags
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(NEW.key_id)));
END;

CREATE TRIGGER key_tags_delete_change AFTER DELETE ON key_tags
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(OLD.key_id)));
END;

CREATE TRIGGER aliases_insert_change AFTER INSERT ON aliases
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_alias_changed', NEW.alias_name);
END;

CREATE TRIGGER aliases_update_change AFTER UPDATE ON aliases
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_alias_changed', NEW.alias_name);
END;

CREATE TRIGGER aliases_delete_change AFTER DELETE ON aliases
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_alias_changed', OLD.alias_name);
END;

CREATE TRIGGER principals_update_change AFTER UPDATE ON principals
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_identity_changed', NEW.arn);
END;
