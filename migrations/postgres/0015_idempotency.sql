-- Idempotency keys of the native API (issue 18, src/service/idempotency.rs):
-- the first answer to a mutating request that carried `Idempotency-Key`,
-- kept 24 h per principal so a retry gets it again instead of acting twice.
-- Not tenant data: keyed by the principal (user, service account, root).
-- The key is stored as its SHA-256, the answer's body encrypted under a key
-- derived from the root key (bound to principal and key), the request as a
-- SHA-256 fingerprint of method, path and body. status 0: the first request
-- is still running (claimed_at says since when).
CREATE TABLE idempotency_keys (
    principal    TEXT    NOT NULL,
    key_hash     BYTEA    NOT NULL,
    fingerprint  BYTEA    NOT NULL,
    status       BIGINT  NOT NULL DEFAULT 0,
    content_type TEXT    NOT NULL DEFAULT '',
    body         BYTEA,
    claimed_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    PRIMARY KEY (principal, key_hash)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- Org policy of the leaked-password check (issue 18, src/service/breach.rs):
-- 1 = a `password` secret whose value is in the breach corpus is refused;
-- 0 = it is written with a warning.
ALTER TABLE orgs ADD COLUMN block_breached_passwords BIGINT  NOT NULL DEFAULT 0;

GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO coffer_app;
