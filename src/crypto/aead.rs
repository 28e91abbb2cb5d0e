//! The one AEAD blob format: AES-256-GCM blobs laid out as
//! `[format byte][12-byte random nonce][ciphertext][16-byte tag]`.
//!
//! Used by the server's key hierarchy (`keys/`, whose AADs bind a blob to
//! its row, see `keys::aad`) and by the CLI's own files (stored logins,
//! offline fallback), whose AADs bind a blob to its server address and
//! environment. A blob moved to another row or entry fails to open. Opening
//! never returns partial plaintext: tag failure is [`AeadError`] and the
//! caller names the blob.

use aes_gcm::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use zeroize::Zeroizing;

use crate::secure_mem::{KEY_LEN, KeyBytes};

/// First byte of every blob; bump it when the layout changes.
pub const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes a blob adds to its plaintext.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// A blob did not open: wrong key, wrong row (AAD), or altered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authenticated decryption failed")]
pub struct AeadError;

fn cipher(key: &KeyBytes) -> Aes256Gcm {
    // A 32-byte key always fits AES-256; new_from_slice cannot fail here.
    Aes256Gcm::new(key.expose().into())
}

fn fresh_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    // The OS RNG failing is not recoverable for a key manager.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut nonce).expect("OS random number generator failed");
    nonce
}

/// Encrypt `plaintext` under `key`, bound to `aad`.
pub fn seal(key: &KeyBytes, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce = fresh_nonce();
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.push(FORMAT_V1);
    out.extend_from_slice(&nonce);
    // GCM only fails on inputs over 64 GiB; values are capped far below that.
    #[allow(clippy::expect_used)]
    let ct = cipher(key)
        .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad })
        .expect("AES-GCM input within limits");
    out.extend_from_slice(&ct);
    out
}

/// A blob's nonce, ciphertext and tag.
struct Parts<'a> {
    nonce: Nonce<aes_gcm::aead::consts::U12>,
    ct: &'a [u8],
    tag: Tag,
}

/// Split a blob into nonce, ciphertext and tag, checking the format byte.
fn parts(blob: &[u8]) -> Result<Parts<'_>, AeadError> {
    if blob.len() < OVERHEAD || blob[0] != FORMAT_V1 {
        return Err(AeadError);
    }
    let (nonce, rest) = blob[1..].split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    Ok(Parts {
        nonce: Nonce::try_from(nonce).map_err(|_| AeadError)?,
        ct,
        tag: Tag::try_from(tag).map_err(|_| AeadError)?,
    })
}

/// Decrypt a blob made by [`seal`] with the same key and AAD.
pub fn open(key: &KeyBytes, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, AeadError> {
    let p = parts(blob)?;
    let mut buf = Zeroizing::new(p.ct.to_vec());
    cipher(key)
        .decrypt_inout_detached(&p.nonce, aad, buf.as_mut_slice().into(), &p.tag)
        .map_err(|_| AeadError)?;
    Ok(buf)
}

/// Encrypt a key under another key (key wrapping).
pub fn wrap_key(wrapping: &KeyBytes, aad: &[u8], key: &KeyBytes) -> Vec<u8> {
    seal(wrapping, aad, key.expose())
}

/// Decrypt a wrapped key straight into locked memory: the plaintext key
/// never touches an ordinary heap buffer.
pub fn unwrap_key(wrapping: &KeyBytes, aad: &[u8], blob: &[u8]) -> Result<KeyBytes, AeadError> {
    let mut key = KeyBytes::zeroed().map_err(|_| AeadError)?;
    unwrap_key_into(wrapping, aad, blob, &mut key)?;
    Ok(key)
}

/// [`unwrap_key`] into a page the caller owns (e.g. the thread's scratch).
pub fn unwrap_key_into(wrapping: &KeyBytes, aad: &[u8], blob: &[u8], out: &mut KeyBytes) -> Result<(), AeadError> {
    let p = parts(blob)?;
    if p.ct.len() != KEY_LEN {
        return Err(AeadError);
    }
    out.expose_mut().copy_from_slice(p.ct);
    cipher(wrapping)
        .decrypt_inout_detached(&p.nonce, aad, out.expose_mut().as_mut_slice().into(), &p.tag)
        .map_err(|_| AeadError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_aad_binding() {
        let key = KeyBytes::random().expect("key");
        let blob = seal(&key, b"row-1", b"hello");
        assert_eq!(blob.len(), 5 + OVERHEAD);
        assert_eq!(open(&key, b"row-1", &blob).expect("opens").as_slice(), b"hello");
        assert_eq!(open(&key, b"row-2", &blob), Err(AeadError));
        let other = KeyBytes::random().expect("key");
        assert_eq!(open(&other, b"row-1", &blob), Err(AeadError));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let key = KeyBytes::random().expect("key");
        let blob = seal(&key, b"aad", b"some value");
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(open(&key, b"aad", &bad).is_err(), "flip at {i} accepted");
        }
        assert!(open(&key, b"aad", &blob[..OVERHEAD - 1]).is_err());
    }

    #[test]
    fn wrapped_keys_unwrap_into_locked_memory() {
        let kek = KeyBytes::random().expect("key");
        let dek = KeyBytes::random().expect("key");
        let blob = wrap_key(&kek, b"dek", &dek);
        let back = unwrap_key(&kek, b"dek", &blob).expect("unwraps");
        assert_eq!(back.expose(), dek.expose());
        assert!(unwrap_key(&kek, b"kek", &blob).is_err());
    }
}
