//! KEK lifecycle of an organization: rotate (lazy), re-wrap in batches,
//! destroy (crypto-shred). Root only.
//!
//! Invariants:
//! - rotation adds a version and makes it active in one transaction; older
//!   versions stay, so every existing secret version still decrypts;
//! - re-wrapping moves a DEK from an older KEK version to the active one and
//!   touches only `wrapped_dek` and `kek_version`: the value ciphertext is
//!   never read into clear nor rewritten, and the DEK exists in clear only in
//!   the thread's locked scratch page;
//! - every batch also moves the org's credentials sealed under an older
//!   version (webhook signing secrets, CI sync tokens, SSO client secret,
//!   database connection URLs; a few dozen at most), each in its own
//!   format and AAD scheme, with a compare-and-set on its KEK version;
//! - each batch is one statement: a crash loses at most the batch in flight,
//!   whose rows still carry their old, valid wrapping, so a rerun resumes;
//! - a version is destroyed only when inactive and unreferenced.

use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use super::{Result, ServiceError, Unsealed, now_ms, rfc3339};
use crate::keys::{self, Keyring};
use crate::secure_mem::KeyBytes;
use crate::storage::KekRow;
use crate::storage::keystore::{DekRow, DestroyOutcome, MAX_DEK_BATCH};

/// Default DEKs per re-wrap batch.
pub const DEFAULT_REWRAP_BATCH: usize = 2_000;

/// A KEK version as the API shows it (never key bytes).
#[derive(Debug, Serialize)]
pub struct KekView {
    /// version number
    pub version: i64,
    /// new secret versions are encrypted under it
    pub active: bool,
    /// secret versions whose DEK it wraps
    pub references: i64,
    /// RFC 3339
    pub created_at: String,
}

/// What one re-wrap batch did.
#[derive(Debug, Serialize)]
pub struct RewrapBatch {
    /// DEKs moved to the active version by this batch
    pub rewrapped: u64,
    /// no DEK under an older version is left
    pub done: bool,
    /// the version DEKs now use
    pub active_version: i64,
    /// credentials sealed under the org's KEK moved by this batch
    pub credentials: CredentialsMoved,
}

/// Credentials (not secret versions) a re-wrap batch moved to the active KEK.
#[derive(Debug, Default, Serialize)]
pub struct CredentialsMoved {
    /// webhook signing secrets
    pub webhook_secrets: usize,
    /// CI sync target tokens
    pub ci_sync_tokens: usize,
    /// the SSO client secret
    pub sso_client_secrets: usize,
    /// database connection admin URLs
    pub database_connections: usize,
}

/// An organization's KEKs: list, rotate, rewrap, destroy.
#[derive(Debug, Clone)]
pub struct KeyService {
    pub(super) shared: Arc<super::Shared>,
    pub(super) key_store: Arc<dyn crate::storage::keystore::KeyStore>,
    pub(super) tenant_store: Arc<dyn crate::storage::TenantStore>,
    pub(super) webhooks: super::webhooks::WebhookService,
    pub(super) ci_sync: super::ci_sync::CiSyncService,
    pub(super) sso: super::sso::SsoService,
    pub(super) dbcreds: super::dbcreds::DbCredsService,
}

impl KeyService {
    async fn org_id(&self, slug: &str) -> Result<Uuid> {
        Ok(self
            .tenant_store
            .org(slug)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("organization {slug:?}")))?
            .id)
    }

    /// A KEK of an org, from the keyring's cache or unwrapped now.
    async fn kek_of(&self, keyring: &Keyring, org_id: Uuid, version: i64) -> Result<Arc<KeyBytes>> {
        if let Some(k) = keyring.cached_kek(org_id, version) {
            return Ok(k);
        }
        let row = self
            .tenant_store
            .kek(org_id, version)
            .await?
            .ok_or_else(|| ServiceError::Conflict(format!("KEK version {version} was destroyed")))?;
        keyring
            .load_kek(org_id, version, &row.wrapped_key)
            .map_err(|_| ServiceError::Internal(format!("KEK version {version} of an organization does not decrypt")))
    }

    /// KEK versions of an org with their reference counts.
    pub async fn list_keks(&self, who: &Unsealed, org: &str) -> Result<Vec<KekView>> {
        who.require_root()?;
        let org_id = self.org_id(org).await?;
        Ok(self
            .key_store
            .kek_usage(org_id)
            .await?
            .into_iter()
            .map(|k| KekView {
                version: k.version,
                active: k.active,
                references: k.references,
                created_at: rfc3339(k.created_at),
            })
            .collect())
    }

    /// Make a new KEK version the org's active one. Secret versions written
    /// from now on use it; older ones keep theirs until re-wrapped.
    pub async fn rotate_kek(&self, who: &Unsealed, org: &str) -> Result<KekView> {
        let keyring = who.keyring();
        who.require_root()?;
        let org_id = self.org_id(org).await?;
        let active = self
            .key_store
            .active_kek(org_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("organization {org:?}")))?;
        let version = active + 1;
        let now = now_ms();
        let wrapped = keyring
            .new_kek(org_id, version)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.key_store
            .rotate_kek(&KekRow {
                org_id,
                version,
                wrapped_key: wrapped,
                created_at: now,
            })
            .await?;
        // Env paths carry the active version: forget them here at once
        // (other servers sharing the database within the cache's second).
        self.shared.cache.clear();
        self.shared.broadcast(super::cluster::Event::Keys(org_id));
        tracing::info!(accessor = %who.accessor, org, version, "KEK rotated");
        Ok(KekView {
            version,
            active: true,
            references: 0,
            created_at: rfc3339(now),
        })
    }

    /// Re-wrap up to `limit` DEKs still under an older KEK version.
    pub async fn rewrap_batch(&self, who: &Unsealed, org: &str, limit: usize) -> Result<RewrapBatch> {
        let keyring = who.keyring();
        who.require_root()?;
        if limit == 0 || limit > MAX_DEK_BATCH {
            return Err(ServiceError::Invalid(format!(
                "batch must be between 1 and {MAX_DEK_BATCH}"
            )));
        }
        let org_id = self.org_id(org).await?;
        let active = self
            .key_store
            .active_kek(org_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("organization {org:?}")))?;
        // Credentials sealed under the KEK (a few dozen an org at most)
        // move in every batch; once moved, later batches find none.
        let credentials = CredentialsMoved {
            webhook_secrets: self.webhooks.rewrap_secrets(keyring, org_id, active).await?,
            ci_sync_tokens: self.ci_sync.rewrap_credentials(keyring, org_id, active).await?,
            sso_client_secrets: self.sso.rewrap_secret(keyring, org_id, active).await?,
            database_connections: self.dbcreds.rewrap_connections(keyring, org_id, active).await?,
        };
        let rows = self.key_store.stale_deks(org_id, active, limit).await?;
        if rows.is_empty() {
            return Ok(RewrapBatch {
                rewrapped: 0,
                done: true,
                active_version: active,
                credentials,
            });
        }
        let new = self.kek_of(keyring, org_id, active).await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut old: Option<(i64, Arc<KeyBytes>)> = None;
        for r in rows.iter() {
            let kek = match &old {
                Some((v, k)) if *v == r.kek_version => k.clone(),
                _ => {
                    let k = self.kek_of(keyring, org_id, r.kek_version).await?;
                    old = Some((r.kek_version, k.clone()));
                    k
                }
            };
            let wrapped = keys::rewrap_dek(&kek, &new, &r.id, &r.wrapped_dek).map_err(|_| {
                ServiceError::Internal(format!(
                    "the wrapped DEK of secret version row {} does not authenticate under KEK version {}",
                    r.id, r.kek_version
                ))
            })?;
            out.push(DekRow {
                id: r.id,
                kek_version: r.kek_version,
                wrapped_dek: wrapped,
            });
        }
        let rewrapped = self.key_store.replace_deks(org_id, active, &out).await?;
        Ok(RewrapBatch {
            rewrapped,
            done: rows.len() < limit,
            active_version: active,
            credentials,
        })
    }

    /// Crypto-shred KEK version `version`: its wrapped key is deleted, so
    /// nothing it wrapped can ever be decrypted again. Refused while active
    /// or referenced by any secret version or credential sealed under it
    /// (webhook secret, CI sync token, SSO client secret, database connection).
    pub async fn destroy_kek(&self, who: &Unsealed, org: &str, version: i64) -> Result<()> {
        let keyring = who.keyring();
        who.require_root()?;
        let org_id = self.org_id(org).await?;
        match self.key_store.destroy_kek(org_id, version).await? {
            DestroyOutcome::Destroyed => {
                keyring.forget_kek(org_id, version);
                self.shared
                    .broadcast(super::cluster::Event::KekDestroyed(org_id, version));
                tracing::warn!(accessor = %who.accessor, org, version, "KEK version destroyed");
                Ok(())
            }
            DestroyOutcome::NotFound => Err(ServiceError::NotFound(format!("KEK version {version} of {org}"))),
            DestroyOutcome::Active => Err(ServiceError::Conflict(format!(
                "KEK version {version} is the active one; rotate first"
            ))),
            DestroyOutcome::InUse(n) => Err(ServiceError::Conflict(format!(
                "KEK version {version} still wraps {n} secret versions or credentials (webhook secrets, CI sync \
                 tokens, SSO client secrets, database connections); run rewrap first"
            ))),
        }
    }
}
