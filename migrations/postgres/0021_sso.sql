-- Single sign-on for people (issue 20, docs/sso.md): an organization's OIDC
-- provider, and the pending logins (state, nonce, PKCE verifier) between
-- the redirect to the provider and its callback. Keep in step with
-- migrations/sqlite.
CREATE TABLE sso_providers (
    org_id          TEXT    NOT NULL PRIMARY KEY REFERENCES orgs (id),
    display_name    TEXT    NOT NULL,   -- "Sign in with <display_name>"
    issuer          TEXT    NOT NULL,   -- discovery: <issuer>/.well-known/openid-configuration
    client_id       TEXT    NOT NULL,
    client_secret   BYTEA   NOT NULL,   -- AES-256-GCM under the org KEK (AAD "sso-client-secret" || org || kek version); never returned
    kek_version     BIGINT  NOT NULL,
    scopes          TEXT    NOT NULL,   -- space-separated, always with openid
    allowed_domains TEXT    NOT NULL,   -- comma-separated email domains ('' = any)
    groups_claim    TEXT    NOT NULL,   -- ID token claim listing the person's groups ('' = no group sync)
    sso_required    BIGINT  NOT NULL,   -- 1: members' password sessions are refused on this org
    break_glass     TEXT    NOT NULL,   -- comma-separated emails whose password sessions stay accepted
    updated_by      TEXT    NOT NULL,
    updated_at      BIGINT  NOT NULL
);

-- Not a tenant table: the callback finds its organization by the state.
-- Single use (deleted when taken), ten minutes at most.
CREATE TABLE sso_states (
    state_hash    BYTEA   NOT NULL PRIMARY KEY,   -- SHA-256 of the state sent to the provider
    org_id        TEXT    NOT NULL,
    nonce         TEXT    NOT NULL,
    pkce_verifier TEXT    NOT NULL,
    redirect_uri  TEXT    NOT NULL,
    binding_hash  BYTEA   NOT NULL,   -- SHA-256 of the client nonce (CLI, Vault) or of the browser's cookie (dashboard)
    purpose       TEXT    NOT NULL,   -- ui | api
    expires_at    BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL
);
CREATE INDEX sso_states_expiry ON sso_states (expires_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON sso_providers, sso_states TO coffer_app;

-- Same policy as the other tenant tables (0017_webhooks.sql).
ALTER TABLE sso_providers ENABLE ROW LEVEL SECURITY;
ALTER TABLE sso_providers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON sso_providers USING (org_id = current_setting('coffer.org_id', true))
    WITH CHECK (org_id = current_setting('coffer.org_id', true));
