-- coffer schema v8 (sqlite): how many organizations each user created, for the
-- per-user creation limit (`[orgs] max_per_user`). Incremented in the
-- transaction that inserts the organization, only while below the limit,
-- so parallel requests cannot overshoot it. Existing users start at the
-- number of organizations they own.
ALTER TABLE users ADD COLUMN orgs_created BIGINT NOT NULL DEFAULT 0;
UPDATE users SET orgs_created =
    (SELECT COUNT(*) FROM memberships m WHERE m.user_id = users.id AND m.role = 'owner');
