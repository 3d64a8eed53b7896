-- Initial schema. The database is untrusted storage: it holds wrapped key blobs (wrapped in
-- the HSM under the root key) and metadata. Every row that carries key material also carries a
-- MAC computed in the HSM, so a row that was altered is refused.

CREATE TABLE root_keys (
    version     INTEGER PRIMARY KEY CHECK (version > 0),
    label       TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    account_id  TEXT PRIMARY KEY CHECK (account_id ~ '^[0-9]{12}$'),
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE principals (
    arn         TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (account_id),
    kind        TEXT NOT NULL CHECK (kind IN ('user', 'role')),
    name        TEXT NOT NULL,
    is_admin    BOOLEAN NOT NULL DEFAULT false,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE access_keys (
    access_key_id  TEXT PRIMARY KEY,
    principal_arn  TEXT NOT NULL REFERENCES principals (arn),
    status         TEXT NOT NULL DEFAULT 'Active' CHECK (status IN ('Active', 'Inactive')),
    -- "AWS4" || secret access key, as a generic secret wrapped by the HSM (RFC 5649).
    secret_blob    BYTEA NOT NULL,
    root_version   INTEGER NOT NULL REFERENCES root_keys (version),
    mac            BYTEA NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX access_keys_by_principal ON access_keys (principal_arn);

CREATE TABLE keys (
    key_id           UUID PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts (account_id),
    region           TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    key_spec         TEXT NOT NULL,
    key_usage        TEXT NOT NULL,
    origin           TEXT NOT NULL,
    key_manager      TEXT NOT NULL,
    key_state        TEXT NOT NULL,
    policy           TEXT NOT NULL,
    multi_region     BOOLEAN NOT NULL DEFAULT false,
    current_version  INTEGER NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX keys_by_owner ON keys (account_id, region, key_id);

CREATE TABLE key_tags (
    key_id     UUID NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    tag_key    TEXT NOT NULL,
    tag_value  TEXT NOT NULL,
    PRIMARY KEY (key_id, tag_key)
);

CREATE TABLE key_materials (
    key_id                UUID NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    version               INTEGER NOT NULL CHECK (version > 0),
    wrapped               BYTEA NOT NULL,
    root_version          INTEGER NOT NULL REFERENCES root_keys (version),
    mac                   BYTEA NOT NULL,
    -- AES-GCM with random 96-bit IVs is safe for at most 2^32 encryptions per key
    -- (NIST SP 800-38D). Servers lease blocks of invocations from this counter before they
    -- encrypt, so the bound holds across restarts and across nodes.
    invocations_reserved  BIGINT NOT NULL DEFAULT 0 CHECK (invocations_reserved >= 0),
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, version)
);

-- Other nodes drop cached key metadata when a key row changes.
CREATE FUNCTION kms_notify_key_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('kms_key_changed', COALESCE(NEW.key_id, OLD.key_id)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER keys_changed AFTER UPDATE OR DELETE ON keys
    FOR EACH ROW EXECUTE FUNCTION kms_notify_key_change();
