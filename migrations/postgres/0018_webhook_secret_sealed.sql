-- Webhook signing secrets sealed under the organization's KEK (issue 17,
-- docs/webhooks.md "Where the signing secret lives"). Keep in step with
-- migrations/sqlite. `sealed_secret` is the secret encrypted with
-- AES-256-GCM under KEK version `kek_version`, AAD "webhook" ‖ org ‖ hook.
-- A migration holds no key, so it cannot encrypt: a hook created before
-- this migration keeps its clear `secret` until the delivery job (which
-- runs only while the server is unsealed) seals it at its first run and
-- blanks the column. New hooks store '' in `secret`.
ALTER TABLE webhooks ADD COLUMN sealed_secret BYTEA;
ALTER TABLE webhooks ADD COLUMN kek_version BIGINT;
