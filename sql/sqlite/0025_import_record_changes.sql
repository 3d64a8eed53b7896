-- As Postgres's 0039: a change to a key's import record announces a change of its key, so
-- every process drops the material it loaded under the record before (an earlier `ValidTo`).
CREATE TRIGGER key_imports_insert_change AFTER INSERT ON key_imports
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(NEW.key_id)));
END;
CREATE TRIGGER key_imports_update_change AFTER UPDATE ON key_imports
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(NEW.key_id)));
END;
CREATE TRIGGER key_imports_delete_change AFTER DELETE ON key_imports
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(OLD.key_id)));
END;
CREATE TRIGGER key_material_imports_insert_change AFTER INSERT ON key_material_imports
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(NEW.key_id)));
END;
CREATE TRIGGER key_material_imports_update_change AFTER UPDATE ON key_material_imports
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(NEW.key_id)));
END;
CREATE TRIGGER key_material_imports_delete_change AFTER DELETE ON key_material_imports
BEGIN
    INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(OLD.key_id)));
END;
