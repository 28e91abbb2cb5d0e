-- Per-environment allow list of `coffer run` variable names the program-
-- loading policy (src/env_policy.rs) would refuse: an environment admin
-- allows one name at a time, audited. Keep in step with migrations/postgres.
CREATE TABLE env_allowed_vars (
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    env_id     TEXT    NOT NULL REFERENCES environments (id),
    name       TEXT    NOT NULL,               -- as stored and injected (case kept)
    allowed_by TEXT    NOT NULL,               -- actor name (email, account, "root")
    created_at INTEGER NOT NULL,
    PRIMARY KEY (env_id, name)
);
