-- A client certificate identifies at most one service account, server-wide
-- (docs/access.md "Service accounts"). The identity is the SHA-256 of the
-- certificate's SubjectPublicKeyInfo; subject CN and DNS SAN only narrow a
-- match. Before this, an admin of any organization could map another
-- tenant's certificate to an account of their own and so break (or take
-- over) that tenant's certificate-only login. Keep in step with
-- migrations/postgres.

-- Hashes are compared in lower case.
UPDATE service_accounts SET cert_spki_sha256 = lower(trim(cert_spki_sha256))
WHERE cert_spki_sha256 IS NOT NULL;

-- A certificate mapped more than once keeps its oldest mapping; the later
-- ones lose theirs (their tokens keep working; re-map them with another
-- certificate).
UPDATE service_accounts SET cert_spki_sha256 = NULL, cert_subject_cn = NULL, cert_dns_san = NULL
WHERE cert_spki_sha256 IS NOT NULL
  AND EXISTS (
    SELECT 1 FROM service_accounts older
    WHERE older.cert_spki_sha256 = service_accounts.cert_spki_sha256
      AND (older.created_at < service_accounts.created_at
           OR (older.created_at = service_accounts.created_at AND older.id < service_accounts.id)));

-- NULLs (accounts without a certificate) do not collide.
CREATE UNIQUE INDEX service_accounts_cert_spki ON service_accounts (cert_spki_sha256);
