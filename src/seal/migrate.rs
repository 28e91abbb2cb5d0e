//! Seal migration with the custodians' quorum, Vault-style: the config
//! names the target, the server boots sealed with `migration: true`, and
//! custodians submit shares with `migrate: true`.
//!
//! - shamir → pkcs11 (config `[seal] type = "pkcs11"`, stored keyring
//!   shamir): the K unseal shares open the root key, the HSM wraps it, and
//!   the unseal key becomes the recovery key (same shares, now recovery shares).
//! - pkcs11 → shamir (config `[seal] … disabled = true`, stored pkcs11):
//!   the K recovery shares are checked against the recovery tag, the HSM
//!   unwraps the root key one last time, and the recovery key becomes the
//!   unseal key (same shares, now unseal shares).
//!
//! The keyring row changes by compare-and-set; no KEK, DEK or value is touched.

use std::sync::Arc;

use super::{HsmFailure, Params, Seal, SealError, SealKind, SealState, SealStatus};
use crate::keys::{self, Keyring, RootBlob};
use crate::secure_mem::{KeyBytes, MemError, scrub_stack};
use crate::storage::keystore::KeyringUpdate;

/// A migration the config asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Migration {
    /// stored shamir, configured pkcs11
    ToPkcs11,
    /// stored pkcs11, configured pkcs11 with `disabled = true`
    ToShamir,
}

impl Seal {
    /// The migration pending, if the server is sealed and the configured
    /// seal differs from the stored one.
    pub(crate) fn pending_migration(&self) -> Option<Migration> {
        let stored = match &*self.read() {
            SealState::Sealed { params, .. } => params.kind,
            _ => return None,
        };
        let disabled = self.wrapper.as_ref().map(|w| w.disabled());
        match (stored, disabled) {
            (SealKind::Shamir, Some(false)) => Some(Migration::ToPkcs11),
            (SealKind::Pkcs11, Some(true)) => Some(Migration::ToShamir),
            _ => None,
        }
    }

    /// Submit one share of a migration; the K-th migrates and unseals.
    pub(crate) async fn submit_migration_share(&self, share: &str) -> Result<SealStatus, SealError> {
        let direction = self
            .pending_migration()
            .ok_or_else(|| SealError::Refused("no seal migration is pending".into()))?;
        let hsm = self.wrapper.clone().ok_or(SealError::Hsm(HsmFailure::NotConfigured))?;
        let (candidate, params) = {
            let mut state = self.write();
            let SealState::Sealed { ceremony, params } = &mut *state else {
                drop(state);
                return Ok(self.status());
            };
            match ceremony.submit(share)? {
                None => {
                    drop(state);
                    return Ok(self.status());
                }
                Some(c) => (c, params.clone()),
            }
        };
        let key = KeyBytes::from_slice(candidate.as_slice()).ok_or(SealError::Memory(MemError::AllocFailed))?;
        drop(candidate);
        let (keyring, update) = match direction {
            Migration::ToPkcs11 => {
                let keyring = Keyring::unlock(&key, &params.blob).map_err(|_| SealError::WrongShares)?;
                let encrypted_root = keyring.with_root(|r| hsm.wrap(r)).map_err(SealError::Hsm)?;
                let update = KeyringUpdate {
                    seal_type: SealKind::Pkcs11.as_str().to_owned(),
                    secret_shares: i64::from(params.shares),
                    secret_threshold: i64::from(params.threshold),
                    encrypted_root,
                    verify_tag: params.blob.verify_tag.clone(),
                    recovery_tag: Some(keys::recovery_tag(&key)),
                };
                (keyring, update)
            }
            Migration::ToShamir => {
                let ok = params
                    .recovery_tag
                    .as_deref()
                    .is_some_and(|t| keys::check_recovery_key(&key, t));
                if !ok {
                    scrub_stack();
                    return Err(SealError::WrongShares);
                }
                let root = hsm.unwrap(&params.blob.encrypted_root).map_err(SealError::Hsm)?;
                let keyring = Keyring::from_unwrapped_root(root, &params.blob.verify_tag)
                    .map_err(|_| SealError::Hsm(HsmFailure::WrongRoot))?;
                let blob = keyring.root_blob(&key);
                let update = KeyringUpdate {
                    seal_type: SealKind::Shamir.as_str().to_owned(),
                    secret_shares: i64::from(params.shares),
                    secret_threshold: i64::from(params.threshold),
                    encrypted_root: blob.encrypted_root,
                    verify_tag: blob.verify_tag,
                    recovery_tag: None,
                };
                (keyring, update)
            }
        };
        drop(key);
        scrub_stack();
        self.store.update_keyring(&params.blob.encrypted_root, &update).await?;
        let kind = match direction {
            Migration::ToPkcs11 => SealKind::Pkcs11,
            Migration::ToShamir => SealKind::Shamir,
        };
        *self.write() = SealState::Unsealed {
            keyring: Arc::new(keyring),
            params: Params {
                kind,
                threshold: params.threshold,
                shares: params.shares,
                blob: RootBlob {
                    encrypted_root: update.encrypted_root,
                    verify_tag: update.verify_tag,
                },
                recovery_tag: update.recovery_tag,
                cluster_id: params.cluster_id,
            },
        };
        tracing::warn!(to = kind.as_str(), "seal migrated by a quorum of shares");
        Ok(self.status())
    }
}
