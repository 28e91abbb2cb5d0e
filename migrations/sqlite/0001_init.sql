-- coffer schema v1 (SQLite). Keep in step with migrations/postgres.
-- Ids are UUID text; times are unix milliseconds; blobs are raw bytes
-- ([format][nonce][ciphertext][tag], see src/keys/aead.rs).

CREATE TABLE keyring (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    seal_type        TEXT    NOT NULL,
    secret_shares    INTEGER NOT NULL,
    secret_threshold INTEGER NOT NULL,
    encrypted_root   BLOB    NOT NULL,
    verify_tag       BLOB    NOT NULL,
    created_at       INTEGER NOT NULL
);

CREATE TABLE tokens (
    accessor     TEXT    PRIMARY KEY,
    token_hash   BLOB    NOT NULL UNIQUE,
    policy       TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER
);

CREATE TABLE orgs (
    id          TEXT    PRIMARY KEY,
    slug        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    kek_version INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE kms_keys (
    org_id      TEXT    NOT NULL REFERENCES orgs (id),
    version     INTEGER NOT NULL,
    wrapped_key BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, version)
);

CREATE TABLE projects (
    id         TEXT    PRIMARY KEY,
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    slug       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (org_id, slug)
);

CREATE TABLE environments (
    id         TEXT    PRIMARY KEY,
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    project_id TEXT    NOT NULL REFERENCES projects (id),
    slug       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    protected  INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    -- bumped by every change to the environment's secrets (inject cache stamp)
    revision   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (project_id, slug)
);

CREATE TABLE secrets (
    id              TEXT    PRIMARY KEY,
    org_id          TEXT    NOT NULL REFERENCES orgs (id),
    env_id          TEXT    NOT NULL REFERENCES environments (id),
    key             TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    current_version INTEGER NOT NULL,
    deleted_at      INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (env_id, key)
);

CREATE TABLE secret_versions (
    id          TEXT    PRIMARY KEY,
    org_id      TEXT    NOT NULL REFERENCES orgs (id),
    secret_id   TEXT    NOT NULL REFERENCES secrets (id),
    version     INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    wrapped_dek BLOB    NOT NULL,
    kek_version INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (secret_id, version)
);
