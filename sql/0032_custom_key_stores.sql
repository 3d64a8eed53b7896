-- Custom key stores (CreateCustomKeyStore…): an AWS_CLOUDHSM key store is a PKCS#11 partition
-- the operator registers under a cluster id; its user PIN (AWS's kmsuser password) is kept as
-- an AES-GCM ciphertext under a key wrapped by the service token's root key, never in
-- plaintext. Every column that decides anything is under the row's MAC. Keys record the
-- custom key store they live in. Additive.
CREATE TABLE custom_key_stores (
    custom_key_store_id   TEXT PRIMARY KEY,
    account_id            TEXT NOT NULL,
    region                TEXT NOT NULL,
    name                  TEXT NOT NULL,
    store_type            TEXT NOT NULL,
    cluster_id            TEXT,
    trust_anchor          TEXT,
    password_key          BYTEA,
    password_root_version INTEGER,
    password_ciphertext   BYTEA,
    connection_state      TEXT NOT NULL,
    -- EXTERNAL_KEY_STORE: the XKS proxy (its secret is the password_* columns').
    xks_uri_endpoint      TEXT,
    xks_uri_path          TEXT,
    xks_access_key_id     TEXT,
    xks_connectivity      TEXT,
    connection_error      TEXT,
    created_at            TIMESTAMPTZ NOT NULL,
    mac                   BYTEA NOT NULL
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

-- Every node follows a store's connection state: a change is announced.
CREATE FUNCTION kms_notify_custom_key_store_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('kms_custom_key_store_changed',
                      COALESCE(NEW.custom_key_store_id, OLD.custom_key_store_id));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER custom_key_stores_changed AFTER INSERT OR UPDATE OR DELETE ON custom_key_stores
    FOR EACH ROW EXECUTE FUNCTION kms_notify_custom_key_store_change();
