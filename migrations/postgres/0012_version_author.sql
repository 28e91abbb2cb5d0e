-- Who wrote each secret version, by name (issue 23): "root", "user:EMAIL"
-- or "service_account:NAME", recorded at write time next to the token
-- accessor (created_by), so `secrets history` names the writer after the
-- token is gone. '' for versions written before this migration.
ALTER TABLE secret_versions ADD COLUMN author TEXT NOT NULL DEFAULT '';
