-- One-time share links (issue 18, docs/share-links.md). Keep in step with
-- migrations/postgres.
--
-- share_links: a value encrypted ON THE CLIENT under a key that travels
-- only in the link's URL fragment; the server keeps the ciphertext, which it
-- cannot read, and the rules (expiry, views left). The link id itself is
-- stored only as its SHA-256 (`lookup`); `id` is a separate random handle
-- the creator lists and revokes by. The last view deletes the row.
CREATE TABLE share_links (
    id           TEXT    PRIMARY KEY,             -- handle (UUID), for list/revoke
    lookup       BLOB    NOT NULL UNIQUE,         -- SHA-256 of the link id in the URL
    org_id       TEXT    NOT NULL REFERENCES orgs (id),
    created_by   TEXT    NOT NULL,                -- principal id (nil UUID: root)
    creator_name TEXT    NOT NULL,                -- actor name, for the list and audit
    env_id       TEXT,                            -- `--from`: the environment the value came from
    source       TEXT    NOT NULL DEFAULT '',     -- `--from`: "project/env:KEY" (names only)
    ciphertext   BLOB    NOT NULL,
    kdf          TEXT    NOT NULL,                -- "none" | "argon2id$v=19$m=…,t=…,p=…$<salt>"
    max_views    INTEGER NOT NULL,
    views_left   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX share_links_expiry ON share_links (expires_at);
CREATE INDEX share_links_creator ON share_links (created_by);

-- Per-organization share-link policy; no row = the defaults
-- (src/service/shares.rs: 7 days, members, no protected environments).
CREATE TABLE share_policies (
    org_id          TEXT    PRIMARY KEY REFERENCES orgs (id),
    max_expiry_s    INTEGER NOT NULL,
    min_role        TEXT    NOT NULL,             -- member | admin | owner
    allow_protected INTEGER NOT NULL,             -- 0/1
    updated_at      INTEGER NOT NULL
);
