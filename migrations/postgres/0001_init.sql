-- coffer schema v1 (PostgreSQL). Keep in step with migrations/sqlite.
-- Ids are UUID text; times are unix milliseconds; blobs are raw bytes
-- ([format][nonce][ciphertext][tag], see src/keys/aead.rs).

CREATE TABLE keyring (
    id               BIGINT PRIMARY KEY CHECK (id = 1),
    seal_type        TEXT    NOT NULL,
    secret_shares    BIGINT  NOT NULL,
    secret_threshold BIGINT  NOT NULL,
    encrypted_root   BYTEA   NOT NULL,
    verify_tag       BYTEA   NOT NULL,
    created_at       BIGINT  NOT NULL
);

CREATE TABLE tokens (
    accessor     TEXT    PRIMARY KEY,
    token_hash   BYTEA   NOT NULL UNIQUE,
    policy       TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT
);

CREATE TABLE orgs (
    id          TEXT    PRIMARY KEY,
    slug        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    kek_version BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE kms_keys (
    org_id      TEXT    NOT NULL REFERENCES orgs (id),
    version     BIGINT  NOT NULL,
    wrapped_key BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (org_id, version)
);

CREATE TABLE projects (
    id         TEXT    PRIMARY KEY,
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    slug       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    UNIQUE (org_id, slug)
);

CREATE TABLE environments (
    id         TEXT    PRIMARY KEY,
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    project_id TEXT    NOT NULL REFERENCES projects (id),
    slug       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    protected  BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL,
    -- bumped by every change to the environment's secrets (inject cache stamp)
    revision   BIGINT  NOT NULL DEFAULT 0,
    UNIQUE (project_id, slug)
);

CREATE TABLE secrets (
    id              TEXT    PRIMARY KEY,
    org_id          TEXT    NOT NULL REFERENCES orgs (id),
    env_id          TEXT    NOT NULL REFERENCES environments (id),
    key             TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    current_version BIGINT  NOT NULL,
    deleted_at      BIGINT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    UNIQUE (env_id, key)
);

CREATE TABLE secret_versions (
    id          TEXT    PRIMARY KEY,
    org_id      TEXT    NOT NULL REFERENCES orgs (id),
    secret_id   TEXT    NOT NULL REFERENCES secrets (id),
    version     BIGINT  NOT NULL,
    type        TEXT    NOT NULL,
    ciphertext  BYTEA   NOT NULL,
    wrapped_dek BYTEA   NOT NULL,
    kek_version BIGINT  NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    UNIQUE (secret_id, version)
);
