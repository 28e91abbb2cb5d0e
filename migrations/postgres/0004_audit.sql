-- coffer schema v4 (PostgreSQL): the audit log. Keep in step with migrations/sqlite
-- (which explains the hash chain and the checkpoints).
--
-- Append-only twice over: coffer_app has no UPDATE or DELETE right on the
-- audit tables, and triggers reject both for every role (a superuser must
-- disable them deliberately). Pruning goes through coffer_audit_prune(),
-- which runs with its owner's rights and deletes only records at or below
-- the newest prune checkpoint.
CREATE TABLE audit_log (
    seq         BIGINT  PRIMARY KEY,
    time        BIGINT  NOT NULL,
    request_id  TEXT    NOT NULL,
    actor_kind  TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    accessor    TEXT    NOT NULL,
    cert_spki   TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    method      TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    resource    TEXT    NOT NULL,
    org         TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    status      BIGINT  NOT NULL,
    reason      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    prev_hash   BYTEA   NOT NULL,
    hash        BYTEA   NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time);

CREATE TABLE audit_checkpoints (
    seq         BIGINT  NOT NULL,
    hash        BYTEA   NOT NULL,
    time        BIGINT  NOT NULL,
    kind        TEXT    NOT NULL,
    mac         BYTEA   NOT NULL,
    PRIMARY KEY (seq, kind)
);

CREATE TABLE audit_keys (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    wrapped     BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL
);

REVOKE UPDATE, DELETE ON audit_log, audit_checkpoints FROM coffer_app;

CREATE FUNCTION coffer_audit_reject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_log'
       AND current_setting('coffer.audit_prune', true) = 'on'
       AND OLD.seq <= (SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints WHERE kind = 'prune') THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION coffer_audit_reject();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION coffer_audit_reject();

-- Delete the records at or below the newest prune checkpoint; returns how many.
CREATE FUNCTION coffer_audit_prune() RETURNS BIGINT LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE n BIGINT;
BEGIN
    PERFORM set_config('coffer.audit_prune', 'on', true);
    DELETE FROM audit_log
        WHERE seq <= (SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints WHERE kind = 'prune');
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('coffer.audit_prune', 'off', true);
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION coffer_audit_prune() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coffer_audit_prune() TO coffer_app;
