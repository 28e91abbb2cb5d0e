-- One-time share links (issue 18, docs/share-links.md). Keep in step with
-- migrations/sqlite.
--
-- share_links: a value encrypted ON THE CLIENT under a key that travels
-- only in the link's URL fragment; the server keeps the ciphertext, which it
-- cannot read, and the rules (expiry, views left). The link id itself is
-- stored only as its SHA-256 (`lookup`); `id` is a separate random handle
-- the creator lists and revokes by. The last view deletes the row.
--
-- Not under row-level security, like `tokens`: a link is opened by someone
-- with no token and no organization, looked up by the hash of an
-- unguessable id before any organization is known. Every organization-
-- scoped query (list, revoke, purge) filters on org_id / created_by itself.
CREATE TABLE share_links (
    id           TEXT    PRIMARY KEY,
    lookup       BYTEA   NOT NULL UNIQUE,
    org_id       TEXT    NOT NULL REFERENCES orgs (id),
    created_by   TEXT    NOT NULL,
    creator_name TEXT    NOT NULL,
    env_id       TEXT,
    source       TEXT    NOT NULL DEFAULT '',
    ciphertext   BYTEA   NOT NULL,
    kdf          TEXT    NOT NULL,
    max_views    BIGINT  NOT NULL,
    views_left   BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL
);
CREATE INDEX share_links_expiry ON share_links (expires_at);
CREATE INDEX share_links_creator ON share_links (created_by);

-- Per-organization share-link policy; no row = the defaults. Tenant data:
-- row-level security as the other tenant tables (0002, 0010).
CREATE TABLE share_policies (
    org_id          TEXT    PRIMARY KEY REFERENCES orgs (id),
    max_expiry_s    BIGINT  NOT NULL,
    min_role        TEXT    NOT NULL,
    allow_protected BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

GRANT SELECT, INSERT, UPDATE, DELETE ON share_links, share_policies TO coffer_app;

ALTER TABLE share_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE share_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON share_policies USING (org_id = current_setting('coffer.org_id', true))
    WITH CHECK (org_id = current_setting('coffer.org_id', true));
