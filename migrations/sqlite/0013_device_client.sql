-- Which client asked for a device login (issue 16, the /device page shows
-- it before the approval): its User-Agent (cleaned, at most 120
-- characters) and its address. '' for codes made before this migration.
ALTER TABLE device_codes ADD COLUMN client_agent TEXT NOT NULL DEFAULT '';
ALTER TABLE device_codes ADD COLUMN client_ip TEXT NOT NULL DEFAULT '';
