-- Session lineage (issue 13, "Sessions and tokens"): every token remembers
-- the token it was derived from and when its person last proved a password,
-- so revoking a token revokes what descends from it, and a device approval
-- can ask for a recent login. Users can be disabled. Keep in step with
-- migrations/sqlite.
ALTER TABLE tokens ADD COLUMN parent_accessor TEXT;  -- token this one was derived from
ALTER TABLE tokens ADD COLUMN auth_at BIGINT;       -- unix ms of the login behind it
CREATE INDEX tokens_parent ON tokens (parent_accessor);

ALTER TABLE refresh_tokens ADD COLUMN auth_at BIGINT  NOT NULL DEFAULT 0;
CREATE INDEX refresh_user ON refresh_tokens (user_id);

-- Set on approval: the approver's login session, which the device joins.
ALTER TABLE device_codes ADD COLUMN family_id TEXT;
ALTER TABLE device_codes ADD COLUMN auth_at BIGINT;

ALTER TABLE users ADD COLUMN disabled BIGINT  NOT NULL DEFAULT 0;
