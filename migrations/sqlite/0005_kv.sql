-- KV v2 (the Vault-compatible `secret/` mount): per-version state and
-- per-key metadata. A KV version is a row of secret_versions; deleting one
-- stamps kv_deleted_at, destroying one empties its ciphertext and wrapped
-- DEK for good and sets kv_destroyed.
ALTER TABLE secret_versions ADD COLUMN kv_deleted_at INTEGER;
ALTER TABLE secret_versions ADD COLUMN kv_destroyed INTEGER NOT NULL DEFAULT 0;

-- Metadata of a KV key, by environment and key name (Vault lets metadata be
-- written before the first version).
CREATE TABLE kv_metadata (
    org_id               TEXT    NOT NULL REFERENCES orgs (id),
    env_id               TEXT    NOT NULL REFERENCES environments (id),
    key                  TEXT    NOT NULL,
    max_versions         INTEGER NOT NULL DEFAULT 0,
    cas_required         INTEGER NOT NULL DEFAULT 0,
    delete_version_after TEXT    NOT NULL DEFAULT '0s',
    custom_metadata      TEXT    NOT NULL DEFAULT '{}',
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    PRIMARY KEY (env_id, key)
);

-- The mount's configuration (`secret/config`): one row.
CREATE TABLE kv_config (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    max_versions         INTEGER NOT NULL DEFAULT 0,
    cas_required         INTEGER NOT NULL DEFAULT 0,
    delete_version_after TEXT    NOT NULL DEFAULT '0s'
);
