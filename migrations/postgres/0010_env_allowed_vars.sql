-- Per-environment allow list of `coffer run` variable names the program-
-- loading policy (src/env_policy.rs) would refuse: an environment admin
-- allows one name at a time, audited. Keep in step with migrations/sqlite.
-- Tenant data: row-level security below.
CREATE TABLE env_allowed_vars (
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    env_id     TEXT    NOT NULL REFERENCES environments (id),
    name       TEXT    NOT NULL,
    allowed_by TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (env_id, name)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON env_allowed_vars TO coffer_app;

-- Same policy as the other tenant tables (0002_identity.sql, 0005_kv.sql).
ALTER TABLE env_allowed_vars ENABLE ROW LEVEL SECURITY;
ALTER TABLE env_allowed_vars FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON env_allowed_vars USING (org_id = current_setting('coffer.org_id', true))
    WITH CHECK (org_id = current_setting('coffer.org_id', true));
