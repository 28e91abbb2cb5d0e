//! Root key rotation: a fresh root key, every KEK re-wrapped under it, the
//! keyring row and all KEK rows replaced in one transaction, the old root
//! key dropped (zeroized) once no request holds it any more.
//!
//! The new root is stored the way the old one was. Shamir mode: under the
//! unseal key, which the server does not keep once unsealed, so a rotation
//! collects a quorum of the current shares first (one share per request,
//! like unseal) and checks it against the stored tag. Pkcs11 mode: wrapped
//! by the HSM, no shares needed. DEKs and value ciphertexts are untouched:
//! KEKs keep their bytes, only their wrapping changes.

use std::sync::Arc;

use unseal::Ceremony;

use super::{HsmFailure, Seal, SealError, SealKind, SealState};
use crate::keys::RootBlob;
use crate::secure_mem::{KeyBytes, MemError, scrub_stack};
use crate::storage::KekRow;
use crate::storage::keystore::KeyringUpdate;

/// Where a root rotation is.
#[derive(Debug, Clone)]
pub struct RotateStatus {
    /// current shares collected (shamir mode)
    pub progress: u8,
    /// current shares required (0 in pkcs11 mode)
    pub required: u8,
    /// the rotation happened: this many KEKs were re-wrapped
    pub keks_rewrapped: Option<usize>,
}

impl Seal {
    fn rotation_lock(&self) -> std::sync::MutexGuard<'_, Option<Ceremony>> {
        self.rotation.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Submit one current share towards a root rotation (`None` in pkcs11
    /// mode, or to ask for the progress; `reset` drops collected shares).
    /// The K-th share rotates.
    pub(crate) async fn rotate_root(&self, share: Option<&str>, reset: bool) -> Result<RotateStatus, SealError> {
        let (kind, k, n) = match &*self.read() {
            SealState::Unsealed { params, .. } => (params.kind, params.threshold, params.shares),
            SealState::Sealed { .. } => return Err(SealError::Sealed),
            SealState::Uninitialized => return Err(SealError::NotInitialized),
        };
        if kind == SealKind::Pkcs11 {
            let count = self.rotate_with(None).await?;
            return Ok(RotateStatus {
                progress: 0,
                required: 0,
                keks_rewrapped: Some(count),
            });
        }
        let candidate = {
            let mut slot = self.rotation_lock();
            if reset {
                *slot = None;
            }
            let ceremony = slot.get_or_insert_with(|| Ceremony::new(k, n));
            let Some(share) = share else {
                return Ok(RotateStatus {
                    progress: ceremony.progress(),
                    required: k,
                    keks_rewrapped: None,
                });
            };
            match ceremony.submit(share)? {
                None => {
                    return Ok(RotateStatus {
                        progress: ceremony.progress(),
                        required: k,
                        keks_rewrapped: None,
                    });
                }
                Some(c) => {
                    *slot = None;
                    c
                }
            }
        };
        let key = KeyBytes::from_slice(candidate.as_slice()).ok_or(SealError::Memory(MemError::AllocFailed))?;
        drop(candidate);
        if !self.is_current_quorum(&key)? {
            scrub_stack();
            return Err(SealError::WrongShares);
        }
        let count = self.rotate_with(Some(&key)).await?;
        drop(key);
        scrub_stack();
        Ok(RotateStatus {
            progress: 0,
            required: k,
            keks_rewrapped: Some(count),
        })
    }

    /// The rotation itself; `unseal_key` is the checked quorum (shamir).
    async fn rotate_with(&self, unseal_key: Option<&KeyBytes>) -> Result<usize, SealError> {
        let _one_at_a_time = self.init_lock.lock().await;
        let (old, kind, blob, threshold, shares, recovery_tag) = match &*self.read() {
            SealState::Unsealed { keyring, params } => (
                keyring.clone(),
                params.kind,
                params.blob.clone(),
                params.threshold,
                params.shares,
                params.recovery_tag.clone(),
            ),
            SealState::Sealed { .. } => return Err(SealError::Sealed),
            SealState::Uninitialized => return Err(SealError::NotInitialized),
        };
        let (new, verify_tag) = old.rotated()?;
        let keks = self.store.all_keks().await?;
        let mut rewrapped = Vec::with_capacity(keks.len());
        for k in keks {
            let wrapped = old.rewrap_kek(&new, k.org_id, k.version, &k.wrapped_key).map_err(|_| {
                SealError::Refused(format!(
                    "KEK version {} of organization {} does not decrypt under the root key; nothing was changed",
                    k.version, k.org_id
                ))
            })?;
            rewrapped.push(KekRow {
                wrapped_key: wrapped,
                ..k
            });
        }
        // TOTP seeds are encrypted under the root key too.
        let mut seeds = Vec::new();
        for (user_id, blob) in self.store.totp_seeds().await? {
            let moved = old
                .rewrap_account_secret(&new, &crate::keys::totp_aad(&user_id), &blob)
                .map_err(|_| {
                    SealError::Refused(format!(
                        "the TOTP seed of user {user_id} does not decrypt under the root key; nothing was changed"
                    ))
                })?;
            seeds.push((user_id, moved));
        }
        // So is the audit key, if one was made.
        let audit_key = match self.store.audit_key().await? {
            Some(blob) => {
                let moved = old
                    .rewrap_account_secret(&new, crate::keys::AUDIT_KEY_AAD, &blob)
                    .map_err(|_| {
                        SealError::Refused(
                            "the audit key does not decrypt under the root key; nothing was changed".into(),
                        )
                    })?;
                Some(crate::storage::keystore::Rewrapped { old: blob, new: moved })
            }
            None => None,
        };
        let encrypted_root = match (kind, unseal_key) {
            (SealKind::Shamir, Some(key)) => new.root_blob(key).encrypted_root,
            (SealKind::Shamir, None) => {
                return Err(SealError::Refused("a quorum of unseal shares is needed".into()));
            }
            (SealKind::Pkcs11, _) => {
                let hsm = self.wrapper.as_ref().ok_or(SealError::Hsm(HsmFailure::NotConfigured))?;
                new.with_root(|root| hsm.wrap(root)).map_err(SealError::Hsm)?
            }
        };
        scrub_stack();
        let update = KeyringUpdate {
            seal_type: kind.as_str().to_owned(),
            secret_shares: i64::from(shares),
            secret_threshold: i64::from(threshold),
            encrypted_root,
            verify_tag,
            recovery_tag,
        };
        self.store
            .rotate_root(&blob.encrypted_root, &update, &rewrapped, &seeds, audit_key.as_ref())
            .await?;
        let count = rewrapped.len();
        let mut state = self.write();
        if let SealState::Unsealed { keyring, params } = &mut *state {
            *keyring = Arc::new(new);
            params.blob = RootBlob {
                encrypted_root: update.encrypted_root,
                verify_tag: update.verify_tag,
            };
            params.recovery_tag = update.recovery_tag;
        }
        drop(state);
        // The last reference to the old root: zeroized here, or when the
        // last in-flight request holding it finishes.
        drop(old);
        Ok(count)
    }
}
