-- coffer schema v3 (SQLite): key lifecycle. Keep in step with migrations/postgres.
--
-- * rewrap finds the DEKs still wrapped by an older KEK version with this
--   index, batch after batch, without scanning the whole table;
-- * pkcs11 seal: keyring.encrypted_root then holds the root key wrapped by
--   the HSM key, and recovery_tag the verification tag of the recovery key
--   (NULL in shamir mode): the custodians' recovery shares authorize rekey,
--   seal migration and root generation, but do not decrypt the root key.
CREATE INDEX secret_versions_org_kek ON secret_versions (org_id, kek_version);

ALTER TABLE keyring ADD COLUMN recovery_tag BLOB;
