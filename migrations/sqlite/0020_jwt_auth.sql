-- JWT/OIDC workload-identity login (issue 19, docs/jwt-auth.md): an
-- organization's trusted token issuers and its login roles. Keep in step
-- with migrations/postgres. No row holds a credential: issuers hold public
-- keys (or where to fetch them), roles hold claim patterns.
CREATE TABLE jwt_issuers (
    id            TEXT    NOT NULL PRIMARY KEY,
    org_id        TEXT    NOT NULL REFERENCES orgs (id),
    name          TEXT    NOT NULL,
    issuer        TEXT    NOT NULL,   -- the tokens' exact `iss`
    preset        TEXT    NOT NULL,   -- github | gitlab | '' (generic)
    discovery_url TEXT,               -- OIDC discovery document (…/.well-known/openid-configuration)
    jwks_url      TEXT,               -- or a JWKS URL
    jwks          TEXT,               -- or a static JWKS (JSON)
    created_by    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE jwt_roles (
    id           TEXT    NOT NULL PRIMARY KEY,
    org_id       TEXT    NOT NULL REFERENCES orgs (id),
    name         TEXT    NOT NULL,
    issuer_id    TEXT    NOT NULL,
    audience     TEXT    NOT NULL,   -- required `aud`
    bound_claims TEXT    NOT NULL,   -- JSON {claim: [pattern, …]}
    sa_id        TEXT    NOT NULL,   -- the service account the login acts as
    max_ttl_s    INTEGER NOT NULL,
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (org_id, name)
);
CREATE INDEX jwt_roles_name ON jwt_roles (name);
