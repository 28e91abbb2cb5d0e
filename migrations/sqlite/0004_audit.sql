-- coffer schema v4 (SQLite): the audit log. Keep in step with migrations/postgres.
--
-- * audit_log is a hash chain: each record's `hash` is SHA-256 over its own
--   fields and `prev_hash` (the previous record's hash), so changing,
--   removing, reordering or inserting a record breaks the chain at that
--   record (see src/service/audit/chain.rs for the exact encoding);
-- * audit_checkpoints holds signed chain heads (HMAC under the audit key,
--   which only an unsealed server holds), so the chain cannot be rewritten
--   and re-hashed by someone with database access alone; a 'prune'
--   checkpoint marks where the retained log starts;
-- * audit_keys holds that key, encrypted under the root key (root rotation
--   re-encrypts it, so old checkpoints stay verifiable);
-- * append-only: triggers reject UPDATE and DELETE, except DELETE of records
--   at or below the newest prune checkpoint;
-- * one secondary index (time): every record pays for each index on the hot
--   path, and searches by actor or organization are rare admin scans.
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,             -- 1, 2, 3 … without gaps
    time        INTEGER NOT NULL,                -- unix ms
    request_id  TEXT    NOT NULL,
    actor_kind  TEXT    NOT NULL,                -- root | user | service_account | anonymous
    actor       TEXT    NOT NULL,                -- email, service-account name, "root" or ''
    accessor    TEXT    NOT NULL,                -- token accessor or ''
    cert_spki   TEXT    NOT NULL,                -- client certificate SPKI SHA-256 (hex) or ''
    source      TEXT    NOT NULL,                -- client IP or ''
    method      TEXT    NOT NULL,
    action      TEXT    NOT NULL,                -- secret.reveal, seal.unseal_share, auth.login …
    resource    TEXT    NOT NULL,                -- request path without query
    org         TEXT    NOT NULL,                -- organization slug or ''
    outcome     TEXT    NOT NULL,                -- allowed | denied | error
    status      INTEGER NOT NULL,                -- HTTP status
    reason      TEXT    NOT NULL,                -- error code or ''
    detail      TEXT    NOT NULL,                -- small JSON object, e.g. {"values":30}
    prev_hash   BLOB    NOT NULL,
    hash        BLOB    NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time);

CREATE TABLE audit_checkpoints (
    seq         INTEGER NOT NULL,                -- the chain head it signs
    hash        BLOB    NOT NULL,                -- that record's hash
    time        INTEGER NOT NULL,                -- unix ms
    kind        TEXT    NOT NULL,                -- periodic | prune
    mac         BLOB    NOT NULL,                -- HMAC-SHA256 under the audit key
    PRIMARY KEY (seq, kind)
);

CREATE TABLE audit_keys (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    wrapped     BLOB    NOT NULL,                -- the audit key under the root key
    created_at  INTEGER NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN OLD.seq > (SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints WHERE kind = 'prune')
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only (records are pruned only below a prune checkpoint)');
END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
