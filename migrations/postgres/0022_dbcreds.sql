-- Database credentials (issue 21, docs/database-credentials.md): target
-- PostgreSQL connections (admin URL sealed under the organization KEK),
-- roles (dynamic templates or a static user rotated on a schedule) and the
-- durable leases of dynamic credentials. Keep in step with
-- migrations/sqlite. No password is stored in clear.
CREATE TABLE db_connections (
    id          TEXT    NOT NULL PRIMARY KEY,
    org_id      TEXT    NOT NULL REFERENCES orgs (id),
    name        TEXT    NOT NULL,
    project     TEXT    NOT NULL,   -- slug of the environment whose readers may take credentials
    environment TEXT    NOT NULL,
    display     TEXT    NOT NULL,   -- postgres://user@host:port/db, no password
    kek_version BIGINT NOT NULL,
    sealed_url  BYTEA   NOT NULL,   -- AES-256-GCM under the org KEK (AAD: org, id, KEK version)
    created_by  TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE db_roles (
    id                TEXT    NOT NULL PRIMARY KEY,
    org_id            TEXT    NOT NULL REFERENCES orgs (id),
    name              TEXT    NOT NULL,
    connection_id     TEXT    NOT NULL,
    kind              TEXT    NOT NULL,   -- dynamic | static
    creation_sql      TEXT    NOT NULL,
    revocation_sql    TEXT    NOT NULL,
    default_ttl_s     BIGINT NOT NULL,
    max_ttl_s         BIGINT NOT NULL,
    username          TEXT    NOT NULL,   -- static: the database user
    secret_key        TEXT    NOT NULL,   -- static: the coffer secret holding its password
    rotation_period_s BIGINT NOT NULL,   -- static: 0 = on demand only
    next_rotation_at  BIGINT NOT NULL,   -- static: unix ms (claimed by compare-and-set)
    created_by        TEXT    NOT NULL,
    created_at        BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE db_leases (
    id             TEXT    NOT NULL PRIMARY KEY,
    org_id         TEXT    NOT NULL REFERENCES orgs (id),
    lease_id       TEXT    NOT NULL UNIQUE,   -- database/creds/<org>/<role>/<id>
    role_id        TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    username       TEXT    NOT NULL,
    issued_at      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    max_expires_at BIGINT NOT NULL,
    status         TEXT    NOT NULL,   -- active | revoked
    revoked_at     BIGINT,
    attempts       BIGINT NOT NULL,   -- failed revocation attempts
    last_error     TEXT,
    created_by     TEXT    NOT NULL
);
CREATE INDEX db_leases_due ON db_leases (status, expires_at);
CREATE INDEX db_leases_org ON db_leases (org_id, lease_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON db_connections, db_roles, db_leases TO coffer_app;

-- Same policy as the other tenant tables (0017_webhooks.sql).
ALTER TABLE db_connections ENABLE ROW LEVEL SECURITY;
ALTER TABLE db_connections FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON db_connections USING (org_id = current_setting('coffer.org_id', true))
    WITH CHECK (org_id = current_setting('coffer.org_id', true));
ALTER TABLE db_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE db_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON db_roles USING (org_id = current_setting('coffer.org_id', true))
    WITH CHECK (org_id = current_setting('coffer.org_id', true));
ALTER TABLE db_leases ENABLE ROW LEVEL SECURITY;
ALTER TABLE db_leases FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON db_leases USING (org_id = current_setting('coffer.org_id', true))
    WITH CHECK (org_id = current_setting('coffer.org_id', true));
