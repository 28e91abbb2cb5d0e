-- coffer schema v2 (SQLite): users, memberships, groups, service accounts,
-- grants, login sessions, device codes. Keep in step with migrations/postgres.
-- Tenant tables carry org_id and every query of the storage layer filters on it.

-- tokens.policy now names the principal kind: root | user | service_account.
ALTER TABLE tokens ADD COLUMN principal_id TEXT;   -- user or service account id
ALTER TABLE tokens ADD COLUMN org_id TEXT;         -- service-account tokens
ALTER TABLE tokens ADD COLUMN bound_spki TEXT;     -- hex SHA-256 of the bound client cert's SPKI
ALTER TABLE tokens ADD COLUMN family_id TEXT;      -- login session the token belongs to
CREATE INDEX tokens_principal ON tokens (principal_id);
CREATE INDEX tokens_family ON tokens (family_id);

CREATE TABLE users (
    id             TEXT    PRIMARY KEY,
    email          TEXT    NOT NULL UNIQUE,        -- lower-cased
    password_hash  TEXT    NOT NULL,               -- argon2id PHC string
    totp_secret    BLOB,                           -- encrypted under the root key
    totp_enabled   INTEGER NOT NULL DEFAULT 0,
    totp_last_step INTEGER NOT NULL DEFAULT 0,     -- a code's step is accepted once
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    locked_until   INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);

CREATE TABLE recovery_codes (
    user_id   TEXT    NOT NULL REFERENCES users (id),
    code_hash BLOB    NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);

-- The user → organization directory (authentication needs it before the
-- organization of a request is known).
CREATE TABLE memberships (
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    user_id    TEXT    NOT NULL REFERENCES users (id),
    role       TEXT    NOT NULL,                   -- owner | admin | member
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE groups (
    id         TEXT    PRIMARY KEY,
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE group_members (
    org_id   TEXT NOT NULL REFERENCES orgs (id),
    group_id TEXT NOT NULL REFERENCES groups (id),
    user_id  TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (group_id, user_id)
);

CREATE TABLE service_accounts (
    id               TEXT    PRIMARY KEY,
    org_id           TEXT    NOT NULL REFERENCES orgs (id),
    name             TEXT    NOT NULL,
    cidrs            TEXT    NOT NULL,             -- comma-separated; empty = anywhere
    cert_spki_sha256 TEXT,
    cert_subject_cn  TEXT,
    cert_dns_san     TEXT,
    created_at       INTEGER NOT NULL,
    UNIQUE (org_id, name)
);

-- permissions: bit mask (read 1, reveal 2, create 4, update 8, delete 16, export 32);
-- project_id NULL = every project, env_id NULL = every environment of the project.
CREATE TABLE grants (
    id           TEXT    PRIMARY KEY,
    org_id       TEXT    NOT NULL REFERENCES orgs (id),
    subject_kind TEXT    NOT NULL,                 -- user | service_account | group
    subject_id   TEXT    NOT NULL,
    project_id   TEXT,
    env_id       TEXT,
    permissions  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX grants_subject ON grants (org_id, subject_id);

CREATE TABLE refresh_tokens (
    token_hash BLOB    PRIMARY KEY,
    family_id  TEXT    NOT NULL,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    spent      INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX refresh_family ON refresh_tokens (family_id);

CREATE TABLE device_codes (
    device_hash BLOB    PRIMARY KEY,
    user_code   TEXT    NOT NULL UNIQUE,
    user_id     TEXT,                              -- set on approval
    status      TEXT    NOT NULL,                  -- pending | approved | denied | done
    interval_s  INTEGER NOT NULL,
    last_poll   INTEGER NOT NULL DEFAULT 0,
    expires_at  INTEGER NOT NULL
);
