//! The seal state machine.
//!
//! ```text
//! Uninitialized ──init──► Sealed{ceremony} ──K-th valid share──► Unsealed{keyring}
//!                              ▲                                        │
//!                              └──────────────── seal / restart ────────┘
//! ```
//! Each transition replaces the whole state value, so nothing of a failed or
//! finished ceremony survives it, and sealing drops the [`Keyring`] (which
//! zeroizes the root key and every cached KEK). Handlers never look at the
//! state: they ask for [`Seal::keyring`], which fails with `Sealed`.
//!
//! Crypto and storage are kept apart: this module loads the keyring row once
//! at boot (and after init) and unseals without touching the database.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use unseal::{Ceremony, ShareError};

use crate::keys::{Keyring, RootBlob, UnlockError};
use crate::secure_mem::{KeyBytes, MemError, scrub_stack};
use crate::storage::{Backend, KeyringRow, StorageError};

/// Errors of seal transitions.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// No keyring yet: run init.
    #[error("coffer is not initialized")]
    NotInitialized,
    /// Init ran already.
    #[error("coffer is already initialized")]
    AlreadyInitialized,
    /// The operation needs the keys.
    #[error("coffer is sealed")]
    Sealed,
    /// A submitted share is malformed or a duplicate; progress is unchanged.
    #[error("invalid unseal share: {0}")]
    BadShare(#[from] ShareError),
    /// K shares were combined but do not open the root key; progress reset.
    #[error(
        "unseal failed: the combined shares do not match this server's key \
         (shares from another init, or altered); progress was reset, start again"
    )]
    WrongShares,
    /// Init parameters out of range.
    #[error("{0}")]
    InvalidConfig(String),
    /// Key memory could not be allocated.
    #[error(transparent)]
    Memory(#[from] MemError),
    /// The keyring row could not be read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The stored keyring parameters a sealed or unsealed server keeps.
struct Params {
    threshold: u8,
    shares: u8,
    blob: RootBlob,
    cluster_id: String,
}

impl Params {
    fn from_row(row: &KeyringRow) -> Result<Params, SealError> {
        let small = |v: i64| {
            u8::try_from(v)
                .map_err(|_| SealError::InvalidConfig("stored keyring has an out-of-range share count".into()))
        };
        Ok(Params {
            threshold: small(row.secret_threshold)?,
            shares: small(row.secret_shares)?,
            blob: RootBlob {
                encrypted_root: row.encrypted_root.clone(),
                verify_tag: row.verify_tag.clone(),
            },
            cluster_id: cluster_id_of(&row.encrypted_root),
        })
    }

    fn sealed(self) -> SealState {
        SealState::Sealed {
            ceremony: Ceremony::new(self.threshold, self.shares),
            params: self,
        }
    }
}

/// Where the server is in its lifecycle.
enum SealState {
    Uninitialized,
    Sealed { ceremony: Ceremony, params: Params },
    Unsealed { keyring: Arc<Keyring>, params: Params },
}

/// Seal status, the fields `sys/seal-status` reports.
#[derive(Debug, Clone)]
pub struct SealStatus {
    /// an init ran
    pub initialized: bool,
    /// no keys in memory
    pub sealed: bool,
    /// K
    pub threshold: u8,
    /// N
    pub shares: u8,
    /// shares collected in this ceremony
    pub progress: u8,
    /// ceremony nonce ("" when none)
    pub nonce: String,
    /// stable id of this keyring ("" before init)
    pub cluster_id: String,
}

/// A stable, non-secret id of an initialized keyring: a hash of the stored
/// (encrypted) root-key blob, shaped as a UUID.
fn cluster_id_of(blob: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(blob);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

/// The seal of one server process.
pub struct Seal {
    state: RwLock<SealState>,
    store: Arc<dyn Backend>,
    init_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal").field("status", &self.status()).finish()
    }
}

impl Seal {
    /// Boot: sealed if a keyring exists, uninitialized otherwise.
    pub async fn load(store: Arc<dyn Backend>) -> Result<Seal, SealError> {
        let state = match store.keyring().await? {
            Some(row) => Params::from_row(&row)?.sealed(),
            None => SealState::Uninitialized,
        };
        Ok(Seal {
            state: RwLock::new(state),
            store,
            init_lock: tokio::sync::Mutex::new(()),
        })
    }

    fn write(&self) -> RwLockWriteGuard<'_, SealState> {
        // Every transition assigns a whole value, so a panic under the lock
        // cannot leave a half-made state: poison is harmless.
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> RwLockReadGuard<'_, SealState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The keyring, or `Sealed`/`NotInitialized`. Cheap: one read lock and
    /// an `Arc` clone.
    pub fn keyring(&self) -> Result<Arc<Keyring>, SealError> {
        match &*self.read() {
            SealState::Unsealed { keyring, .. } => Ok(keyring.clone()),
            SealState::Sealed { .. } => Err(SealError::Sealed),
            SealState::Uninitialized => Err(SealError::NotInitialized),
        }
    }

    /// Current status.
    pub fn status(&self) -> SealStatus {
        match &*self.read() {
            SealState::Uninitialized => SealStatus {
                initialized: false,
                sealed: true,
                threshold: 0,
                shares: 0,
                progress: 0,
                nonce: String::new(),
                cluster_id: String::new(),
            },
            SealState::Sealed { ceremony, params } => SealStatus {
                initialized: true,
                sealed: true,
                threshold: params.threshold,
                shares: params.shares,
                progress: ceremony.progress(),
                nonce: ceremony.nonce().to_owned(),
                cluster_id: params.cluster_id.clone(),
            },
            SealState::Unsealed { params, .. } => SealStatus {
                initialized: true,
                sealed: false,
                threshold: params.threshold,
                shares: params.shares,
                progress: 0,
                nonce: String::new(),
                cluster_id: params.cluster_id.clone(),
            },
        }
    }

    /// Another server sharing the database may have run init: look again.
    pub async fn refresh_if_uninitialized(&self) -> Result<(), SealError> {
        if !matches!(*self.read(), SealState::Uninitialized) {
            return Ok(());
        }
        if let Some(row) = self.store.keyring().await? {
            let params = Params::from_row(&row)?;
            let mut state = self.write();
            if matches!(*state, SealState::Uninitialized) {
                *state = params.sealed();
            }
        }
        Ok(())
    }

    /// Init: a fresh unseal key split into `shares` shares with threshold
    /// `threshold`, a fresh root key encrypted by it; the keyring row and the
    /// root token row are stored in one transaction. The server stays sealed.
    pub async fn init(
        &self,
        shares: u8,
        threshold: u8,
        root_token: &crate::storage::TokenRow,
        now: i64,
    ) -> Result<Vec<unseal::Share>, SealError> {
        let _one_at_a_time = self.init_lock.lock().await;
        self.refresh_if_uninitialized().await?;
        if !matches!(*self.read(), SealState::Uninitialized) {
            return Err(SealError::AlreadyInitialized);
        }
        let (split, row) = {
            let unseal_key = KeyBytes::random()?;
            let split = unseal::split(unseal_key.expose(), threshold, shares)
                .map_err(|e| SealError::InvalidConfig(e.to_string()))?;
            let (_keyring, blob) = Keyring::generate(&unseal_key)?;
            let row = KeyringRow {
                seal_type: "shamir".to_owned(),
                secret_shares: i64::from(shares),
                secret_threshold: i64::from(threshold),
                encrypted_root: blob.encrypted_root,
                verify_tag: blob.verify_tag,
                created_at: now,
            };
            (split, row)
        };
        scrub_stack();
        match self.store.init_keyring(&row, root_token).await {
            Err(StorageError::AlreadyInitialized) => return Err(SealError::AlreadyInitialized),
            other => other?,
        }
        *self.write() = Params::from_row(&row)?.sealed();
        Ok(split)
    }

    /// Submit one share. Returns the status after it; the K-th share
    /// unseals, or fails with [`SealError::WrongShares`] and a fresh ceremony.
    /// Already unsealed: the share is ignored and the status returned, as
    /// Vault does.
    pub fn submit_share(&self, share: &str) -> Result<SealStatus, SealError> {
        {
            let mut state = self.write();
            let SealState::Sealed { ceremony, params } = &mut *state else {
                return match *state {
                    SealState::Uninitialized => Err(SealError::NotInitialized),
                    _ => {
                        drop(state);
                        Ok(self.status())
                    }
                };
            };
            if let Some(combined) = ceremony.submit(share)? {
                let unlocked = KeyBytes::from_slice(combined.as_slice())
                    .ok_or(SealError::Memory(MemError::AllocFailed))
                    .and_then(|unseal_key| {
                        Keyring::unlock(&unseal_key, &params.blob).map_err(|e| match e {
                            UnlockError::WrongKey => SealError::WrongShares,
                            UnlockError::Memory => SealError::Memory(MemError::AllocFailed),
                        })
                    });
                drop(combined);
                scrub_stack();
                let keyring = unlocked?;
                let SealState::Sealed { params, .. } = std::mem::replace(&mut *state, SealState::Uninitialized) else {
                    unreachable!("matched Sealed above under the same lock")
                };
                *state = SealState::Unsealed {
                    keyring: Arc::new(keyring),
                    params,
                };
            }
        }
        Ok(self.status())
    }

    /// Drop the collected shares and start a new ceremony.
    pub fn reset(&self) -> SealStatus {
        if let SealState::Sealed { ceremony, .. } = &mut *self.write() {
            ceremony.reset();
        }
        self.status()
    }

    /// Seal: drop the keyring (zeroizing every key it holds). Requests in
    /// flight that hold an `Arc` of it finish first; new ones get `Sealed`.
    pub fn seal(&self) -> Result<(), SealError> {
        let mut state = self.write();
        match std::mem::replace(&mut *state, SealState::Uninitialized) {
            SealState::Unsealed { keyring, params } => {
                *state = params.sealed();
                drop(state);
                drop(keyring);
                scrub_stack();
                Ok(())
            }
            SealState::Sealed { ceremony, params } => {
                *state = SealState::Sealed { ceremony, params };
                Ok(())
            }
            SealState::Uninitialized => Err(SealError::NotInitialized),
        }
    }
}
