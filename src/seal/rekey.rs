//! Rekey: a new share set (new K/N) from a quorum of the current shares,
//! Vault's `sys/rekey/*` flow. Only the keyring row changes: in shamir mode
//! the root key is re-encrypted under a new unseal key (same root, same
//! verification tag, no KEK touched); in pkcs11 mode only the recovery tag
//! changes (the custodians hold recovery shares).
//!
//! ```text
//! init(K', N') ──K current shares──► [require_verification?] ──no──► commit
//!                                          │ yes: new shares handed out, old still valid
//!                                          └──K' new shares verified──► commit
//! ```
//! Invariants: the current quorum is checked against the stored tag before
//! anything is generated; with verification, the old shares keep working
//! until K' holders of the new ones proved they received them; the new key
//! is compared in constant time; the pending key lives in locked memory and
//! is dropped on cancel, completion and seal. Nothing here touches HTTP.

use subtle::ConstantTimeEq;
use unseal::Ceremony;

use super::{Seal, SealError, SealKind, SealState};
use crate::keys;
use crate::secure_mem::{KeyBytes, MemError, scrub_stack};
use crate::storage::keystore::KeyringUpdate;

/// A rekey in progress.
pub(super) struct Rekey {
    nonce: String,
    new_shares: u8,
    new_threshold: u8,
    require_verification: bool,
    /// custodians' public keys (opaque here: the service encrypts the new
    /// shares to them), one per new share, or empty
    recipients: Vec<String>,
    /// collects the current shares (current K and N)
    current: Ceremony,
    /// after the current quorum, with verification required
    pending: Option<Pending>,
}

struct Pending {
    new_key: KeyBytes,
    verify: Ceremony,
}

/// `sys/rekey/init` status.
#[derive(Debug, Clone)]
pub struct RekeyStatus {
    /// a rekey is in progress
    pub started: bool,
    /// this rekey's nonce ("" when none)
    pub nonce: String,
    /// new threshold
    pub t: u8,
    /// new share count
    pub n: u8,
    /// current shares collected
    pub progress: u8,
    /// current shares required
    pub required: u8,
    /// the new shares must be verified before they take effect
    pub verification_required: bool,
    /// nonce of the verification round ("" until the new shares exist)
    pub verification_nonce: String,
}

/// What one `sys/rekey/update` share did.
pub(crate) enum RekeyUpdate {
    /// more current shares needed
    Progress(RekeyStatus),
    /// the new shares (returned once); with verification they take effect
    /// after `sys/rekey/verify`
    Complete {
        /// the rekey nonce
        nonce: String,
        /// the new shares
        shares: Vec<unseal::Share>,
        /// the recipients given at init (encrypt share i to recipient i)
        recipients: Vec<String>,
        /// verification pending
        verification_required: bool,
        /// nonce of the verification round
        verification_nonce: String,
    },
}

impl std::fmt::Debug for RekeyUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RekeyUpdate::Progress(s) => f.debug_tuple("Progress").field(s).finish(),
            RekeyUpdate::Complete { shares, .. } => f
                .debug_struct("Complete")
                .field("shares", &shares.len())
                .finish_non_exhaustive(),
        }
    }
}

/// `sys/rekey/verify` status.
#[derive(Debug, Clone)]
pub struct VerifyStatus {
    /// verification nonce
    pub nonce: String,
    /// a verification round is open
    pub started: bool,
    /// new threshold
    pub t: u8,
    /// new share count
    pub n: u8,
    /// new shares verified so far
    pub progress: u8,
    /// the new shares took effect
    pub complete: bool,
}

fn fresh_nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether a new K/N is acceptable (the same rules as init).
fn check_counts(shares: u8, threshold: u8) -> Result<(), SealError> {
    let ok = (threshold == 1 && shares == 1) || (threshold >= 2 && threshold <= shares);
    if ok {
        Ok(())
    } else {
        Err(SealError::InvalidConfig(format!(
            "secret_threshold must be between 2 and secret_shares (or both 1), got {threshold} of {shares}"
        )))
    }
}

impl Seal {
    fn rekey_lock(&self) -> std::sync::MutexGuard<'_, Option<Rekey>> {
        // Every change assigns whole values: poison is harmless.
        self.rekey.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (current K, current N) while unsealed, else `Sealed`.
    fn current_counts(&self) -> Result<(u8, u8), SealError> {
        match &*self.read() {
            SealState::Unsealed { params, .. } => Ok((params.threshold, params.shares)),
            SealState::Sealed { .. } => Err(SealError::Sealed),
            SealState::Uninitialized => Err(SealError::NotInitialized),
        }
    }

    /// Status of the rekey in progress, if any.
    pub(crate) fn rekey_status(&self) -> Result<RekeyStatus, SealError> {
        let (required, _) = self.current_counts()?;
        Ok(match &*self.rekey_lock() {
            None => RekeyStatus {
                started: false,
                nonce: String::new(),
                t: 0,
                n: 0,
                progress: 0,
                required,
                verification_required: false,
                verification_nonce: String::new(),
            },
            Some(r) => status_of(r, required),
        })
    }

    /// Start a rekey to `shares`/`threshold`.
    pub(crate) fn rekey_init(
        &self,
        shares: u8,
        threshold: u8,
        require_verification: bool,
        recipients: Vec<String>,
    ) -> Result<RekeyStatus, SealError> {
        let (k, n) = self.current_counts()?;
        check_counts(shares, threshold)?;
        let mut slot = self.rekey_lock();
        if slot.is_some() {
            return Err(SealError::Refused(
                "a rekey is already in progress; cancel it first (DELETE sys/rekey/init)".into(),
            ));
        }
        let r = Rekey {
            nonce: fresh_nonce(),
            new_shares: shares,
            new_threshold: threshold,
            require_verification,
            recipients,
            current: Ceremony::new(k, n),
            pending: None,
        };
        let status = status_of(&r, k);
        *slot = Some(r);
        Ok(status)
    }

    /// Cancel the rekey in progress (dropping any pending new key).
    pub(crate) fn rekey_cancel(&self) -> Result<(), SealError> {
        self.current_counts()?;
        *self.rekey_lock() = None;
        Ok(())
    }

    /// Submit one current share. The K-th one checks the quorum against the
    /// stored tag and makes the new share set.
    pub(crate) async fn rekey_update(&self, share: &str, nonce: &str) -> Result<RekeyUpdate, SealError> {
        let (required, _) = self.current_counts()?;
        let candidate = {
            let mut slot = self.rekey_lock();
            let r = slot
                .as_mut()
                .ok_or_else(|| SealError::Refused("no rekey is in progress".into()))?;
            check_nonce(&r.nonce, nonce)?;
            if r.pending.is_some() {
                return Err(SealError::Refused(
                    "the new shares were handed out already; verify them (sys/rekey/verify) or cancel".into(),
                ));
            }
            match r.current.submit(share)? {
                None => return Ok(RekeyUpdate::Progress(status_of(r, required))),
                Some(c) => c,
            }
        };
        let candidate = KeyBytes::from_slice(candidate.as_slice()).ok_or(SealError::Memory(MemError::AllocFailed))?;
        if !self.is_current_quorum(&candidate)? {
            scrub_stack();
            return Err(SealError::WrongShares);
        }
        drop(candidate);
        scrub_stack();

        let new_key = KeyBytes::random()?;
        let (nonce, shares, threshold, verification, recipients) = {
            let mut slot = self.rekey_lock();
            let r = slot
                .as_mut()
                .ok_or_else(|| SealError::Refused("the rekey was cancelled".into()))?;
            let split = unseal::split(new_key.expose(), r.new_threshold, r.new_shares)
                .map_err(|e| SealError::InvalidConfig(e.to_string()))?;
            (
                r.nonce.clone(),
                split,
                (r.new_threshold, r.new_shares),
                r.require_verification,
                r.recipients.clone(),
            )
        };
        if verification {
            let mut slot = self.rekey_lock();
            let r = slot
                .as_mut()
                .ok_or_else(|| SealError::Refused("the rekey was cancelled".into()))?;
            let verify = Ceremony::new(threshold.0, threshold.1);
            let verification_nonce = verify.nonce().to_owned();
            r.pending = Some(Pending { new_key, verify });
            return Ok(RekeyUpdate::Complete {
                nonce,
                shares,
                recipients,
                verification_required: true,
                verification_nonce,
            });
        }
        self.commit_rekey(new_key, threshold.0, threshold.1).await?;
        *self.rekey_lock() = None;
        Ok(RekeyUpdate::Complete {
            nonce,
            shares,
            recipients,
            verification_required: false,
            verification_nonce: String::new(),
        })
    }

    /// Status of the verification round.
    pub(crate) fn rekey_verify_status(&self) -> Result<VerifyStatus, SealError> {
        self.current_counts()?;
        let slot = self.rekey_lock();
        let p = slot
            .as_ref()
            .and_then(|r| r.pending.as_ref())
            .ok_or_else(|| SealError::Refused("no rekey verification is in progress".into()))?;
        Ok(verify_status(p, false))
    }

    /// Restart the verification round (new nonce, progress 0).
    pub(crate) fn rekey_verify_reset(&self) -> Result<VerifyStatus, SealError> {
        self.current_counts()?;
        let mut slot = self.rekey_lock();
        let p = slot
            .as_mut()
            .and_then(|r| r.pending.as_mut())
            .ok_or_else(|| SealError::Refused("no rekey verification is in progress".into()))?;
        p.verify.reset();
        Ok(verify_status(p, false))
    }

    /// Submit one *new* share. The K'-th one must recombine the pending new
    /// key; then the new share set takes effect and the old one stops working.
    pub(crate) async fn rekey_verify_update(&self, share: &str, nonce: &str) -> Result<VerifyStatus, SealError> {
        self.current_counts()?;
        let (new_key, t, n, vnonce) = {
            let mut slot = self.rekey_lock();
            let p = slot
                .as_mut()
                .and_then(|r| r.pending.as_mut())
                .ok_or_else(|| SealError::Refused("no rekey verification is in progress".into()))?;
            check_nonce(p.verify.nonce(), nonce)?;
            let vnonce = p.verify.nonce().to_owned();
            let Some(candidate) = p.verify.submit(share)? else {
                return Ok(verify_status(p, false));
            };
            if !bool::from(candidate.as_slice().ct_eq(p.new_key.expose().as_slice())) {
                scrub_stack();
                return Err(SealError::Refused(
                    "the submitted new shares do not recombine the new key; verification progress was reset".into(),
                ));
            }
            drop(candidate);
            let r = slot
                .take()
                .ok_or_else(|| SealError::Refused("the rekey was cancelled".into()))?;
            let p = r
                .pending
                .ok_or_else(|| SealError::Refused("the rekey was cancelled".into()))?;
            (p.new_key, r.new_threshold, r.new_shares, vnonce)
        };
        scrub_stack();
        self.commit_rekey(new_key, t, n).await?;
        Ok(VerifyStatus {
            nonce: vnonce,
            started: false,
            t,
            n,
            progress: 0,
            complete: true,
        })
    }

    /// Whether `candidate` is the current unseal (shamir) or recovery
    /// (pkcs11) key, checked against the stored tag in constant time.
    pub(super) fn is_current_quorum(&self, candidate: &KeyBytes) -> Result<bool, SealError> {
        match &*self.read() {
            SealState::Unsealed { params, .. } | SealState::Sealed { params, .. } => Ok(match params.kind {
                SealKind::Shamir => keys::check_unseal_key(candidate, &params.blob),
                SealKind::Pkcs11 => params
                    .recovery_tag
                    .as_deref()
                    .is_some_and(|tag| keys::check_recovery_key(candidate, tag)),
            }),
            SealState::Uninitialized => Err(SealError::NotInitialized),
        }
    }

    /// Store the keyring under the new key and switch the in-memory state.
    async fn commit_rekey(&self, new_key: KeyBytes, threshold: u8, shares: u8) -> Result<(), SealError> {
        let _one_at_a_time = self.init_lock.lock().await;
        let (update, expected) = match &*self.read() {
            SealState::Unsealed { keyring, params, .. } => {
                let (encrypted_root, recovery_tag) = match params.kind {
                    SealKind::Shamir => (keyring.root_blob(&new_key).encrypted_root, None),
                    SealKind::Pkcs11 => (params.blob.encrypted_root.clone(), Some(keys::recovery_tag(&new_key))),
                };
                (
                    KeyringUpdate {
                        seal_type: params.kind.as_str().to_owned(),
                        secret_shares: i64::from(shares),
                        secret_threshold: i64::from(threshold),
                        encrypted_root,
                        verify_tag: params.blob.verify_tag.clone(),
                        recovery_tag,
                    },
                    params.blob.encrypted_root.clone(),
                )
            }
            _ => return Err(SealError::Sealed),
        };
        scrub_stack();
        self.store.update_keyring(&expected, &update).await?;
        let mut state = self.write();
        if let SealState::Unsealed { params, .. } = &mut *state {
            params.threshold = threshold;
            params.shares = shares;
            params.blob.encrypted_root = update.encrypted_root;
            params.recovery_tag = update.recovery_tag;
        }
        drop(state);
        drop(new_key);
        Ok(())
    }
}

fn check_nonce(expected: &str, given: &str) -> Result<(), SealError> {
    if expected != given {
        return Err(SealError::Refused(format!(
            "nonce {given:?} does not match the operation in progress"
        )));
    }
    Ok(())
}

fn status_of(r: &Rekey, required: u8) -> RekeyStatus {
    RekeyStatus {
        started: true,
        nonce: r.nonce.clone(),
        t: r.new_threshold,
        n: r.new_shares,
        progress: r.current.progress(),
        required,
        verification_required: r.require_verification,
        verification_nonce: r
            .pending
            .as_ref()
            .map(|p| p.verify.nonce().to_owned())
            .unwrap_or_default(),
    }
}

fn verify_status(p: &Pending, complete: bool) -> VerifyStatus {
    VerifyStatus {
        nonce: p.verify.nonce().to_owned(),
        started: true,
        t: p.verify.threshold(),
        n: p.verify.shares(),
        progress: p.verify.progress(),
        complete,
    }
}
