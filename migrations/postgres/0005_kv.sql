-- KV v2 (the Vault-compatible `secret/` mount), PostgreSQL. Keep in step with
-- migrations/sqlite. A KV version is a row of secret_versions; deleting one
-- stamps kv_deleted_at, destroying one empties its ciphertext and wrapped
-- DEK for good and sets kv_destroyed.
ALTER TABLE secret_versions ADD COLUMN kv_deleted_at BIGINT;
ALTER TABLE secret_versions ADD COLUMN kv_destroyed BIGINT NOT NULL DEFAULT 0;

-- Metadata of a KV key, by environment and key name (Vault lets metadata be
-- written before the first version). Tenant data: row-level security below.
CREATE TABLE kv_metadata (
    org_id               TEXT    NOT NULL REFERENCES orgs (id),
    env_id               TEXT    NOT NULL REFERENCES environments (id),
    key                  TEXT    NOT NULL,
    max_versions         BIGINT  NOT NULL DEFAULT 0,
    cas_required         BIGINT  NOT NULL DEFAULT 0,
    delete_version_after TEXT    NOT NULL DEFAULT '0s',
    custom_metadata      TEXT    NOT NULL DEFAULT '{}',
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL,
    PRIMARY KEY (env_id, key)
);

-- The mount's configuration (`secret/config`): one row, no tenant data.
CREATE TABLE kv_config (
    id                   BIGINT  PRIMARY KEY CHECK (id = 1),
    max_versions         BIGINT  NOT NULL DEFAULT 0,
    cas_required         BIGINT  NOT NULL DEFAULT 0,
    delete_version_after TEXT    NOT NULL DEFAULT '0s'
);

GRANT SELECT, INSERT, UPDATE, DELETE ON kv_metadata, kv_config TO coffer_app;

-- Same policy as the other tenant tables (0002_identity.sql).
ALTER TABLE kv_metadata ENABLE ROW LEVEL SECURITY;
ALTER TABLE kv_metadata FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON kv_metadata USING (org_id = current_setting('coffer.org_id', true))
    WITH CHECK (org_id = current_setting('coffer.org_id', true));
