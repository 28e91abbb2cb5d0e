-- Protected environments (issue 17): the approval policy of an environment,
-- change and access requests with their votes, and break-glass windows.
-- Keep in step with migrations/sqlite. Proposed values are stored as any
-- version is (ciphertext under a fresh DEK wrapped by the org's KEK).
CREATE TABLE approval_policies (
    org_id             TEXT    NOT NULL REFERENCES orgs (id),
    env_id             TEXT    NOT NULL PRIMARY KEY,
    actions            BIGINT NOT NULL,   -- bits: write 1, delete 2, rollback 4, reveal 8, export 16
    required           BIGINT NOT NULL,   -- approvals needed, 1-5
    approver_role      TEXT    NOT NULL,   -- "admin" (org owners and admins) or ""
    approver_group     TEXT    NOT NULL,   -- a group id, or ""
    sa_inject_exempt   BIGINT NOT NULL,   -- service accounts inject without approval
    request_ttl_ms     BIGINT NOT NULL,   -- a pending request expires after this
    grant_ttl_ms       BIGINT NOT NULL,   -- an approved reveal/export lasts this long
    break_glass_ttl_ms BIGINT NOT NULL,   -- a break-glass window lasts this long
    updated_by         TEXT    NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE approval_requests (
    id             TEXT    NOT NULL PRIMARY KEY,
    org_id         TEXT    NOT NULL REFERENCES orgs (id),
    env_id         TEXT    NOT NULL,
    kind           TEXT    NOT NULL,   -- write | delete | rollback | reveal | export | break_glass
    key            TEXT    NOT NULL,   -- the secret ("" for export and break-glass)
    value_type     TEXT    NOT NULL,
    description    TEXT,               -- a write's new description (NULL keeps it)
    base_version   BIGINT NOT NULL,   -- the version the change was made against (0: new key)
    rollback_to    BIGINT,
    secret_id      TEXT,
    version_id     TEXT,
    ciphertext     BYTEA,
    wrapped_dek    BYTEA,
    kek_version    BIGINT,
    author_id      TEXT    NOT NULL,   -- user/service account id (nil uuid: root)
    author         TEXT    NOT NULL,   -- kind:name
    reason         TEXT    NOT NULL,
    status         TEXT    NOT NULL,   -- pending | applied | approved | rejected | stale | expired | unreviewed | accepted | flagged
    required       BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    decided_at     BIGINT,
    grant_until    BIGINT,            -- approved reveal/export, break-glass: access ends
    reviewed_by    TEXT,
    review_comment TEXT
);
CREATE INDEX approval_requests_org ON approval_requests (org_id, created_at);
CREATE INDEX approval_requests_status ON approval_requests (status, expires_at);

CREATE TABLE approval_votes (
    request_id  TEXT    NOT NULL,
    org_id      TEXT    NOT NULL REFERENCES orgs (id),
    approver_id TEXT    NOT NULL,
    approver    TEXT    NOT NULL,   -- kind:name
    decision    TEXT    NOT NULL,   -- approve | reject
    comment     TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (request_id, approver_id)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON approval_policies, approval_requests, approval_votes TO coffer_app;

-- Same policy as the other tenant tables (0002_identity.sql, 0005_kv.sql).
ALTER TABLE approval_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE approval_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON approval_policies USING (org_id = current_setting('coffer.org_id', true))
    WITH CHECK (org_id = current_setting('coffer.org_id', true));
ALTER TABLE approval_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE approval_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON approval_requests USING (org_id = current_setting('coffer.org_id', true))
    WITH CHECK (org_id = current_setting('coffer.org_id', true));
ALTER TABLE approval_votes ENABLE ROW LEVEL SECURITY;
ALTER TABLE approval_votes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON approval_votes USING (org_id = current_setting('coffer.org_id', true))
    WITH CHECK (org_id = current_setting('coffer.org_id', true));
