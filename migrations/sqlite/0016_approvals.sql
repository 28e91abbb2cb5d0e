-- Protected environments (issue 17): the approval policy of an environment,
-- change and access requests with their votes, and break-glass windows.
-- Keep in step with migrations/postgres. Proposed values are stored as any
-- version is (ciphertext under a fresh DEK wrapped by the org's KEK).
CREATE TABLE approval_policies (
    org_id             TEXT    NOT NULL REFERENCES orgs (id),
    env_id             TEXT    NOT NULL PRIMARY KEY,
    actions            INTEGER NOT NULL,   -- bits: write 1, delete 2, rollback 4, reveal 8, export 16
    required           INTEGER NOT NULL,   -- approvals needed, 1-5
    approver_role      TEXT    NOT NULL,   -- "admin" (org owners and admins) or ""
    approver_group     TEXT    NOT NULL,   -- a group id, or ""
    sa_inject_exempt   INTEGER NOT NULL,   -- service accounts inject without approval
    request_ttl_ms     INTEGER NOT NULL,   -- a pending request expires after this
    grant_ttl_ms       INTEGER NOT NULL,   -- an approved reveal/export lasts this long
    break_glass_ttl_ms INTEGER NOT NULL,   -- a break-glass window lasts this long
    updated_by         TEXT    NOT NULL,
    updated_at         INTEGER NOT NULL
);

CREATE TABLE approval_requests (
    id             TEXT    NOT NULL PRIMARY KEY,
    org_id         TEXT    NOT NULL REFERENCES orgs (id),
    env_id         TEXT    NOT NULL,
    kind           TEXT    NOT NULL,   -- write | delete | rollback | reveal | export | break_glass
    key            TEXT    NOT NULL,   -- the secret ("" for export and break-glass)
    value_type     TEXT    NOT NULL,
    description    TEXT,               -- a write's new description (NULL keeps it)
    base_version   INTEGER NOT NULL,   -- the version the change was made against (0: new key)
    rollback_to    INTEGER,
    secret_id      TEXT,
    version_id     TEXT,
    ciphertext     BLOB,
    wrapped_dek    BLOB,
    kek_version    INTEGER,
    author_id      TEXT    NOT NULL,   -- user/service account id (nil uuid: root)
    author         TEXT    NOT NULL,   -- kind:name
    reason         TEXT    NOT NULL,
    status         TEXT    NOT NULL,   -- pending | applied | approved | rejected | stale | expired | unreviewed | accepted | flagged
    required       INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    decided_at     INTEGER,
    grant_until    INTEGER,            -- approved reveal/export, break-glass: access ends
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
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver_id)
);
