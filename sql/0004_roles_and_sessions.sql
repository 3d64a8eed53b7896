-- Roles carry a trust policy (who may assume them); assumed-role sessions carry temporary
-- credentials: a wrapped secret, the SHA-256 of the session token, and an expiry.
ALTER TABLE principals ADD COLUMN trust_policy TEXT;

CREATE TABLE sessions (
    access_key_id   TEXT PRIMARY KEY,
    role_arn        TEXT NOT NULL REFERENCES principals (arn) ON DELETE CASCADE,
    session_name    TEXT NOT NULL,
    secret_blob     BYTEA NOT NULL,
    root_version    INTEGER NOT NULL REFERENCES root_keys (version),
    token_sha256    BYTEA NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    mac             BYTEA NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
