//! The seal lifecycle: init, unseal, seal, status (and, in `rekey.rs`,
//! `generate_root.rs` and `backup.rs`, the other operator ceremonies). The
//! only service that holds the whole [`Backend`]: init writes the keyring
//! row and the root token in one transaction, and a backup reads every table.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{InitResult, PrincipalKind, Result, ServiceError, Shared, Unsealed, auth, cluster, now_ms};
use crate::seal::SealStatus;
use crate::storage::Backend;

/// Operator ceremonies over the seal and the whole store.
#[derive(Debug, Clone)]
pub struct OperatorService {
    pub(super) shared: Arc<Shared>,
    pub(super) store: Arc<dyn Backend>,
}

impl OperatorService {
    /// Storage kind, for status output.
    pub fn storage_kind(&self) -> &'static str {
        self.store.kind()
    }

    /// `Sealed` / `NotInitialized` unless the server holds its keys.
    pub fn require_unsealed(&self) -> Result<()> {
        self.shared.require_unsealed()
    }

    /// Seal status (unauthenticated, Vault's `sys/seal-status`).
    pub async fn seal_status(&self) -> Result<SealStatus> {
        self.shared.seal.refresh_if_uninitialized().await?;
        Ok(self.shared.seal.status())
    }

    /// Seal status without touching storage (health checks).
    pub fn seal_status_cached(&self) -> SealStatus {
        self.shared.seal.status()
    }

    /// Init: shares for the custodians and a root token, returned once.
    pub async fn init(&self, shares: u8, threshold: u8) -> Result<InitResult> {
        let (split, root_token) = self.init_split(shares, threshold).await?;
        Ok(InitResult {
            keys_hex: split.iter().map(|s| s.to_hex()).collect(),
            keys_base64: split.iter().map(|s| s.to_base64()).collect(),
            root_token,
        })
    }

    /// Init, returning the shares themselves and the root token.
    pub(super) async fn init_split(
        &self,
        shares: u8,
        threshold: u8,
    ) -> Result<(Vec<unseal::Share>, Zeroizing<String>)> {
        let (root_token, row) = auth::new_token(PrincipalKind::Root, "root")?;
        let split = self.shared.seal.init(shares, threshold, &row, now_ms()).await?;
        Ok((split, root_token))
    }

    /// Submit one unseal share.
    pub async fn unseal(&self, share: &str) -> Result<SealStatus> {
        self.unseal_migrate(share, false).await
    }

    /// Submit one share; `migrate` as Vault's: required, and only accepted,
    /// while a seal migration is pending.
    pub async fn unseal_migrate(&self, share: &str, migrate: bool) -> Result<SealStatus> {
        self.shared.seal.refresh_if_uninitialized().await?;
        self.shared.seal.reload_if_sealed().await?;
        match (self.shared.seal.pending_migration(), migrate) {
            (Some(_), true) => return Ok(self.shared.seal.submit_migration_share(share).await?),
            (Some(_), false) => {
                return Err(ServiceError::Invalid(
                    "a seal migration is pending: submit the shares with migrate=true".into(),
                ));
            }
            (None, true) => return Err(ServiceError::Invalid("no seal migration is pending".into())),
            (None, false) => {}
        }
        Ok(self.shared.seal.submit_share(share)?)
    }

    /// Throw away the collected shares.
    pub fn unseal_reset(&self) -> SealStatus {
        self.shared.seal.reset()
    }

    /// Seal (root only).
    pub fn seal(&self, who: &Unsealed) -> Result<()> {
        who.require_root()?;
        // A seal seals the whole cluster (see `cluster.rs`): the message is
        // signed while this server still holds the root key.
        self.shared.broadcast(cluster::Event::Seal);
        self.shared.seal.seal()?;
        self.shared.drop_caches();
        Ok(())
    }

    /// Drop the keys at process exit (no-op unless unsealed).
    pub fn seal_on_shutdown(&self) {
        let _ = self.shared.seal.seal();
        self.shared.drop_caches();
    }

    /// `sys/key-status` (root): when the root key was installed.
    pub async fn vault_key_status(&self, who: &Unsealed) -> Result<super::vault::KeyStatus> {
        who.require_root()?;
        let row = self.store.keyring().await?.ok_or(ServiceError::NotInitialized)?;
        Ok(super::vault::KeyStatus {
            installed_at: row.created_at,
        })
    }
}
