-- Metadata MAC key rotation: see sql/0028_mac_key_versions.sql.
CREATE TABLE mac_keys (
    version     INTEGER PRIMARY KEY CONSTRAINT mac_keys_version_check CHECK (version > 0),
    label       TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
) STRICT;
INSERT INTO mac_keys (version, label) VALUES (1, 'kms-metadata-mac-key-v1');
