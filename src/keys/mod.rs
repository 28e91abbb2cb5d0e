//! The key hierarchy (see SECURITY.md and docs/key-lifecycle.md):
//!
//! ```text
//! unseal key ──decrypts──► root key ──wraps──► org KEK vN ──wraps──► DEK ──encrypts──► value
//!            AAD "root"            AAD "kek"‖org‖vN        AAD "dek"‖version_id   AAD "value"‖org‖env‖secret‖version
//! ```
//!
//! This module owns the AAD layout and the [`Keyring`] (root key + KEK cache)
//! that exists only while the server is unsealed. It never touches storage or
//! HTTP: callers hand it blobs and ids. Every AAD field is fixed-width (UUIDs
//! as 16 bytes, versions as big-endian u64), so no two rows share an AAD.

pub mod shares;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use hmac::{KeyInit, Mac};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::aead::{self, AeadError};
use crate::secure_mem::{KeyBytes, MemError, scrub_stack, with_scratch_key};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Constant the verification tag authenticates (HMAC under the root key).
const VERIFY_LABEL: &[u8] = b"coffer unseal verification v1";

/// Constant the recovery tag authenticates (HMAC under the recovery key,
/// pkcs11 mode: the custodians' shares authorize but do not decrypt).
const RECOVERY_LABEL: &[u8] = b"coffer recovery verification v1";

/// Derivation label of the backup signing key: HMAC-SHA256(root, label).
/// Only a server holding this root key can sign a backup, and only someone
/// who can recombine its shares can verify one.
const BACKUP_LABEL: &[u8] = b"coffer backup signing key v1";

/// Derivation label of the cluster message key: HMAC-SHA256(root, label).
/// Only servers holding this root key (unsealed ones) can sign or verify
/// the notifications they exchange over PostgreSQL.
const CLUSTER_LABEL: &[u8] = b"coffer cluster message key v1";

/// Derivation label of the key that encrypts the stored answers of
/// idempotency keys (`service/idempotency.rs`): HMAC-SHA256(root, label).
/// A root rotation makes older stored answers unreadable; they are then
/// refused, never replayed as garbage, and expire within a day.
pub const IDEMPOTENCY_LABEL: &[u8] = b"coffer idempotency answer key v1";

/// AAD of the root-key blob, encrypted by the unseal key.
pub const ROOT_AAD: &[u8] = b"root\x00\x01";

fn aad(label: &[u8], ids: &[&Uuid], version: Option<i64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(label.len() + 16 * ids.len() + 8);
    out.extend_from_slice(label);
    for id in ids {
        out.extend_from_slice(id.as_bytes());
    }
    if let Some(v) = version {
        out.extend_from_slice(&(v as u64).to_be_bytes());
    }
    out
}

/// AAD of a KEK blob: `"kek" ‖ org_id ‖ kek_version`.
pub fn kek_aad(org_id: &Uuid, version: i64) -> Vec<u8> {
    aad(b"kek", &[org_id], Some(version))
}

/// AAD of a user's TOTP secret: `"totp" ‖ user_id`.
pub fn totp_aad(user_id: &Uuid) -> Vec<u8> {
    aad(b"totp", &[user_id], None)
}

/// AAD of a webhook's signing secret under its org's KEK:
/// `"webhook" ‖ org_id ‖ webhook_id` (a blob copied to another hook or
/// organization does not open).
fn webhook_aad(org_id: &Uuid, webhook_id: &Uuid) -> Vec<u8> {
    aad(b"webhook", &[org_id, webhook_id], None)
}

/// Encrypt a webhook's signing secret (AES-256-GCM) under an org KEK.
pub fn seal_webhook_secret(kek: &KeyBytes, org_id: &Uuid, webhook_id: &Uuid, secret: &[u8]) -> Vec<u8> {
    aead::seal(kek, &webhook_aad(org_id, webhook_id), secret)
}

/// Decrypt a webhook's signing secret made by [`seal_webhook_secret`].
pub fn open_webhook_secret(
    kek: &KeyBytes,
    org_id: &Uuid,
    webhook_id: &Uuid,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, AeadError> {
    aead::open(kek, &webhook_aad(org_id, webhook_id), blob)
}

/// Move a credential sealed **directly** under an org KEK (one AES-256-GCM
/// blob: webhook signing secrets, SSO client secrets, database connection
/// URLs) to another KEK version: open under `old` with `old_aad`, seal under
/// `new` with `new_aad`. The blob's format is unchanged; each caller passes
/// the AAD it always used (some name the KEK version, some do not). The
/// clear text lives only in a zeroized buffer. Credentials sealed as an
/// envelope (CI sync tokens: value under a DEK) move with [`rewrap_dek`].
pub fn reseal(
    old: &KeyBytes,
    old_aad: &[u8],
    new: &KeyBytes,
    new_aad: &[u8],
    blob: &[u8],
) -> Result<Vec<u8>, AeadError> {
    let plain = aead::open(old, old_aad, blob)?;
    Ok(aead::seal(new, new_aad, &plain))
}

/// AAD of the audit key (it signs the audit log's checkpoints).
pub const AUDIT_KEY_AAD: &[u8] = b"audit-key";

/// The row a secret value belongs to; every field goes into its AADs.
#[derive(Debug, Clone, Copy)]
pub struct ValueRow {
    /// organization
    pub org_id: Uuid,
    /// environment
    pub env_id: Uuid,
    /// secret
    pub secret_id: Uuid,
    /// the secret_versions row id (AAD of the wrapped DEK)
    pub version_id: Uuid,
    /// version number
    pub version: i64,
}

impl ValueRow {
    fn dek_aad(&self) -> Vec<u8> {
        aad(b"dek", &[&self.version_id], None)
    }
    fn value_aad(&self) -> Vec<u8> {
        aad(
            b"value",
            &[&self.org_id, &self.env_id, &self.secret_id],
            Some(self.version),
        )
    }
}

/// A value encrypted under a fresh DEK, and that DEK wrapped by a KEK.
#[derive(Debug)]
pub struct SealedValue {
    /// value ciphertext (AAD: the value row)
    pub ciphertext: Vec<u8>,
    /// the DEK wrapped by the org KEK (AAD: the version id)
    pub wrapped_dek: Vec<u8>,
}

/// Encrypt one secret version: fresh DEK, value under DEK, DEK under KEK.
/// The DEK lives only in this thread's locked scratch page, wiped after.
pub fn encrypt_value(kek: &KeyBytes, row: &ValueRow, plaintext: &[u8]) -> Result<SealedValue, MemError> {
    with_scratch_key(|dek| {
        getrandom::fill(dek.expose_mut()).map_err(|_| MemError::AllocFailed)?;
        Ok(SealedValue {
            ciphertext: aead::seal(dek, &row.value_aad(), plaintext),
            wrapped_dek: aead::wrap_key(kek, &row.dek_aad(), dek),
        })
    })?
}

/// Decrypt one secret version made by [`encrypt_value`].
pub fn decrypt_value(
    kek: &KeyBytes,
    row: &ValueRow,
    ciphertext: &[u8],
    wrapped_dek: &[u8],
) -> Result<Zeroizing<Vec<u8>>, AeadError> {
    with_scratch_key(|dek| {
        aead::unwrap_key_into(kek, &row.dek_aad(), wrapped_dek, dek)?;
        aead::open(dek, &row.value_aad(), ciphertext)
    })
    .map_err(|_| AeadError)?
}

/// Re-wrap one DEK from an older KEK version to a newer one: unwrap under
/// `old`, wrap under `new`, same AAD (the version row id). The DEK lives only
/// in this thread's locked scratch page; the value ciphertext is untouched.
pub fn rewrap_dek(old: &KeyBytes, new: &KeyBytes, version_id: &Uuid, wrapped_dek: &[u8]) -> Result<Vec<u8>, AeadError> {
    let aad = aad(b"dek", &[version_id], None);
    with_scratch_key(|dek| {
        aead::unwrap_key_into(old, &aad, wrapped_dek, dek)?;
        Ok(aead::wrap_key(new, &aad, dek))
    })
    .map_err(|_| AeadError)?
}

/// What init stores: the root key encrypted by the unseal key, and a tag that
/// proves a recombined unseal key is the right one.
#[derive(Debug, Clone)]
pub struct RootBlob {
    /// root key under the unseal key, AAD [`ROOT_AAD`]
    pub encrypted_root: Vec<u8>,
    /// HMAC-SHA256(root key, VERIFY_LABEL)
    pub verify_tag: Vec<u8>,
}

fn tag(key: &KeyBytes, label: &[u8]) -> Vec<u8> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key.expose())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(label);
    mac.finalize().into_bytes().to_vec()
}

fn check_tag(key: &KeyBytes, label: &[u8], expected: &[u8]) -> bool {
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(key.expose()) else {
        return false;
    };
    mac.update(label);
    // verify_slice compares in constant time.
    mac.verify_slice(expected).is_ok()
}

fn verify_tag(root: &KeyBytes) -> Vec<u8> {
    tag(root, VERIFY_LABEL)
}

/// The tag stored for a recovery key (pkcs11 mode).
pub fn recovery_tag(recovery_key: &KeyBytes) -> Vec<u8> {
    tag(recovery_key, RECOVERY_LABEL)
}

/// Whether `candidate` is the recovery key `expected` was made from, in
/// constant time.
pub fn check_recovery_key(candidate: &KeyBytes, expected: &[u8]) -> bool {
    check_tag(candidate, RECOVERY_LABEL, expected)
}

/// Whether `candidate` is the unseal key of `blob` (opens the root key and
/// matches the verification tag). The decrypted root is wiped at once.
pub fn check_unseal_key(candidate: &KeyBytes, blob: &RootBlob) -> bool {
    Keyring::unlock(candidate, blob).is_ok()
}

/// Why a recombined unseal key was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnlockError {
    /// The key does not decrypt the stored root key, or the tag does not match.
    #[error("the unseal key does not match this server's root key")]
    WrongKey,
    /// Locked memory could not be allocated.
    #[error("cannot allocate locked key memory")]
    Memory,
}

/// KEKs a keyring keeps unwrapped (each in a locked page of its own): the
/// least recently used one is evicted beyond this, and its page zeroized as
/// soon as no request in flight holds it.
pub const KEK_CACHE_MAX: usize = 256;

/// The unwrapped KEKs, each with the tick of its last use.
#[derive(Default)]
struct KekCache {
    map: HashMap<(Uuid, i64), (Arc<KeyBytes>, AtomicU64)>,
    tick: AtomicU64,
}

impl KekCache {
    fn get(&self, org_id: Uuid, version: i64) -> Option<Arc<KeyBytes>> {
        let (kek, used) = self.map.get(&(org_id, version))?;
        used.store(self.tick.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        Some(kek.clone())
    }

    /// Insert, evicting the least recently used KEK when full. Dropping
    /// the evicted `Arc` zeroizes and frees its page once unused.
    fn insert(&mut self, org_id: Uuid, version: i64, kek: Arc<KeyBytes>) {
        if self.map.len() >= KEK_CACHE_MAX && !self.map.contains_key(&(org_id, version)) {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| used.load(Ordering::Relaxed))
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                drop(self.map.remove(&k));
                metrics::counter!("coffer_kek_cache_evictions_total").increment(1);
            }
        }
        let used = AtomicU64::new(self.tick.fetch_add(1, Ordering::Relaxed));
        self.map.insert((org_id, version), (kek, used));
    }
}

/// The root key and the KEKs it unwrapped: exists only while unsealed.
/// Dropping it (seal) zeroizes every key it holds.
pub struct Keyring {
    root: KeyBytes,
    keks: RwLock<KekCache>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

impl Keyring {
    /// Init: a fresh root key, returned with its blob for storage.
    pub fn generate(unseal_key: &KeyBytes) -> Result<(Keyring, RootBlob), MemError> {
        let root = KeyBytes::random()?;
        let blob = RootBlob {
            encrypted_root: aead::wrap_key(unseal_key, ROOT_AAD, &root),
            verify_tag: verify_tag(&root),
        };
        scrub_stack();
        Ok((Keyring::from_root(root), blob))
    }

    /// Unseal: decrypt the root key and check the verification tag in
    /// constant time.
    pub fn unlock(unseal_key: &KeyBytes, blob: &RootBlob) -> Result<Keyring, UnlockError> {
        let result = Self::unlock_inner(unseal_key, blob);
        scrub_stack();
        result
    }

    fn unlock_inner(unseal_key: &KeyBytes, blob: &RootBlob) -> Result<Keyring, UnlockError> {
        let root = aead::unwrap_key(unseal_key, ROOT_AAD, &blob.encrypted_root).map_err(|_| UnlockError::WrongKey)?;
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(root.expose()).map_err(|_| UnlockError::Memory)?;
        mac.update(VERIFY_LABEL);
        // verify_slice compares in constant time.
        mac.verify_slice(&blob.verify_tag).map_err(|_| UnlockError::WrongKey)?;
        Ok(Keyring::from_root(root))
    }

    /// pkcs11 mode: a root key the HSM unwrapped, accepted only if it
    /// matches the stored verification tag (constant time).
    pub fn from_unwrapped_root(root: KeyBytes, verify_tag: &[u8]) -> Result<Keyring, UnlockError> {
        if !check_tag(&root, VERIFY_LABEL, verify_tag) {
            return Err(UnlockError::WrongKey);
        }
        Ok(Keyring::from_root(root))
    }

    /// pkcs11 init: a fresh root key (the caller has the HSM wrap it).
    pub fn generate_bare() -> Result<(Keyring, Vec<u8>), MemError> {
        let root = KeyBytes::random()?;
        let tag = verify_tag(&root);
        Ok((Keyring::from_root(root), tag))
    }

    /// This root key encrypted under another unseal key (rekey): same root,
    /// same verification tag, new blob.
    pub fn root_blob(&self, unseal_key: &KeyBytes) -> RootBlob {
        let blob = RootBlob {
            encrypted_root: aead::wrap_key(unseal_key, ROOT_AAD, &self.root),
            verify_tag: verify_tag(&self.root),
        };
        scrub_stack();
        blob
    }

    /// Run `f` over the root key's bytes (to hand them to an HSM for
    /// wrapping). The caller must not copy them anywhere unlocked.
    pub fn with_root<R>(&self, f: impl FnOnce(&KeyBytes) -> R) -> R {
        f(&self.root)
    }

    /// Root rotation: a keyring with a fresh root key, and its verification
    /// tag. KEKs are not carried over: re-wrap them with [`Keyring::rewrap_kek`].
    pub fn rotated(&self) -> Result<(Keyring, Vec<u8>), MemError> {
        Keyring::generate_bare()
    }

    /// Move one KEK blob from this keyring's root to `new`'s root, same AAD.
    pub fn rewrap_kek(&self, new: &Keyring, org_id: Uuid, version: i64, wrapped: &[u8]) -> Result<Vec<u8>, AeadError> {
        let aad = kek_aad(&org_id, version);
        let out = with_scratch_key(|kek| {
            aead::unwrap_key_into(&self.root, &aad, wrapped, kek)?;
            Ok(aead::wrap_key(&new.root, &aad, kek))
        })
        .map_err(|_| AeadError)?;
        scrub_stack();
        out
    }

    /// Move an account secret (TOTP seed) from this keyring's root to `new`'s.
    pub fn rewrap_account_secret(&self, new: &Keyring, aad: &[u8], blob: &[u8]) -> Result<Vec<u8>, AeadError> {
        let plain = self.open_account_secret(aad, blob)?;
        Ok(new.seal_account_secret(aad, &plain))
    }

    fn from_root(root: KeyBytes) -> Keyring {
        Keyring {
            root,
            keks: RwLock::new(KekCache::default()),
        }
    }

    /// A new KEK for `org_id` version `version`: returns the wrapped blob to
    /// store, and caches the key.
    pub fn new_kek(&self, org_id: Uuid, version: i64) -> Result<Vec<u8>, MemError> {
        let kek = KeyBytes::random()?;
        let blob = aead::wrap_key(&self.root, &kek_aad(&org_id, version), &kek);
        scrub_stack();
        self.cache(org_id, version, kek);
        Ok(blob)
    }

    /// A cached KEK, if this server unwrapped it already.
    pub fn cached_kek(&self, org_id: Uuid, version: i64) -> Option<Arc<KeyBytes>> {
        let hit = self.keks.read().ok()?.get(org_id, version);
        match hit {
            Some(_) => metrics::counter!("coffer_kek_cache_hits_total").increment(1),
            None => metrics::counter!("coffer_kek_cache_misses_total").increment(1),
        }
        hit
    }

    /// Unwrap a stored KEK blob with the root key and cache it.
    pub fn load_kek(&self, org_id: Uuid, version: i64, wrapped: &[u8]) -> Result<Arc<KeyBytes>, AeadError> {
        let kek = aead::unwrap_key(&self.root, &kek_aad(&org_id, version), wrapped);
        scrub_stack();
        Ok(self.cache(org_id, version, kek?))
    }

    /// Drop a cached KEK (after it was destroyed in storage).
    pub fn forget_kek(&self, org_id: Uuid, version: i64) {
        if let Ok(mut cache) = self.keks.write() {
            cache.map.remove(&(org_id, version));
        }
    }

    fn cache(&self, org_id: Uuid, version: i64, kek: KeyBytes) -> Arc<KeyBytes> {
        let kek = Arc::new(kek);
        if let Ok(mut cache) = self.keks.write() {
            cache.insert(org_id, version, kek.clone());
        }
        kek
    }

    /// Encrypt a small account secret (a TOTP seed) under the root key.
    /// Root rotation must re-encrypt these blobs with the KEKs.
    pub fn seal_account_secret(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let blob = aead::seal(&self.root, aad, plaintext);
        scrub_stack();
        blob
    }

    /// Decrypt what [`Keyring::seal_account_secret`] sealed.
    pub fn open_account_secret(&self, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, AeadError> {
        let plain = aead::open(&self.root, aad, blob);
        scrub_stack();
        plain
    }

    /// HMAC-SHA256 of `body` under the key HMAC-SHA256(root, `label`).
    fn derived_tag(&self, label: &[u8], body: &[u8]) -> Vec<u8> {
        let key = Zeroizing::new(tag(&self.root, label));
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(&key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether `expected` is [`Keyring::derived_tag`] of `body` (constant time).
    fn check_derived_tag(&self, label: &[u8], body: &[u8], expected: &[u8]) -> bool {
        let key = Zeroizing::new(tag(&self.root, label));
        let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(&key) else {
            return false;
        };
        mac.update(body);
        // verify_slice compares in constant time.
        mac.verify_slice(expected).is_ok()
    }

    /// HMAC-SHA256 of a backup file's body under the backup signing key
    /// (derived from the root key, see `BACKUP_LABEL`).
    pub fn backup_tag(&self, body: &[u8]) -> Vec<u8> {
        self.derived_tag(BACKUP_LABEL, body)
    }

    /// Whether `expected` is the backup tag of `body` (constant time).
    pub fn check_backup_tag(&self, body: &[u8], expected: &[u8]) -> bool {
        self.check_derived_tag(BACKUP_LABEL, body, expected)
    }

    /// Encrypt `plaintext` (AES-256-GCM, AAD `aad`) under the key
    /// HMAC-SHA256(root, `label`); for data that must not outlive the root
    /// key and needs no re-encryption on rotation (idempotency answers).
    pub fn seal_derived(&self, label: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, MemError> {
        let derived = Zeroizing::new(tag(&self.root, label));
        let blob = with_scratch_key(|k| {
            k.expose_mut().copy_from_slice(&derived[..crate::secure_mem::KEY_LEN]);
            aead::seal(k, aad, plaintext)
        });
        scrub_stack();
        blob
    }

    /// Decrypt what [`Keyring::seal_derived`] sealed with the same label and AAD.
    pub fn open_derived(&self, label: &[u8], aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, AeadError> {
        let derived = Zeroizing::new(tag(&self.root, label));
        let plain = with_scratch_key(|k| {
            k.expose_mut().copy_from_slice(&derived[..crate::secure_mem::KEY_LEN]);
            aead::open(k, aad, blob)
        })
        .map_err(|_| AeadError)?;
        scrub_stack();
        plain
    }

    /// HMAC-SHA256 of a cluster message under the cluster message key
    /// (derived from the root key, see `CLUSTER_LABEL`).
    pub fn cluster_tag(&self, message: &[u8]) -> Vec<u8> {
        self.derived_tag(CLUSTER_LABEL, message)
    }

    /// Whether `expected` is the cluster tag of `message` (constant time).
    pub fn check_cluster_tag(&self, message: &[u8], expected: &[u8]) -> bool {
        self.check_derived_tag(CLUSTER_LABEL, message, expected)
    }

    /// The root key, for tests that check it leaves memory on seal.
    #[cfg(test)]
    pub(crate) fn root_for_test(&self) -> &KeyBytes {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ValueRow {
        ValueRow {
            org_id: Uuid::new_v4(),
            env_id: Uuid::new_v4(),
            secret_id: Uuid::new_v4(),
            version_id: Uuid::new_v4(),
            version: 1,
        }
    }

    #[test]
    fn unlock_accepts_only_the_right_unseal_key() {
        let unseal = KeyBytes::random().expect("key");
        let (ring, blob) = Keyring::generate(&unseal).expect("init");
        let again = Keyring::unlock(&unseal, &blob).expect("right key unlocks");
        assert_eq!(again.root_for_test().expose(), ring.root_for_test().expose());
        let wrong = KeyBytes::random().expect("key");
        assert_eq!(Keyring::unlock(&wrong, &blob).err(), Some(UnlockError::WrongKey));
        let mut bad_tag = RootBlob {
            encrypted_root: blob.encrypted_root.clone(),
            verify_tag: blob.verify_tag.clone(),
        };
        bad_tag.verify_tag[0] ^= 1;
        assert_eq!(Keyring::unlock(&unseal, &bad_tag).err(), Some(UnlockError::WrongKey));
    }

    #[test]
    fn rewrapped_dek_opens_the_same_ciphertext_under_the_new_kek_only() {
        let old = KeyBytes::random().expect("key");
        let new = KeyBytes::random().expect("key");
        let a = row();
        let sealed = encrypt_value(&old, &a, b"value").expect("encrypt");
        let moved = rewrap_dek(&old, &new, &a.version_id, &sealed.wrapped_dek).expect("rewrap");
        assert_ne!(moved, sealed.wrapped_dek);
        let plain = decrypt_value(&new, &a, &sealed.ciphertext, &moved).expect("new KEK opens");
        assert_eq!(plain.as_slice(), b"value");
        assert!(decrypt_value(&old, &a, &sealed.ciphertext, &moved).is_err());
        // Bound to its row: another version id does not re-wrap it.
        assert!(rewrap_dek(&old, &new, &Uuid::new_v4(), &sealed.wrapped_dek).is_err());
    }

    #[test]
    fn webhook_secret_opens_only_for_its_org_and_hook() {
        let kek = KeyBytes::random().expect("key");
        let (org, hook) = (Uuid::new_v4(), Uuid::new_v4());
        let blob = seal_webhook_secret(&kek, &org, &hook, b"whsec_abc");
        assert!(!blob.windows(9).any(|w| w == b"whsec_abc"));
        let plain = open_webhook_secret(&kek, &org, &hook, &blob).expect("opens");
        assert_eq!(plain.as_slice(), b"whsec_abc");
        assert!(open_webhook_secret(&kek, &org, &Uuid::new_v4(), &blob).is_err());
        assert!(open_webhook_secret(&kek, &Uuid::new_v4(), &hook, &blob).is_err());
        let other = KeyBytes::random().expect("key");
        assert!(open_webhook_secret(&other, &org, &hook, &blob).is_err());
    }

    #[test]
    fn rotated_root_rewraps_keks_and_old_root_no_longer_opens_them() {
        let unseal = KeyBytes::random().expect("key");
        let (old, _) = Keyring::generate(&unseal).expect("init");
        let org = Uuid::new_v4();
        let blob = old.new_kek(org, 3).expect("kek");
        let (new, tag) = old.rotated().expect("rotate");
        let moved = old.rewrap_kek(&new, org, 3, &blob).expect("rewrap");
        let a = new.load_kek(org, 3, &moved).expect("new root opens");
        assert_eq!(a.expose(), old.cached_kek(org, 3).expect("cached").expose());
        assert!(old.load_kek(org, 3, &moved).is_err());
        assert!(old.rewrap_kek(&new, org, 4, &blob).is_err(), "AAD binds version");
        let root_blob = new.root_blob(&unseal);
        assert_eq!(root_blob.verify_tag, tag);
        assert!(check_unseal_key(&unseal, &root_blob));
        assert!(!check_unseal_key(&KeyBytes::random().expect("key"), &root_blob));
        let rk = KeyBytes::random().expect("key");
        let rt = recovery_tag(&rk);
        assert!(check_recovery_key(&rk, &rt));
        assert!(!check_recovery_key(&unseal, &rt));
    }

    #[test]
    fn kek_cache_is_bounded_and_evicted_keys_are_freed() {
        let unseal = KeyBytes::random().expect("key");
        let (ring, _) = Keyring::generate(&unseal).expect("init");
        let first = Uuid::new_v4();
        ring.new_kek(first, 1).expect("kek");
        let evicted = Arc::downgrade(&ring.cached_kek(first, 1).expect("cached"));
        let kept = Uuid::new_v4();
        ring.new_kek(kept, 1).expect("kek");
        for i in 0..(2 * KEK_CACHE_MAX) {
            // The one in use stays (least recently used goes first).
            if i % 16 == 0 {
                assert!(ring.cached_kek(kept, 1).is_some(), "recently used KEK evicted at {i}");
            }
            ring.new_kek(Uuid::new_v4(), 1).expect("kek");
            assert!(ring.keks.read().expect("lock").map.len() <= KEK_CACHE_MAX);
        }
        assert!(ring.cached_kek(first, 1).is_none(), "least recently used KEK evicted");
        // Nothing holds it any more: its KeyBytes was dropped, which zeroizes
        // and frees the locked page.
        assert!(evicted.upgrade().is_none(), "evicted KEK page still alive");
        // A KEK in use by a request survives eviction until that request ends.
        let busy = Uuid::new_v4();
        ring.new_kek(busy, 1).expect("kek");
        let held = ring.cached_kek(busy, 1).expect("cached");
        let weak = Arc::downgrade(&held);
        for _ in 0..KEK_CACHE_MAX {
            ring.new_kek(Uuid::new_v4(), 1).expect("kek");
        }
        assert!(ring.cached_kek(busy, 1).is_none());
        assert!(weak.upgrade().is_some(), "still held by its request");
        drop(held);
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn envelope_binds_value_to_its_row() {
        let unseal = KeyBytes::random().expect("key");
        let (ring, _) = Keyring::generate(&unseal).expect("init");
        let org = Uuid::new_v4();
        let wrapped = ring.new_kek(org, 1).expect("kek");
        let kek = ring.cached_kek(org, 1).expect("cached");
        let a = row();
        let sealed = encrypt_value(&kek, &a, b"s3cret").expect("encrypt");
        assert_eq!(
            decrypt_value(&kek, &a, &sealed.ciphertext, &sealed.wrapped_dek)
                .expect("decrypts")
                .as_slice(),
            b"s3cret"
        );
        // Same blobs presented as another version, secret or org: refused.
        for other in [
            ValueRow { version: 2, ..a },
            ValueRow {
                secret_id: Uuid::new_v4(),
                ..a
            },
            ValueRow {
                version_id: Uuid::new_v4(),
                ..a
            },
            ValueRow {
                org_id: Uuid::new_v4(),
                ..a
            },
        ] {
            assert!(decrypt_value(&kek, &other, &sealed.ciphertext, &sealed.wrapped_dek).is_err());
        }
        // A KEK blob only unwraps under its own org and version.
        assert!(ring.load_kek(org, 2, &wrapped).is_err());
        assert!(ring.load_kek(org, 1, &wrapped).is_ok());
    }
}
