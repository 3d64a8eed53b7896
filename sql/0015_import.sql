-- Bring your own key. An import token names a wrapping key pair generated in the token for one
-- key; only its private half, wrapped under the root key, is stored, for 24 hours.
CREATE TABLE import_tokens (
    token_id           UUID PRIMARY KEY,
    key_id             UUID NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    wrapping_algorithm TEXT NOT NULL,
    wrapping_key_spec  TEXT NOT NULL,
    wrapped_private    BYTEA NOT NULL,
    root_version       INT NOT NULL,
    valid_to           TIMESTAMPTZ NOT NULL,
    mac                BYTEA NOT NULL
);
CREATE INDEX import_tokens_valid_to ON import_tokens (valid_to);

-- What was imported into a key: a check value of the material (keyed, computed in the token),
-- so that only the same material can be imported again, and the current import's expiry.
-- `invocations` carries the material's AES-GCM invocation count across a deletion and
-- re-import, so the 2^32 bound counts every encryption the material ever did.
CREATE TABLE key_imports (
    key_id           UUID PRIMARY KEY REFERENCES keys (key_id) ON DELETE CASCADE,
    material_check   BYTEA NOT NULL,
    invocations      BIGINT NOT NULL DEFAULT 0,
    expiration_model TEXT,
    valid_to         TIMESTAMPTZ,
    mac              BYTEA NOT NULL
);
CREATE INDEX key_imports_valid_to ON key_imports (valid_to) WHERE valid_to IS NOT NULL;
