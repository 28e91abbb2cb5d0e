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
//! Crypto and storage are kept apart: this module loads the keyring row at
//! boot (and again before a ceremony share, in case another server sharing
//! the database rekeyed) and unseals without touching the database.
//!
//! Two seal kinds ([`SealKind`]): `shamir` (custodians' shares recombine the
//! unseal key that decrypts the root key) and `pkcs11` (an HSM key wraps the
//! root key, see [`RootWrapper`]; the custodians hold *recovery* shares that
//! authorize rekey and root generation but decrypt nothing). Rekey lives in
//! `rekey.rs`, root rotation in `rotate.rs`.

mod generate_root;
mod migrate;
pub(crate) mod pkcs11;
mod rekey;
mod rotate;

pub(crate) use generate_root::{GenerateRootStatus, GenerateRootStep};
pub(crate) use rekey::{RekeyStatus, RekeyUpdate, VerifyStatus};
pub(crate) use rotate::RotateStatus;

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use unseal::{Ceremony, ShareError};
use zeroize::Zeroizing;

use crate::keys::{self, Keyring, RootBlob, UnlockError};
use crate::secure_mem::{KeyBytes, MemError, scrub_stack};
use crate::storage::{Backend, KeyringRow, StorageError};

/// How the root key is protected at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealKind {
    /// encrypted by the unseal key the custodians' shares recombine
    Shamir,
    /// wrapped by a key inside a PKCS#11 token; shares are recovery shares
    Pkcs11,
}

impl SealKind {
    /// The name Vault's seal-status reports (`type`).
    pub fn as_str(self) -> &'static str {
        match self {
            SealKind::Shamir => "shamir",
            SealKind::Pkcs11 => "pkcs11",
        }
    }
}

/// What wraps the root key in pkcs11 mode: the HSM, behind a trait so the
/// seal logic never sees PKCS#11. Errors name the cause (token missing,
/// PIN refused…) and never carry key bytes or the PIN.
pub trait RootWrapper: Send + Sync + std::fmt::Debug {
    /// Encrypt the root key under the HSM key.
    fn wrap(&self, root: &KeyBytes) -> Result<Vec<u8>, HsmFailure>;
    /// Decrypt a blob made by [`RootWrapper::wrap`] into locked memory.
    fn unwrap(&self, blob: &[u8]) -> Result<KeyBytes, HsmFailure>;
    /// Configured `disabled = true`: kept only to migrate away from it
    /// (pkcs11 → shamir); never used to auto-unseal.
    fn disabled(&self) -> bool {
        false
    }
}

/// Why the HSM could not wrap or unwrap the root key (pkcs11 mode). The
/// `hsm` crate's typed error is kept as is; messages name the cause and the
/// labels, never a key byte or the PIN.
#[derive(Debug, thiserror::Error)]
pub enum HsmFailure {
    /// The token failed or refused the operation (token missing, PIN
    /// refused or locked, key not found, blob not decrypted…).
    #[error(transparent)]
    Token(#[from] hsm::HsmError),
    /// The token returned a root key of the wrong length.
    #[error("the HSM returned a root key of the wrong length")]
    KeyLength,
    /// A seal migration or root rotation needs the HSM and no `[seal]` is
    /// configured.
    #[error("no HSM is configured")]
    NotConfigured,
    /// Seal migration: the HSM key unwrapped the blob, but the result is
    /// not this server's root key (its verification tag does not match).
    #[error("the HSM key does not unwrap this server's root key")]
    WrongRoot,
    /// Auto-unseal: as [`HsmFailure::WrongRoot`]; a key label naming
    /// another key is the usual cause.
    #[error("the HSM key does not unwrap this server's root key (another key label?)")]
    WrongRootAtBoot,
}

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
    /// The request does not fit the current state (no rekey in progress,
    /// wrong nonce, wrong seal kind…).
    #[error("{0}")]
    Refused(String),
    /// The HSM could not wrap or unwrap the root key; the reason names the
    /// cause, never a key or PIN.
    #[error("HSM: {0}")]
    Hsm(#[from] HsmFailure),
    /// Key memory could not be allocated.
    #[error(transparent)]
    Memory(#[from] MemError),
    /// The keyring row could not be read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The stored keyring parameters a sealed or unsealed server keeps (no
/// secret: encrypted blobs and tags).
#[derive(Clone)]
struct Params {
    kind: SealKind,
    threshold: u8,
    shares: u8,
    blob: RootBlob,
    /// pkcs11 mode: tag of the recovery key
    recovery_tag: Option<Vec<u8>>,
    cluster_id: String,
}

impl Params {
    fn from_row(row: &KeyringRow, recovery_tag: Option<Vec<u8>>) -> Result<Params, SealError> {
        let small = |v: i64| {
            u8::try_from(v)
                .map_err(|_| SealError::InvalidConfig("stored keyring has an out-of-range share count".into()))
        };
        let kind = match row.seal_type.as_str() {
            "shamir" => SealKind::Shamir,
            "pkcs11" => SealKind::Pkcs11,
            other => {
                return Err(SealError::InvalidConfig(format!(
                    "stored keyring has unknown seal type {other:?}"
                )));
            }
        };
        Ok(Params {
            kind,
            recovery_tag,
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
/// The unseal key itself is never kept: it exists only while a ceremony
/// combines and checks it.
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
    /// shamir or pkcs11
    pub kind: SealKind,
    /// why an HSM auto-unseal has not succeeded yet (pkcs11 mode, sealed)
    pub reason: Option<String>,
    /// a seal migration is pending (submit shares with `migrate`)
    pub migration: bool,
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
pub(crate) struct Seal {
    state: RwLock<SealState>,
    store: Arc<dyn Backend>,
    init_lock: tokio::sync::Mutex<()>,
    /// the configured HSM (pkcs11 mode), if any
    wrapper: Option<Arc<dyn RootWrapper>>,
    /// last auto-unseal failure, shown by seal-status and health
    hsm_reason: RwLock<Option<String>>,
    /// a rekey in progress (see `rekey.rs`)
    rekey: std::sync::Mutex<Option<rekey::Rekey>>,
    /// shares collected for a root rotation (shamir mode, see `rotate.rs`)
    rotation: std::sync::Mutex<Option<Ceremony>>,
    /// a root token generation attempt (see `generate_root.rs`)
    generate_root: std::sync::Mutex<Option<generate_root::GenerateRoot>>,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal").field("status", &self.status()).finish()
    }
}

impl Seal {
    /// Boot: sealed if a keyring exists, uninitialized otherwise.
    pub(crate) async fn load(
        store: Arc<dyn Backend>,
        wrapper: Option<Arc<dyn RootWrapper>>,
    ) -> Result<Seal, SealError> {
        let state = match load_params(store.as_ref()).await? {
            Some(params) => params.sealed(),
            None => SealState::Uninitialized,
        };
        Ok(Seal {
            state: RwLock::new(state),
            store,
            init_lock: tokio::sync::Mutex::new(()),
            wrapper,
            hsm_reason: RwLock::new(None),
            rekey: std::sync::Mutex::new(None),
            rotation: std::sync::Mutex::new(None),
            generate_root: std::sync::Mutex::new(None),
        })
    }

    /// The configured seal kind (what init will create).
    pub(crate) fn configured_kind(&self) -> SealKind {
        if self.wrapper.is_some() {
            SealKind::Pkcs11
        } else {
            SealKind::Shamir
        }
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
    pub(crate) fn keyring(&self) -> Result<Arc<Keyring>, SealError> {
        match &*self.read() {
            SealState::Unsealed { keyring, .. } => Ok(keyring.clone()),
            SealState::Sealed { .. } => Err(SealError::Sealed),
            SealState::Uninitialized => Err(SealError::NotInitialized),
        }
    }

    /// Current status.
    pub(crate) fn status(&self) -> SealStatus {
        let mut s = self.status_inner();
        s.migration = self.pending_migration().is_some();
        s
    }

    fn status_inner(&self) -> SealStatus {
        let reason = self.hsm_reason.read().ok().and_then(|r| r.clone());
        match &*self.read() {
            SealState::Uninitialized => SealStatus {
                initialized: false,
                sealed: true,
                threshold: 0,
                shares: 0,
                progress: 0,
                nonce: String::new(),
                cluster_id: String::new(),
                kind: self.configured_kind(),
                reason: None,
                migration: false,
            },
            SealState::Sealed { ceremony, params } => SealStatus {
                initialized: true,
                sealed: true,
                threshold: params.threshold,
                shares: params.shares,
                progress: ceremony.progress(),
                nonce: ceremony.nonce().to_owned(),
                cluster_id: params.cluster_id.clone(),
                kind: params.kind,
                reason,
                migration: false,
            },
            SealState::Unsealed { params, .. } => SealStatus {
                initialized: true,
                sealed: false,
                threshold: params.threshold,
                shares: params.shares,
                progress: 0,
                nonce: String::new(),
                cluster_id: params.cluster_id.clone(),
                kind: params.kind,
                reason: None,
                migration: false,
            },
        }
    }

    /// Another server sharing the database may have run init: look again.
    pub(crate) async fn refresh_if_uninitialized(&self) -> Result<(), SealError> {
        if !matches!(*self.read(), SealState::Uninitialized) {
            return Ok(());
        }
        if let Some(params) = load_params(self.store.as_ref()).await? {
            let mut state = self.write();
            if matches!(*state, SealState::Uninitialized) {
                *state = params.sealed();
            }
        }
        Ok(())
    }

    /// Init. Shamir mode: a fresh unseal key split into `shares` shares with
    /// threshold `threshold`, a fresh root key encrypted by it; the server
    /// stays sealed. Pkcs11 mode: a fresh root key wrapped by the HSM, a
    /// fresh recovery key split into recovery shares (its tag stored); the
    /// server is unsealed at once, as Vault's auto-unseal. The keyring row
    /// and the root token row are stored in one transaction.
    pub(crate) async fn init(
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
        let split_key = KeyBytes::random()?;
        let split = unseal::split(split_key.expose(), threshold, shares)
            .map_err(|e| SealError::InvalidConfig(e.to_string()))?;
        let mut row = KeyringRow {
            seal_type: self.configured_kind().as_str().to_owned(),
            secret_shares: i64::from(shares),
            secret_threshold: i64::from(threshold),
            encrypted_root: Vec::new(),
            verify_tag: Vec::new(),
            created_at: now,
        };
        let unsealed = match &self.wrapper {
            None => {
                let (_keyring, blob) = Keyring::generate(&split_key)?;
                row.encrypted_root = blob.encrypted_root;
                row.verify_tag = blob.verify_tag;
                scrub_stack();
                match self.store.init_keyring(&row, root_token).await {
                    Err(StorageError::AlreadyInitialized) => return Err(SealError::AlreadyInitialized),
                    other => other?,
                }
                None
            }
            Some(hsm) => {
                let (keyring, tag) = Keyring::generate_bare()?;
                row.encrypted_root = keyring.with_root(|root| hsm.wrap(root)).map_err(SealError::Hsm)?;
                row.verify_tag = tag;
                let recovery = keys::recovery_tag(&split_key);
                scrub_stack();
                match self.store.init_keyring_with_recovery(&row, &recovery, root_token).await {
                    Err(StorageError::AlreadyInitialized) => return Err(SealError::AlreadyInitialized),
                    other => other?,
                }
                Some((keyring, recovery))
            }
        };
        drop(split_key);
        *self.write() = match unsealed {
            None => Params::from_row(&row, None)?.sealed(),
            Some((keyring, recovery)) => SealState::Unsealed {
                keyring: Arc::new(keyring),
                params: Params::from_row(&row, Some(recovery))?,
            },
        };
        Ok(split)
    }

    /// Pkcs11 mode: ask the HSM to unwrap the stored root key and unseal.
    /// On failure the server stays sealed and the reason is kept for
    /// seal-status and health. No-op unless sealed in pkcs11 mode.
    pub(crate) fn auto_unseal(&self) -> Result<bool, SealError> {
        let Some(hsm) = &self.wrapper else {
            return Ok(false);
        };
        if hsm.disabled() {
            if self.pending_migration().is_some()
                && let Ok(mut r) = self.hsm_reason.write()
            {
                *r = Some(
                    "seal migration to shamir pending (the HSM seal is disabled): custodians submit \
                     their recovery shares with migrate=true"
                        .into(),
                );
            }
            return Ok(false);
        }
        let blob = match &*self.read() {
            SealState::Sealed { params, .. } if params.kind == SealKind::Pkcs11 => params.blob.clone(),
            SealState::Sealed { .. } => {
                let e = SealError::Refused(
                    "seal migration to pkcs11 pending: the stored keyring is sealed with shamir; \
                     custodians submit their unseal shares with migrate=true"
                        .into(),
                );
                if let Ok(mut r) = self.hsm_reason.write() {
                    *r = Some(e.to_string());
                }
                return Err(e);
            }
            _ => return Ok(false),
        };
        let result = hsm
            .unwrap(&blob.encrypted_root)
            .map_err(SealError::Hsm)
            .and_then(|root| {
                Keyring::from_unwrapped_root(root, &blob.verify_tag)
                    .map_err(|_| SealError::Hsm(HsmFailure::WrongRootAtBoot))
            });
        scrub_stack();
        let keyring = match result {
            Ok(k) => k,
            Err(e) => {
                if let Ok(mut r) = self.hsm_reason.write() {
                    *r = Some(e.to_string());
                }
                return Err(e);
            }
        };
        if let Ok(mut r) = self.hsm_reason.write() {
            *r = None;
        }
        let mut state = self.write();
        if let SealState::Sealed { .. } = &*state {
            let SealState::Sealed { params, .. } = std::mem::replace(&mut *state, SealState::Uninitialized) else {
                unreachable!("matched Sealed above under the same lock")
            };
            *state = SealState::Unsealed {
                keyring: Arc::new(keyring),
                params,
            };
        }
        Ok(true)
    }

    /// Sealed: reload the keyring row in case another server sharing the
    /// database rekeyed or rotated; a changed row restarts the ceremony.
    pub(crate) async fn reload_if_sealed(&self) -> Result<(), SealError> {
        let current = match &*self.read() {
            SealState::Sealed { params, .. } => params.blob.encrypted_root.clone(),
            _ => return Ok(()),
        };
        let Some(params) = load_params(self.store.as_ref()).await? else {
            return Ok(());
        };
        if params.blob.encrypted_root == current {
            return Ok(());
        }
        let mut state = self.write();
        if matches!(*state, SealState::Sealed { .. }) {
            *state = params.sealed();
        }
        Ok(())
    }

    /// Submit one share. Returns the status after it; the K-th share
    /// unseals, or fails with [`SealError::WrongShares`] and a fresh ceremony.
    /// Already unsealed: the share is ignored and the status returned, as
    /// Vault does.
    pub(crate) fn submit_share(&self, share: &str) -> Result<SealStatus, SealError> {
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
            if params.kind == SealKind::Pkcs11 || self.wrapper.is_some() {
                return Err(SealError::Refused(
                    "this server unseals itself through its HSM; recovery shares cannot unseal it \
                     (see seal-status for why the HSM unseal has not succeeded; a seal migration \
                     takes shares with migrate=true)"
                        .into(),
                ));
            }
            if let Some(combined) = ceremony.submit(share)? {
                let keyring = unlock_combined(combined, &params.blob)?;
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
    pub(crate) fn reset(&self) -> SealStatus {
        if let SealState::Sealed { ceremony, .. } = &mut *self.write() {
            ceremony.reset();
        }
        self.status()
    }

    /// Seal: drop the keyring (zeroizing every key it holds). Requests in
    /// flight that hold an `Arc` of it finish first; new ones get `Sealed`.
    pub(crate) fn seal(&self) -> Result<(), SealError> {
        let mut state = self.write();
        match std::mem::replace(&mut *state, SealState::Uninitialized) {
            SealState::Unsealed { keyring, params } => {
                *state = params.sealed();
                drop(state);
                drop(keyring);
                if let Ok(mut r) = self.rekey.lock() {
                    *r = None;
                }
                if let Ok(mut r) = self.rotation.lock() {
                    *r = None;
                }
                if let Ok(mut r) = self.generate_root.lock() {
                    *r = None;
                }
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

/// The keyring a recombined unseal key opens; the key is zeroized and the
/// stack scrubbed before returning.
fn unlock_combined(combined: Zeroizing<[u8; unseal::KEY_LEN]>, blob: &RootBlob) -> Result<Keyring, SealError> {
    let unlocked = KeyBytes::from_slice(combined.as_slice())
        .ok_or(SealError::Memory(MemError::AllocFailed))
        .and_then(|unseal_key| {
            Keyring::unlock(&unseal_key, blob).map_err(|e| match e {
                UnlockError::WrongKey => SealError::WrongShares,
                UnlockError::Memory => SealError::Memory(MemError::AllocFailed),
            })
        });
    drop(combined);
    scrub_stack();
    unlocked
}

/// Offline unseal for restore: recombine `shares` against a keyring row
/// (taken from a backup file) without a server. Shamir seal only: an
/// HSM-sealed root key is unwrapped by the HSM, not by shares.
pub(crate) fn keyring_from_shares(row: &KeyringRow, shares: &[Zeroizing<String>]) -> Result<Keyring, SealError> {
    let params = Params::from_row(row, None)?;
    if params.kind != SealKind::Shamir {
        return Err(SealError::Refused(
            "this backup comes from an HSM-sealed store: restore it offline is supported for the Shamir seal \
             only (migrate the seal to Shamir, back up again)"
                .into(),
        ));
    }
    let mut ceremony = Ceremony::new(params.threshold, params.shares);
    for share in shares {
        if let Some(combined) = ceremony.submit(share.as_str())? {
            return unlock_combined(combined, &params.blob);
        }
    }
    Err(SealError::Refused(format!(
        "{} unseal shares are needed to verify the backup, {} were given",
        params.threshold,
        shares.len()
    )))
}

/// The keyring row and recovery tag, as seal parameters.
async fn load_params(store: &dyn Backend) -> Result<Option<Params>, SealError> {
    let Some(row) = store.keyring().await? else {
        return Ok(None);
    };
    let recovery = store.recovery_tag().await?;
    Ok(Some(Params::from_row(&row, recovery)?))
}
