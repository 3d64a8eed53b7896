-- Metadata MAC key rotation (`kms hsm rotate-mac-key`): the MAC key versions the token holds,
-- newest current. A row's MAC names the version it was made under in its own bytes (32 bytes:
-- version 1; `2 || version || HMAC` above it), so rows need no new column. Additive: a binary
-- of schema 27 runs beside this one while MAC key version 1 is current (it writes and reads
-- 32-byte MACs, as this release does under version 1).
CREATE TABLE mac_keys (
    version     INTEGER PRIMARY KEY CHECK (version > 0),
    label       TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO mac_keys (version, label) VALUES (1, 'kms-metadata-mac-key-v1');
