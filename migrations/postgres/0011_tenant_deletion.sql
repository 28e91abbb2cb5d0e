-- Soft deletion of organizations, projects and environments (issue 23).
-- A row with deleted_at set is hidden from every lookup but restorable
-- until the deletion window ends; its slug stays taken until it is purged
-- (the purge deletes the row and everything under it).
ALTER TABLE orgs ADD COLUMN deleted_at BIGINT;
ALTER TABLE projects ADD COLUMN deleted_at BIGINT;
ALTER TABLE environments ADD COLUMN deleted_at BIGINT;
