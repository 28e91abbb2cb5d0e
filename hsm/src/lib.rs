//! PKCS#11 custody of coffer's root key: an AES-256 key that never leaves a
//! token (sensitive, non-extractable) encrypts and decrypts the 32-byte root
//! key with `CKM_AES_GCM`, through [`cryptoki`].
//!
//! # What this crate owns
//!
//! * [`Hsm`]: load a PKCS#11 module, find the slot by **token label** (tokens
//!   land on unpredictable slot ids), log in as the user with a PIN read from
//!   a file or an environment variable ([`PinSource`]) at every use, find the
//!   AES key by **label**, and encrypt ([`Hsm::wrap_root`]) or decrypt
//!   ([`Hsm::unwrap_root`]) the root key. SoftHSM2 refuses `C_WrapKey` with
//!   GCM (`CKR_MECHANISM_INVALID`), and the root key is not a token object,
//!   so GCM runs as `C_Encrypt`/`C_Decrypt` over the key bytes.
//! * [`Hsm::generate_key`]: first setup, a new key with `CKA_SENSITIVE`,
//!   `!CKA_EXTRACTABLE`, `CKA_TOKEN`, `CKA_PRIVATE`, encrypt/decrypt only.
//!
//! Blob layout: `[0x48 'H' format v1][12-byte IV from the token's RNG][ciphertext ‖ 16-byte tag]`,
//! AAD [`ROOT_AAD`]. A flipped bit fails in the token (SoftHSM2 answers
//! `CKR_GENERAL_ERROR`), reported as [`HsmError::Decrypt`].
//!
//! # Invariants
//!
//! * Every operation opens its own PKCS#11 context (`C_Initialize` …
//!   `C_Finalize`), serialized by a process-wide lock: a module allows one
//!   initialization per process, and a fresh one notices a token that was
//!   removed or re-inserted, or a PIN file that was fixed, without a restart.
//! * The PIN is read when needed, held in cryptoki's `AuthPin` (zeroized),
//!   and appears in no error, log or `Debug` output. Decrypted key bytes are
//!   returned in [`Zeroizing`] memory.
//!
//! # Never
//!
//! * `unsafe` (forbidden; cryptoki owns the FFI), a PIN in a config file.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![warn(unreachable_pub, missing_debug_implementations)]

use std::path::PathBuf;
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::{AuthPin, Ulong};
use zeroize::Zeroizing;

/// First byte of an HSM root blob.
pub const FORMAT_V1: u8 = 0x48;
/// AAD of the root key under the HSM key.
pub const ROOT_AAD: &[u8] = b"coffer root key under HSM v1";
const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;

/// One PKCS#11 context at a time in this process.
static CONTEXT: Mutex<()> = Mutex::new(());

/// Where the user PIN comes from. Never the config file itself.
#[derive(Clone, PartialEq, Eq)]
pub enum PinSource {
    /// a file holding the PIN (trailing newline ignored)
    File(PathBuf),
    /// the name of an environment variable holding the PIN
    Env(String),
}

impl std::fmt::Debug for PinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinSource::File(p) => f.debug_tuple("File").field(p).finish(),
            PinSource::Env(n) => f.debug_tuple("Env").field(n).finish(),
        }
    }
}

/// How to reach the key.
#[derive(Debug, Clone)]
pub struct HsmConfig {
    /// path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`)
    pub module: PathBuf,
    /// label of the token holding the key
    pub token_label: String,
    /// label of the AES-256 key
    pub key_label: String,
    /// where the user PIN is read from
    pub pin: PinSource,
}

/// Why an HSM operation failed. Messages name the cause and the labels,
/// never a PIN or key byte.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The module could not be loaded or initialized.
    #[error("cannot load PKCS#11 module {module}: {cause}")]
    Module {
        /// module path
        module: String,
        /// cryptoki's message
        cause: String,
    },
    /// No token with this label is present.
    #[error("no token labelled {0:?} is present (token removed?)")]
    TokenNotFound(String),
    /// The PIN could not be read.
    #[error("cannot read the HSM PIN: {0}")]
    PinUnavailable(String),
    /// The token refused the PIN.
    #[error("the token refused the PIN (CKR_PIN_INCORRECT)")]
    PinIncorrect,
    /// The token locked the PIN after too many failures.
    #[error("the token's user PIN is locked (CKR_PIN_LOCKED)")]
    PinLocked,
    /// No key with this label, or several.
    #[error("token {token:?} has {found} AES keys labelled {key:?} (expected exactly one)")]
    KeyNotFound {
        /// token label
        token: String,
        /// key label
        key: String,
        /// how many were found
        found: usize,
    },
    /// `generate_key` found a key with this label already.
    #[error("token {token:?} already holds a key labelled {key:?}")]
    KeyExists {
        /// token label
        token: String,
        /// key label
        key: String,
    },
    /// The blob is not one this crate made.
    #[error("the stored HSM blob is malformed")]
    BadBlob,
    /// The token did not decrypt the blob (wrong key, or altered blob).
    #[error("the HSM key does not decrypt the stored root key ({0})")]
    Decrypt(String),
    /// Any other PKCS#11 failure.
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
}

fn ck(e: CkError) -> HsmError {
    match e {
        CkError::Pkcs11(RvError::PinIncorrect, _) => HsmError::PinIncorrect,
        CkError::Pkcs11(RvError::PinLocked, _) => HsmError::PinLocked,
        other => HsmError::Pkcs11(other.to_string()),
    }
}

/// A configured HSM key. Cheap to clone; holds no open context.
#[derive(Debug, Clone)]
pub struct Hsm {
    cfg: HsmConfig,
}

impl Hsm {
    /// An HSM handle; nothing is opened until an operation runs.
    pub fn new(cfg: HsmConfig) -> Hsm {
        Hsm { cfg }
    }

    /// The configuration.
    pub fn config(&self) -> &HsmConfig {
        &self.cfg
    }

    fn read_pin(&self) -> Result<AuthPin, HsmError> {
        let text = match &self.cfg.pin {
            PinSource::File(path) => Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| HsmError::PinUnavailable(format!("{}: {e}", path.display())))?,
            ),
            PinSource::Env(name) => Zeroizing::new(
                std::env::var(name).map_err(|_| HsmError::PinUnavailable(format!("${name} is not set")))?,
            ),
        };
        let pin = text.trim_end_matches(['\n', '\r']);
        if pin.is_empty() {
            return Err(HsmError::PinUnavailable("the PIN is empty".into()));
        }
        Ok(AuthPin::from(pin.to_owned()))
    }

    /// Run `f` in a logged-in user session on the configured token.
    fn with_session<R>(&self, rw: bool, f: impl FnOnce(&Session) -> Result<R, HsmError>) -> Result<R, HsmError> {
        let _one = CONTEXT.lock().unwrap_or_else(|p| p.into_inner());
        let module_err = |e: CkError| HsmError::Module {
            module: self.cfg.module.display().to_string(),
            cause: e.to_string(),
        };
        let ctx = Pkcs11::new(&self.cfg.module).map_err(module_err)?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(module_err)?;
        let slot = find_slot(&ctx, &self.cfg.token_label)?;
        let session = if rw {
            ctx.open_rw_session(slot)
        } else {
            ctx.open_ro_session(slot)
        }
        .map_err(ck)?;
        let pin = self.read_pin()?;
        session.login(UserType::User, Some(&pin)).map_err(ck)?;
        drop(pin);
        let out = f(&session);
        let _ = session.logout();
        drop(session);
        let _ = ctx.finalize();
        out
    }

    fn key_handles(&self, session: &Session) -> Result<Vec<ObjectHandle>, HsmError> {
        session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Label(self.cfg.key_label.as_bytes().to_vec()),
            ])
            .map_err(ck)
    }

    fn key(&self, session: &Session) -> Result<ObjectHandle, HsmError> {
        let found = self.key_handles(session)?;
        match found.as_slice() {
            [one] => Ok(*one),
            _ => Err(HsmError::KeyNotFound {
                token: self.cfg.token_label.clone(),
                key: self.cfg.key_label.clone(),
                found: found.len(),
            }),
        }
    }

    /// First setup: create the AES-256 key (sensitive, non-extractable, a
    /// token object usable only to encrypt and decrypt). Refuses if a key
    /// with the label exists.
    pub fn generate_key(&self) -> Result<(), HsmError> {
        self.with_session(true, |session| {
            if !self.key_handles(session)?.is_empty() {
                return Err(HsmError::KeyExists {
                    token: self.cfg.token_label.clone(),
                    key: self.cfg.key_label.clone(),
                });
            }
            session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::AES),
                        Attribute::ValueLen(Ulong::from(32)),
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::Wrap(false),
                        Attribute::Unwrap(false),
                        Attribute::Label(self.cfg.key_label.as_bytes().to_vec()),
                    ],
                )
                .map_err(ck)?;
            Ok(())
        })
    }

    /// Encrypt the root key under the HSM key (AES-256-GCM in the token).
    pub fn wrap_root(&self, root: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.with_session(false, |session| {
            let key = self.key(session)?;
            let mut iv = [0u8; IV_LEN];
            session.generate_random_slice(&mut iv).map_err(ck)?;
            let mut iv_param = iv;
            let params = GcmParams::new(&mut iv_param, ROOT_AAD, Ulong::from(TAG_BITS)).map_err(ck)?;
            let ct = session.encrypt(&Mechanism::AesGcm(params), key, root).map_err(ck)?;
            let mut blob = Vec::with_capacity(1 + IV_LEN + ct.len());
            blob.push(FORMAT_V1);
            blob.extend_from_slice(&iv);
            blob.extend_from_slice(&ct);
            Ok(blob)
        })
    }

    /// Decrypt a blob made by [`Hsm::wrap_root`].
    pub fn unwrap_root(&self, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let (iv, ct) = split_blob(blob)?;
        self.with_session(false, |session| {
            let key = self.key(session)?;
            let mut iv = iv;
            let params = GcmParams::new(&mut iv, ROOT_AAD, Ulong::from(TAG_BITS)).map_err(ck)?;
            session
                .decrypt(&Mechanism::AesGcm(params), key, ct)
                .map(Zeroizing::new)
                .map_err(|e| match ck(e) {
                    HsmError::Pkcs11(m) => HsmError::Decrypt(m),
                    other => other,
                })
        })
    }
}

fn split_blob(blob: &[u8]) -> Result<([u8; IV_LEN], &[u8]), HsmError> {
    if blob.len() < 1 + IV_LEN + 16 || blob[0] != FORMAT_V1 {
        return Err(HsmError::BadBlob);
    }
    let mut iv = [0u8; IV_LEN];
    iv.copy_from_slice(&blob[1..=IV_LEN]);
    Ok((iv, &blob[1 + IV_LEN..]))
}

fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    for slot in ctx.get_slots_with_token().map_err(ck)? {
        if let Ok(info) = ctx.get_token_info(slot)
            && info.label().trim_end() == label
        {
            return Ok(slot);
        }
    }
    Err(HsmError::TokenNotFound(label.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_blobs_are_refused_before_the_token() {
        assert!(matches!(split_blob(&[]), Err(HsmError::BadBlob)));
        assert!(matches!(split_blob(&[FORMAT_V1; 28]), Err(HsmError::BadBlob)));
        let mut ok = vec![FORMAT_V1];
        ok.extend_from_slice(&[7u8; IV_LEN]);
        ok.extend_from_slice(&[1u8; 48]);
        let (iv, ct) = split_blob(&ok).expect("well-formed");
        assert_eq!((iv, ct.len()), ([7u8; IV_LEN], 48));
        ok[0] = 1;
        assert!(matches!(split_blob(&ok), Err(HsmError::BadBlob)));
    }

    #[test]
    fn pin_comes_from_a_file_or_env_and_never_shows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pin");
        std::fs::write(&file, "s3cret-pin\n").expect("write");
        let hsm = Hsm::new(HsmConfig {
            module: PathBuf::from("/nonexistent.so"),
            token_label: "t".into(),
            key_label: "k".into(),
            pin: PinSource::File(file.clone()),
        });
        assert!(hsm.read_pin().is_ok());
        assert!(!format!("{hsm:?}").contains("s3cret"));
        std::fs::write(&file, "\n").expect("write");
        assert!(matches!(hsm.read_pin(), Err(HsmError::PinUnavailable(_))));
        let env = Hsm::new(HsmConfig {
            pin: PinSource::Env("COFFER_TEST_PIN_THAT_IS_NOT_SET".into()),
            ..hsm.config().clone()
        });
        let err = env.read_pin().expect_err("unset variable");
        assert!(err.to_string().contains("COFFER_TEST_PIN_THAT_IS_NOT_SET"));
        // A module that does not exist is a clear error, not a panic.
        let err = hsm.wrap_root(&[0u8; 32]).expect_err("no module");
        assert!(err.to_string().contains("/nonexistent.so"), "{err}");
    }
}
