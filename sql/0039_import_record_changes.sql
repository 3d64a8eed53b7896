-- A key's import records decide whether its imported material may be used, and until when
-- (`ValidTo`). Material imported again with an earlier `ValidTo` rewrites only its record, so
-- other nodes, which drop a key's cached material when the key row changes, kept using the
-- material they had loaded past the new `ValidTo`. A change to an import record now announces
-- a change of its key. Additive: triggers only.
CREATE TRIGGER key_imports_changed AFTER INSERT OR UPDATE OR DELETE ON key_imports
    FOR EACH ROW EXECUTE FUNCTION kms_notify_key_change();
CREATE TRIGGER key_material_imports_changed AFTER INSERT OR UPDATE OR DELETE ON key_material_imports
    FOR EACH ROW EXECUTE FUNCTION kms_notify_key_change();
