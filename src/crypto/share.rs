//! The client side of one-time share links (docs/share-links.md): what
//! `coffer share create` encrypts and `coffer share open` decrypts. The
//! dashboard's `/s/<id>` page does the same in the browser with WebCrypto
//! (`src/http/ui/assets/app.js`, section "share links"); the two must agree
//! byte for byte:
//!
//! - fragment key `F`: 32 random bytes, base64url (no padding) in the URL
//!   fragment `#k=<F>` (`#k=<F>&p=1` when a passphrase is needed). It never
//!   reaches the server: browsers do not send fragments, and the CLI sends
//!   only the link id.
//! - content key `K`: `F` itself without a passphrase; with one,
//!   `HMAC-SHA256(key = F, msg = "coffer-share-v1 passphrase" ‖ 0x00 ‖
//!   argon2id(passphrase, salt, m, t, p, 32 bytes))` — both factors needed.
//!   The argon2id parameters and salt travel with the link (`kdf`:
//!   `argon2id$v=19$m=<KiB>,t=<n>,p=<n>$<salt base64url>`, or `none`), so
//!   they can evolve.
//! - ciphertext: the AEAD blob of [`super::aead`] (`[1][nonce 12][ct][tag
//!   16]`, AES-256-GCM), AAD = `"coffer-share-v1|" ‖ kdf`: a server that
//!   swapped the parameters (to weaken the passphrase) breaks the tag.
//!
//! The server sees the ciphertext and `kdf`, never `F`, the passphrase or
//! the value.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::secure_mem::KeyBytes;

/// `kdf` of a link without passphrase.
pub const KDF_NONE: &str = "none";
/// argon2id memory of new links, KiB (OWASP: 19 MiB, t = 2, p = 1).
pub const ARGON2_M_KIB: u32 = 19 * 1024;
/// argon2id passes of new links.
pub const ARGON2_T: u32 = 2;
/// argon2id lanes of new links.
pub const ARGON2_P: u32 = 1;
/// Largest argon2id memory a link may ask a client for (KiB): a link must
/// not make the opener's browser allocate gigabytes.
pub const ARGON2_M_MAX: u32 = 256 * 1024;
/// Most argon2id passes a link may ask for.
pub const ARGON2_T_MAX: u32 = 10;
/// Most lanes a link may ask for.
pub const ARGON2_P_MAX: u32 = 4;

const AAD_PREFIX: &[u8] = b"coffer-share-v1|";
const PASSPHRASE_INFO: &[u8] = b"coffer-share-v1 passphrase\0";

/// Why a share could not be made or opened (no secret in the message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShareCryptoError {
    /// The `kdf` string is not one this client understands.
    #[error("unsupported key derivation {0:?}")]
    Kdf(String),
    /// The URL fragment is not a share key.
    #[error("the link's key (after #) is missing or malformed")]
    Fragment,
    /// Wrong passphrase, wrong key, or altered ciphertext.
    #[error("the value could not be decrypted: wrong passphrase, or the link was altered")]
    Decrypt,
    /// The link needs a passphrase and none was given.
    #[error("this link needs a passphrase")]
    PassphraseRequired,
    /// The OS random generator or locked memory failed.
    #[error("internal: {0}")]
    Internal(&'static str),
}

/// argon2id parameters and salt as parsed from a `kdf` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argon2Kdf {
    /// memory, KiB
    pub m: u32,
    /// passes
    pub t: u32,
    /// lanes
    pub p: u32,
    /// salt (16 bytes for new links)
    pub salt: Vec<u8>,
}

impl Argon2Kdf {
    /// Fresh parameters with a random salt.
    pub fn fresh() -> Result<Argon2Kdf, ShareCryptoError> {
        let mut salt = vec![0u8; 16];
        getrandom::fill(&mut salt).map_err(|_| ShareCryptoError::Internal("random generator failed"))?;
        Ok(Argon2Kdf {
            m: ARGON2_M_KIB,
            t: ARGON2_T,
            p: ARGON2_P,
            salt,
        })
    }

    /// The `kdf` string.
    pub fn encode(&self) -> String {
        format!(
            "argon2id$v=19$m={},t={},p={}${}",
            self.m,
            self.t,
            self.p,
            B64.encode(&self.salt)
        )
    }
}

/// Parse a `kdf` string: None for [`KDF_NONE`]; parameters within the
/// bounds above, else [`ShareCryptoError::Kdf`].
pub fn parse_kdf(kdf: &str) -> Result<Option<Argon2Kdf>, ShareCryptoError> {
    if kdf == KDF_NONE {
        return Ok(None);
    }
    let bad = || ShareCryptoError::Kdf(kdf.chars().take(120).collect());
    let mut parts = kdf.split('$');
    if parts.next() != Some("argon2id") || parts.next() != Some("v=19") {
        return Err(bad());
    }
    let params = parts.next().ok_or_else(bad)?;
    let salt = B64.decode(parts.next().ok_or_else(bad)?).map_err(|_| bad())?;
    if parts.next().is_some() || !(8..=64).contains(&salt.len()) {
        return Err(bad());
    }
    let mut vals = [None::<u32>; 3];
    for (i, (name, part)) in ["m", "t", "p"].iter().zip(params.split(',')).enumerate() {
        let v = part
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('='))
            .ok_or_else(bad)?;
        vals[i] = Some(v.parse().map_err(|_| bad())?);
    }
    let [Some(m), Some(t), Some(p)] = vals else {
        return Err(bad());
    };
    // p is bounded before `8 * p` is taken: a huge p overflowed it (a
    // panic with overflow checks; found by the share_link fuzz target).
    if params.split(',').count() != 3
        || !(1..=ARGON2_P_MAX).contains(&p)
        || !(8 * p..=ARGON2_M_MAX).contains(&m)
        || !(1..=ARGON2_T_MAX).contains(&t)
    {
        return Err(bad());
    }
    Ok(Some(Argon2Kdf { m, t, p, salt }))
}

fn aad(kdf: &str) -> Vec<u8> {
    [AAD_PREFIX, kdf.as_bytes()].concat()
}

/// The content key from the fragment key and, with a `kdf`, the passphrase.
fn content_key(
    fragment: &KeyBytes,
    kdf: Option<&Argon2Kdf>,
    passphrase: Option<&str>,
) -> Result<KeyBytes, ShareCryptoError> {
    let Some(kdf) = kdf else {
        return KeyBytes::from_slice(fragment.expose()).ok_or(ShareCryptoError::Internal("locked memory"));
    };
    let passphrase = passphrase.ok_or(ShareCryptoError::PassphraseRequired)?;
    let params = Params::new(kdf.m, kdf.t, kdf.p, Some(32)).map_err(|_| ShareCryptoError::Kdf(kdf.encode()))?;
    let mut stretched = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), &kdf.salt, &mut stretched[..])
        .map_err(|_| ShareCryptoError::Kdf(kdf.encode()))?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(fragment.expose())
        .map_err(|_| ShareCryptoError::Internal("hmac key"))?;
    mac.update(PASSPHRASE_INFO);
    mac.update(&stretched[..]);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    KeyBytes::from_slice(&out[..]).ok_or(ShareCryptoError::Internal("locked memory"))
}

/// A value encrypted for a new link.
pub struct Sealed {
    /// the blob the server stores
    pub ciphertext: Vec<u8>,
    /// the `kdf` string the server stores
    pub kdf: String,
    /// the URL fragment (without `#`): the key, and `&p=1` with a passphrase
    pub fragment: Zeroizing<String>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed").field("kdf", &self.kdf).finish_non_exhaustive()
    }
}

/// Encrypt `value` under a fresh fragment key (and `passphrase`, if any).
pub fn seal(value: &[u8], passphrase: Option<&str>) -> Result<Sealed, ShareCryptoError> {
    let fragment = KeyBytes::random().map_err(|_| ShareCryptoError::Internal("random key"))?;
    let kdf = passphrase.map(|_| Argon2Kdf::fresh()).transpose()?;
    let kdf_text = kdf.as_ref().map_or_else(|| KDF_NONE.to_owned(), Argon2Kdf::encode);
    let key = content_key(&fragment, kdf.as_ref(), passphrase)?;
    let ciphertext = super::aead::seal(&key, &aad(&kdf_text), value);
    let mut text = Zeroizing::new(format!("k={}", B64.encode(fragment.expose())));
    if kdf.is_some() {
        text.push_str("&p=1");
    }
    Ok(Sealed {
        ciphertext,
        kdf: kdf_text,
        fragment: text,
    })
}

/// A parsed URL fragment: the key and whether a passphrase is needed.
pub struct Fragment {
    key: KeyBytes,
    /// the link says it needs a passphrase
    pub passphrase: bool,
}

impl std::fmt::Debug for Fragment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fragment")
            .field("passphrase", &self.passphrase)
            .finish_non_exhaustive()
    }
}

/// Parse the part of a link after `#`.
pub fn parse_fragment(fragment: &str) -> Result<Fragment, ShareCryptoError> {
    let mut key = None;
    let mut passphrase = false;
    for pair in fragment.split('&') {
        match pair.split_once('=') {
            Some(("k", v)) => {
                let raw = Zeroizing::new(B64.decode(v).map_err(|_| ShareCryptoError::Fragment)?);
                if raw.len() != 32 {
                    return Err(ShareCryptoError::Fragment);
                }
                key = Some(KeyBytes::from_slice(&raw).ok_or(ShareCryptoError::Internal("locked memory"))?);
            }
            Some(("p", "1")) => passphrase = true,
            _ => {}
        }
    }
    Ok(Fragment {
        key: key.ok_or(ShareCryptoError::Fragment)?,
        passphrase,
    })
}

/// Decrypt a link's ciphertext with its fragment (and passphrase).
pub fn open(
    fragment: &Fragment,
    kdf: &str,
    passphrase: Option<&str>,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ShareCryptoError> {
    let parsed = parse_kdf(kdf)?;
    let key = content_key(&fragment.key, parsed.as_ref(), passphrase)?;
    super::aead::open(&key, &aad(kdf), ciphertext).map_err(|_| ShareCryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cheap(p: &str) -> Result<Sealed, ShareCryptoError> {
        seal(p.as_bytes(), Some("correct horse"))
    }

    #[test]
    fn round_trip_without_and_with_passphrase() {
        let s = seal(b"hunter2", None).unwrap();
        assert_eq!(s.kdf, "none");
        let f = parse_fragment(&s.fragment).unwrap();
        assert!(!f.passphrase);
        assert_eq!(&open(&f, &s.kdf, None, &s.ciphertext).unwrap()[..], b"hunter2");

        let s = cheap("pw value").unwrap();
        let f = parse_fragment(&s.fragment).unwrap();
        assert!(f.passphrase && s.fragment.ends_with("&p=1"));
        assert!(parse_kdf(&s.kdf).unwrap().is_some());
        assert_eq!(
            &open(&f, &s.kdf, Some("correct horse"), &s.ciphertext).unwrap()[..],
            b"pw value"
        );
        assert_eq!(
            open(&f, &s.kdf, Some("wrong"), &s.ciphertext).unwrap_err(),
            ShareCryptoError::Decrypt
        );
        assert_eq!(
            open(&f, &s.kdf, None, &s.ciphertext).unwrap_err(),
            ShareCryptoError::PassphraseRequired
        );
        // The fragment alone, with the parameters stripped: no value.
        assert!(open(&f, "none", None, &s.ciphertext).is_err());
    }

    #[test]
    fn kdf_parameters_are_bound_and_bounded() {
        let s = cheap("v").unwrap();
        let f = parse_fragment(&s.fragment).unwrap();
        let weaker = s.kdf.replace("t=2", "t=1");
        assert_eq!(
            open(&f, &weaker, Some("correct horse"), &s.ciphertext).unwrap_err(),
            ShareCryptoError::Decrypt
        );
        for bad in [
            "argon2id$v=19$m=99999999,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA",
            "argon2id$v=19$m=19456,t=0,p=1$AAAAAAAAAAAAAAAAAAAAAA",
            "argon2id$v=19$m=19456,t=2$AAAAAAAAAAAAAAAAAAAAAA",
            "argon2i$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA",
            "argon2id$v=19$m=19456,t=2,p=1$",
            // 8 * p overflows u32 (fuzz/corpus/share_link/kdf-p-overflow)
            "argon2id$v=19$m=19456,t=2,p=999999990$AAAAAAAAAAAAAAAAAAAAAA",
            "scrypt",
        ] {
            assert!(parse_kdf(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_fragments_are_refused() {
        for bad in ["", "k=", "k=abc", "x=1", "k=!!!!"] {
            assert!(parse_fragment(bad).is_err(), "{bad}");
        }
    }
}
