-- The schema of sql/0001…0015 (Postgres) in its final state, for the embedded development store.
-- UUIDs are 16-byte BLOBs and timestamps RFC 3339 UTC TEXT ('…+00:00'), as sqlx encodes
-- `uuid::Uuid` and `chrono::DateTime<Utc>`; text comparison of such timestamps orders them in
-- time. Booleans are INTEGER 0/1, arrays and JSONB are JSON TEXT. Constraints keep the names
-- Postgres gives them, so a refused write reports the same name. No NOTIFY triggers: a
-- development store has one process.

CREATE TABLE root_keys (
    version     INTEGER PRIMARY KEY CONSTRAINT root_keys_version_check CHECK (version > 0),
    label       TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
) STRICT;

CREATE TABLE accounts (
    account_id  TEXT PRIMARY KEY CONSTRAINT accounts_account_id_check
                    CHECK (length(account_id) = 12 AND account_id NOT GLOB '*[^0-9]*'),
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
) STRICT;

CREATE TABLE principals (
    arn           TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (account_id),
    kind          TEXT NOT NULL CONSTRAINT principals_kind_check CHECK (kind IN ('user', 'role')),
    name          TEXT NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    trust_policy  TEXT,
    via_service   TEXT CONSTRAINT principals_via_service_check
                      CHECK (length(via_service) BETWEEN 1 AND 63
                             AND via_service GLOB '[a-z0-9]*'
                             AND via_service NOT GLOB '*[^a-z0-9-]*'),
    authz_mac     BLOB
) STRICT;

CREATE TABLE access_keys (
    access_key_id  TEXT PRIMARY KEY,
    principal_arn  TEXT NOT NULL REFERENCES principals (arn),
    status         TEXT NOT NULL DEFAULT 'Active'
                       CONSTRAINT access_keys_status_check CHECK (status IN ('Active', 'Inactive')),
    secret_blob    BLOB NOT NULL,
    root_version   INTEGER NOT NULL REFERENCES root_keys (version),
    mac            BLOB NOT NULL,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
) STRICT;
CREATE INDEX access_keys_by_principal ON access_keys (principal_arn);

CREATE TABLE keys (
    key_id                BLOB PRIMARY KEY,
    account_id            TEXT NOT NULL REFERENCES accounts (account_id),
    region                TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    key_spec              TEXT NOT NULL,
    key_usage             TEXT NOT NULL,
    origin                TEXT NOT NULL,
    key_manager           TEXT NOT NULL,
    key_state             TEXT NOT NULL,
    policy                TEXT NOT NULL,
    multi_region          INTEGER NOT NULL DEFAULT 0,
    current_version       INTEGER NOT NULL,
    created_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    deletion_date         TEXT,
    rotation_enabled      INTEGER NOT NULL DEFAULT 0,
    rotation_period_days  INTEGER,
    next_rotation_date    TEXT,
    on_demand_rotations   INTEGER NOT NULL DEFAULT 0,
    mrk_id                BLOB,
    mrk_primary           INTEGER NOT NULL DEFAULT 0,
    pending_window_days   INTEGER,
    policy_mac            BLOB,
    state_mac             BLOB,
    CONSTRAINT keys_mrk_primary_has_id CHECK (NOT mrk_primary OR mrk_id IS NOT NULL)
) STRICT;
CREATE INDEX keys_by_owner ON keys (account_id, region, key_id);
CREATE INDEX keys_rotation_due ON keys (next_rotation_date) WHERE rotation_enabled;
CREATE INDEX keys_deletion_due ON keys (deletion_date) WHERE key_state = 'PendingDeletion';
CREATE UNIQUE INDEX keys_mrk_region ON keys (mrk_id, region) WHERE mrk_id IS NOT NULL;
CREATE UNIQUE INDEX keys_mrk_one_primary ON keys (mrk_id) WHERE mrk_primary;

CREATE TABLE key_tags (
    key_id     BLOB NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    tag_key    TEXT NOT NULL,
    tag_value  TEXT NOT NULL,
    PRIMARY KEY (key_id, tag_key)
) STRICT;

CREATE TABLE key_materials (
    key_id                BLOB NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    version               INTEGER NOT NULL CONSTRAINT key_materials_version_check CHECK (version > 0),
    wrapped               BLOB NOT NULL,
    root_version          INTEGER NOT NULL REFERENCES root_keys (version),
    mac                   BLOB NOT NULL,
    -- Leased before AES-GCM encryptions, so the 2^32 bound holds across restarts.
    invocations_reserved  INTEGER NOT NULL DEFAULT 0
                              CONSTRAINT key_materials_invocations_reserved_check
                              CHECK (invocations_reserved >= 0),
    created_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    rotation_type         TEXT CONSTRAINT key_materials_rotation_type_check
                              CHECK (rotation_type IN ('AUTOMATIC', 'ON_DEMAND')),
    public_key            BLOB,
    PRIMARY KEY (key_id, version)
) STRICT;

CREATE TABLE identity_policies (
    principal_arn  TEXT NOT NULL REFERENCES principals (arn) ON DELETE CASCADE,
    policy_name    TEXT NOT NULL CONSTRAINT identity_policies_policy_name_check
                       CHECK (length(policy_name) BETWEEN 1 AND 128
                              AND policy_name NOT GLOB '*[^A-Za-z0-9+=,.@_-]*'),
    document       TEXT NOT NULL,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (principal_arn, policy_name)
) STRICT;

CREATE TABLE grants (
    grant_id            TEXT PRIMARY KEY,
    key_id              BLOB NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    name                TEXT,
    grantee_principal   TEXT NOT NULL,
    retiring_principal  TEXT,
    -- JSON array of operation names.
    operations          TEXT NOT NULL,
    -- JSON: {"EncryptionContextEquals": {...}} or {"EncryptionContextSubset": {...}}, or NULL.
    constraints         TEXT,
    issuing_account     TEXT NOT NULL,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    mac                 BLOB
) STRICT;
CREATE INDEX grants_by_key ON grants (key_id, created_at);
CREATE INDEX grants_by_retiring ON grants (retiring_principal);

CREATE TABLE sessions (
    access_key_id  TEXT PRIMARY KEY,
    role_arn       TEXT NOT NULL REFERENCES principals (arn) ON DELETE CASCADE,
    session_name   TEXT NOT NULL,
    secret_blob    BLOB NOT NULL,
    root_version   INTEGER NOT NULL REFERENCES root_keys (version),
    token_sha256   BLOB NOT NULL,
    expires_at     TEXT NOT NULL,
    mac            BLOB NOT NULL,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
) STRICT;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE principal_tags (
    principal_arn  TEXT NOT NULL REFERENCES principals (arn) ON DELETE CASCADE,
    tag_key        TEXT NOT NULL,
    tag_value      TEXT NOT NULL,
    PRIMARY KEY (principal_arn, tag_key)
) STRICT;

CREATE TABLE admin_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    operator  TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT '{}'
) STRICT;

CREATE TABLE aliases (
    account_id  TEXT NOT NULL REFERENCES accounts (account_id),
    region      TEXT NOT NULL,
    alias_name  TEXT NOT NULL,
    key_id      BLOB NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (account_id, region, alias_name)
) STRICT;
CREATE INDEX aliases_by_key ON aliases (key_id);

-- The audit trail: one hash chain of events; appends move the head row.
CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY CONSTRAINT audit_events_seq_check CHECK (seq > 0),
    event_id    BLOB NOT NULL,
    event_time  TEXT NOT NULL,
    event_name  TEXT NOT NULL,
    account_id  TEXT,
    -- JSON array of key ARNs.
    key_arns    TEXT NOT NULL DEFAULT '[]',
    body        TEXT NOT NULL,
    prev_hash   BLOB NOT NULL,
    hash        BLOB NOT NULL
) STRICT;
CREATE INDEX audit_events_by_time ON audit_events (event_time);

CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CONSTRAINT audit_head_id_check CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL
) STRICT;
INSERT INTO audit_head (id, seq, hash)
    VALUES (1, 0, X'0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_checkpoints (
    seq        INTEGER PRIMARY KEY,
    hash       BLOB NOT NULL,
    signed_at  TEXT NOT NULL,
    signature  BLOB NOT NULL
) STRICT;

CREATE TABLE import_tokens (
    token_id            BLOB PRIMARY KEY,
    key_id              BLOB NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    wrapping_algorithm  TEXT NOT NULL,
    wrapping_key_spec   TEXT NOT NULL,
    wrapped_private     BLOB NOT NULL,
    root_version        INTEGER NOT NULL,
    valid_to            TEXT NOT NULL,
    mac                 BLOB NOT NULL
) STRICT;
CREATE INDEX import_tokens_valid_to ON import_tokens (valid_to);

CREATE TABLE key_imports (
    key_id            BLOB PRIMARY KEY REFERENCES keys (key_id) ON DELETE CASCADE,
    material_check    BLOB NOT NULL,
    invocations       INTEGER NOT NULL DEFAULT 0,
    expiration_model  TEXT,
    valid_to          TEXT,
    mac               BLOB NOT NULL
) STRICT;
CREATE INDEX key_imports_valid_to ON key_imports (valid_to) WHERE valid_to IS NOT NULL;
