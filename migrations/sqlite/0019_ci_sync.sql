-- CI sync targets (issue 19, docs/ci-sync.md): per environment, a GitHub
-- Actions or GitLab CI/CD destination, its durable job queue (also the
-- dead-letter list) and what coffer last wrote there. Keep in step with
-- migrations/postgres. The credential is encrypted like a secret value
-- (fresh DEK wrapped by the organization's KEK); no row holds a value.
CREATE TABLE ci_sync_targets (
    id              TEXT    NOT NULL PRIMARY KEY,
    org_id          TEXT    NOT NULL REFERENCES orgs (id),
    env_id          TEXT    NOT NULL,
    provider        TEXT    NOT NULL,   -- github | gitlab
    scope           TEXT    NOT NULL,   -- repository | environment | organization | project | group
    api_url         TEXT    NOT NULL,
    location        TEXT    NOT NULL,   -- JSON: owner/repo/environment, project or group id, flags
    overwrite_drift INTEGER NOT NULL,
    timeout_ms      INTEGER NOT NULL,
    credential      BLOB    NOT NULL,   -- token ciphertext (DEK, AAD binds org, env, target)
    wrapped_dek     BLOB    NOT NULL,
    kek_version     INTEGER NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    last_success_at INTEGER,
    last_error      TEXT,
    last_error_at   INTEGER,
    blocked_until   INTEGER NOT NULL,   -- unix ms: Retry-After / rate limit of the target's API
    drift           TEXT    NOT NULL,   -- JSON array of {key, reason, detected_at, overwritten}
    reconciled_at   INTEGER
);
CREATE INDEX ci_sync_targets_env ON ci_sync_targets (org_id, env_id);

CREATE TABLE ci_sync_jobs (
    id         TEXT    NOT NULL PRIMARY KEY,
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    target_id  TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    op         TEXT    NOT NULL,   -- put | delete
    attempts   INTEGER NOT NULL,
    next_at    INTEGER NOT NULL,
    status     TEXT    NOT NULL,   -- pending | done | dead | superseded
    last_error TEXT,
    created_at INTEGER NOT NULL,
    done_at    INTEGER
);
-- idempotent enqueue: one live (pending or dead) job per target, key, version, op
CREATE UNIQUE INDEX ci_sync_jobs_once ON ci_sync_jobs (target_id, key, version, op)
    WHERE status IN ('pending', 'dead');
CREATE INDEX ci_sync_jobs_due ON ci_sync_jobs (org_id, target_id, status, next_at);

CREATE TABLE ci_sync_state (
    org_id            TEXT    NOT NULL REFERENCES orgs (id),
    target_id         TEXT    NOT NULL,
    key               TEXT    NOT NULL,
    version           INTEGER NOT NULL,   -- the coffer version last written to the target
    written_at        INTEGER NOT NULL,   -- unix ms of that write
    remote_updated_at TEXT    NOT NULL,   -- GitHub: the secret's updated_at right after it ('' elsewhere)
    PRIMARY KEY (target_id, key)
);
