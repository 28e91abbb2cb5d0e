-- Single sign-on for people (issue 20, docs/sso.md): an organization's OIDC
-- provider, and the pending logins (state, nonce, PKCE verifier) between
-- the redirect to the provider and its callback. Keep in step with
-- migrations/postgres.
CREATE TABLE sso_providers (
    org_id          TEXT    NOT NULL PRIMARY KEY REFERENCES orgs (id),
    display_name    TEXT    NOT NULL,   -- "Sign in with <display_name>"
    issuer          TEXT    NOT NULL,   -- discovery: <issuer>/.well-known/openid-configuration
    client_id       TEXT    NOT NULL,
    client_secret   BLOB    NOT NULL,   -- AES-256-GCM under the org KEK (AAD "sso-client-secret" || org || kek version); never returned
    kek_version     INTEGER NOT NULL,
    scopes          TEXT    NOT NULL,   -- space-separated, always with openid
    allowed_domains TEXT    NOT NULL,   -- comma-separated email domains ('' = any)
    groups_claim    TEXT    NOT NULL,   -- ID token claim listing the person's groups ('' = no group sync)
    sso_required    INTEGER NOT NULL,   -- 1: members' password sessions are refused on this org
    break_glass     TEXT    NOT NULL,   -- comma-separated emails whose password sessions stay accepted
    updated_by      TEXT    NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Not a tenant table: the callback finds its organization by the state.
-- Single use (deleted when taken), ten minutes at most.
CREATE TABLE sso_states (
    state_hash    BLOB    NOT NULL PRIMARY KEY,   -- SHA-256 of the state sent to the provider
    org_id        TEXT    NOT NULL,
    nonce         TEXT    NOT NULL,
    pkce_verifier TEXT    NOT NULL,
    redirect_uri  TEXT    NOT NULL,
    binding_hash  BLOB    NOT NULL,   -- SHA-256 of the client nonce (CLI, Vault) or of the browser's cookie (dashboard)
    purpose       TEXT    NOT NULL,   -- ui | api
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX sso_states_expiry ON sso_states (expires_at);
