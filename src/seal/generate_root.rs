//! Break-glass root token generation by a quorum of shares (Vault's
//! `sys/generate-root/*`): the seal collects the unseal (shamir) or recovery
//! (pkcs11) shares and checks the combined key against the stored tag; the
//! service then mints the token and returns it XORed with the attempt's
//! one-time pad. The pad is opaque to the seal and dropped with the attempt.

use unseal::Ceremony;
use zeroize::Zeroizing;

use super::{Seal, SealError, SealState};
use crate::secure_mem::{KeyBytes, MemError, scrub_stack};

/// An attempt in progress.
pub(super) struct GenerateRoot {
    ceremony: Ceremony,
    nonce: String,
    otp: Zeroizing<String>,
}

/// Where an attempt is.
#[derive(Debug, Clone)]
pub(crate) struct GenerateRootStatus {
    /// an attempt is open
    pub started: bool,
    /// its nonce ("" when none)
    pub nonce: String,
    /// shares collected
    pub progress: u8,
    /// shares required
    pub required: u8,
}

/// What a share did.
pub(crate) enum GenerateRootStep {
    /// more shares needed
    Progress(GenerateRootStatus),
    /// quorum checked: mint the token and encode it with this pad
    Authorized {
        /// the attempt's nonce
        nonce: String,
        /// the one-time pad given at start
        otp: Zeroizing<String>,
        /// shares required (for the final status)
        required: u8,
    },
}

impl std::fmt::Debug for GenerateRootStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GenerateRootStep::Progress(s) => f.debug_tuple("Progress").field(s).finish(),
            GenerateRootStep::Authorized { nonce, .. } => f
                .debug_struct("Authorized")
                .field("nonce", nonce)
                .finish_non_exhaustive(),
        }
    }
}

impl Seal {
    fn gen_root_lock(&self) -> std::sync::MutexGuard<'_, Option<GenerateRoot>> {
        self.generate_root.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn quorum_counts(&self) -> Result<(u8, u8), SealError> {
        match &*self.read() {
            SealState::Unsealed { params, .. } => Ok((params.threshold, params.shares)),
            SealState::Sealed { .. } => Err(SealError::Sealed),
            SealState::Uninitialized => Err(SealError::NotInitialized),
        }
    }

    /// Status of the attempt.
    pub(crate) fn generate_root_status(&self) -> Result<GenerateRootStatus, SealError> {
        let (k, _) = self.quorum_counts()?;
        Ok(match &*self.gen_root_lock() {
            Some(g) => GenerateRootStatus {
                started: true,
                nonce: g.nonce.clone(),
                progress: g.ceremony.progress(),
                required: k,
            },
            None => GenerateRootStatus {
                started: false,
                nonce: String::new(),
                progress: 0,
                required: k,
            },
        })
    }

    /// Start an attempt whose token will be encoded with `otp`.
    pub(crate) fn generate_root_start(&self, otp: Zeroizing<String>) -> Result<GenerateRootStatus, SealError> {
        let (k, n) = self.quorum_counts()?;
        let mut slot = self.gen_root_lock();
        if slot.is_some() {
            return Err(SealError::Refused(
                "root generation already in progress; cancel it first".into(),
            ));
        }
        let g = GenerateRoot {
            ceremony: Ceremony::new(k, n),
            nonce: uuid::Uuid::new_v4().to_string(),
            otp,
        };
        let status = GenerateRootStatus {
            started: true,
            nonce: g.nonce.clone(),
            progress: 0,
            required: k,
        };
        *slot = Some(g);
        Ok(status)
    }

    /// Cancel the attempt.
    pub(crate) fn generate_root_cancel(&self) -> Result<(), SealError> {
        self.quorum_counts()?;
        *self.gen_root_lock() = None;
        Ok(())
    }

    /// Submit one share. The K-th one is checked against the stored tag; a
    /// wrong quorum resets the progress (the attempt stays open).
    pub(crate) fn generate_root_update(&self, share: &str, nonce: &str) -> Result<GenerateRootStep, SealError> {
        let (k, _) = self.quorum_counts()?;
        let candidate = {
            let mut slot = self.gen_root_lock();
            let g = slot
                .as_mut()
                .ok_or_else(|| SealError::Refused("no root generation is in progress".into()))?;
            if g.nonce != nonce {
                return Err(SealError::Refused(format!(
                    "nonce {nonce:?} does not match the root generation in progress"
                )));
            }
            match g.ceremony.submit(share)? {
                None => {
                    return Ok(GenerateRootStep::Progress(GenerateRootStatus {
                        started: true,
                        nonce: g.nonce.clone(),
                        progress: g.ceremony.progress(),
                        required: k,
                    }));
                }
                Some(c) => c,
            }
        };
        let key = KeyBytes::from_slice(candidate.as_slice()).ok_or(SealError::Memory(MemError::AllocFailed))?;
        drop(candidate);
        let ok = self.is_current_quorum(&key)?;
        drop(key);
        scrub_stack();
        if !ok {
            return Err(SealError::WrongShares);
        }
        let g = self
            .gen_root_lock()
            .take()
            .ok_or_else(|| SealError::Refused("the root generation was cancelled".into()))?;
        Ok(GenerateRootStep::Authorized {
            nonce: g.nonce,
            otp: g.otp,
            required: k,
        })
    }
}
