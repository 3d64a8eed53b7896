-- Custom key stores (see the Postgres migration 0032). Additive.
CREATE TABLE custom_key_stores (
    custom_key_store_id   TEXT PRIMARY KEY,
    account_id            TEXT NOT NULL,
    region                TEXT NOT NULL,
    name                  TEXT NOT NULL,
    store_type            TEXT NOT NULL,
    cluster_id            TEXT,
    trust_anchor          TEXT,
    password_key          BLOB,
    password_root_version INTEGER,
    password_ciphertext   BLOB,
    connection_state      TEXT NOT NULL,
    -- EXTERNAL_KEY_STORE: the XKS proxy (its secret is the password_* columns').
    xks_uri_endpoint      TEXT,
    xks_uri_path          TEXT,
    xks_access_key_id     TEXT,
    xks_connectivity      TEXT,
    connection_error      TEXT,
    created_at            TEXT NOT NULL,
    mac                   BLOB NOT NULL
);
CREATE UNIQUE INDEX custom_key_stores_name ON custom_key_stores (account_id, region, name);
CREATE UNIQUE INDEX custom_key_stores_cluster ON custom_key_stores (cluster_id);
ALTER TABLE keys ADD COLUMN custom_key_store_id TEXT;
ALTER TABLE keys ADD COLUMN xks_key_id TEXT;
-- AWS: an external key backs one KMS key of its external key store.
CREATE UNIQUE INDEX keys_xks_key ON keys (custom_key_store_id, xks_key_id)
    WHERE xks_key_id IS NOT NULL;
CREATE UNIQUE INDEX custom_key_stores_xks_proxy ON custom_key_stores (xks_uri_endpoint, xks_uri_path);
CREATE INDEX keys_custom_key_store ON keys (custom_key_store_id) WHERE custom_key_store_id IS NOT NULL;

-- Every node follows a store's connection state: a change is recorded in the feed.
CREATE TRIGGER custom_key_stores_insert_change AFTER INSERT ON custom_key_stores
BEGIN
    INSERT INTO changes (channel, payload)
        VALUES ('kms_custom_key_store_changed', NEW.custom_key_store_id);
END;

CREATE TRIGGER custom_key_stores_update_change AFTER UPDATE ON custom_key_stores
BEGIN
    INSERT INTO changes (channel, payload)
        VALUES ('kms_custom_key_store_changed', NEW.custom_key_store_id);
END;

CREATE TRIGGER custom_key_stores_delete_change AFTER DELETE ON custom_key_stores
BEGIN
    INSERT INTO changes (channel, payload)
        VALUES ('kms_custom_key_store_changed', OLD.custom_key_store_id);
END;
