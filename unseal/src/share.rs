//! [`Share`]: one custodian's Shamir share, its checksummed byte format and its text forms.
//!
//! Byte format ([`SHARE_LEN`] = 37 bytes): `[x][y0..y31][c0..c3]`, where `x` is the share index
//! (never 0), `y` the 32 share bytes and `c` the first 4 bytes of
//! `SHA-256(b"coffer-share-v1" || x || y)`. Text forms: lower-case hex (74 characters) or
//! standard base64 with padding; parsing also takes upper-case hex and unpadded base64.
//!
//! The checksum exists so a custodian learns about a typo *before* the ceremony goes on, with
//! a message they can act on. It is deliberately unkeyed and not bound to an initialisation:
//! telling shares of another initialisation apart is the server's job (verification tag).
//!
//! Invariants: a `Share` always has `x != 0`; its `y` lives in one boxed, zeroize-on-drop
//! buffer, so moving a `Share` copies a pointer, not the secret. Nothing in this module puts
//! share bytes into an error, a `Debug` output or a panic.

use core::fmt;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::{KEY_LEN, SHARE_LEN, codec};

/// Domain separation prefix of the share checksum; the `v1` names the format.
const CHECKSUM_DOMAIN: &[u8] = b"coffer-share-v1";
/// Number of checksum bytes at the end of an encoded share.
const CHECKSUM_LEN: usize = SHARE_LEN - 1 - KEY_LEN;
/// Length of the hex form.
const HEX_LEN: usize = SHARE_LEN * 2;
/// Length of the padded base64 form: 4 characters per started group of 3 bytes.
const BASE64_LEN: usize = SHARE_LEN.div_ceil(3) * 4;

/// Standard alphabet; takes input with or without padding, still rejects non-canonical
/// trailing bits (so every share has exactly one unpadded and one padded base64 form).
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a text share was refused. Every message tells a custodian what to check, and none
/// contains share bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// The input was empty or only whitespace.
    #[error("the share is empty; paste the whole share")]
    Empty,
    /// The input is neither hex nor standard base64.
    #[error(
        "the share is neither hex nor base64; check that it was copied completely and without \
         extra characters"
    )]
    NotEncoded,
    /// The input decodes, but not to [`SHARE_LEN`] bytes.
    #[error(
        "the share decodes to {got} bytes, expected {SHARE_LEN} bytes; was it truncated or from \
         another system?"
    )]
    WrongLength {
        /// Number of bytes the input decoded to (for odd-length hex: whole bytes only).
        got: usize,
    },
    /// The checksum in the last 4 bytes does not match the rest of the share.
    #[error("the share's checksum does not match: the share was mistyped or altered")]
    Checksum,
    /// The share has index (x) 0, which [`crate::split`] never produces: a share at x = 0
    /// would be the key itself.
    #[error("the share has index 0, which is never valid; the share was altered")]
    ZeroIndex,
    /// The exact same share was already given in this ceremony.
    #[error("this share was already submitted in this ceremony")]
    Duplicate,
    /// A different share with the same index was already given in this ceremony, so one of the
    /// two belongs to another initialisation (both passed their checksum).
    #[error(
        "a share with index {x} was already submitted in this ceremony, with different contents; \
         one of the two is from another initialisation"
    )]
    DuplicateIndex {
        /// The share index (x) both shares have.
        x: u8,
    },
    /// The share's index is higher than the number of shares the key was split into, so it
    /// belongs to another initialisation.
    #[error(
        "the share has index {x} but the key was split into {shares} shares; it is from another \
         initialisation"
    )]
    IndexOutOfRange {
        /// The share index (x).
        x: u8,
        /// Number of shares the ceremony's key was split into.
        shares: u8,
    },
    /// Combining the collected shares failed. [`crate::Ceremony::submit`] only lets valid,
    /// distinct shares in, so this is not expected; the ceremony was reset.
    #[error("combining the shares failed ({0}); the ceremony was reset, start again")]
    Combine(#[from] crate::CombineError),
}

/// One custodian's share of the key: index `x` (never 0) and 32 share bytes `y`.
///
/// There is deliberately no `Clone`, `PartialEq` or serde support, and `Debug` prints only the
/// index (`Share { x: 3, .. }`). Use [`Share::to_hex`] or [`Share::to_base64`] to hand it out.
pub struct Share {
    x: u8,
    y: Box<Zeroizing<[u8; KEY_LEN]>>,
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share").field("x", &self.x).finish_non_exhaustive()
    }
}

impl Share {
    /// Builds a share from its parts. `x` must not be 0; callers check (split never produces
    /// 0, parse rejects it).
    pub(crate) fn from_parts(x: u8, y: &[u8; KEY_LEN]) -> Share {
        let mut boxed = Box::new(Zeroizing::new([0u8; KEY_LEN]));
        boxed.copy_from_slice(y);
        Share { x, y: boxed }
    }

    /// The share index (the x coordinate, 1..=255). Not secret.
    #[must_use]
    pub fn x(&self) -> u8 {
        self.x
    }

    /// The share bytes (the y coordinates). Secret.
    pub(crate) fn y(&self) -> &[u8; KEY_LEN] {
        &self.y
    }

    /// Parses a share given as hex (74 characters, either case) or standard base64 (with or
    /// without padding) of the 37 share bytes, ignoring surrounding whitespace.
    ///
    /// Checks, in order: encoding, length, checksum, then index 0 (a typo that lands on x = 0
    /// is reported as a checksum mismatch, which is what it is).
    ///
    /// # Errors
    ///
    /// [`ShareError::Empty`], [`ShareError::NotEncoded`], [`ShareError::WrongLength`],
    /// [`ShareError::Checksum`] or [`ShareError::ZeroIndex`].
    pub fn parse(s: &str) -> Result<Share, ShareError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ShareError::Empty);
        }
        let bytes = decode_text(s.as_bytes())?;
        let bytes: &[u8; SHARE_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| ShareError::WrongLength { got: bytes.len() })?;
        Share::from_encoded(bytes)
    }

    /// Validates the binary form: checksum, then index.
    pub(crate) fn from_encoded(bytes: &[u8; SHARE_LEN]) -> Result<Share, ShareError> {
        let (body, sum) = bytes.split_at(SHARE_LEN - CHECKSUM_LEN);
        let (x, y) = (body[0], &body[1..]);
        let expected = checksum(x, y);
        if !bool::from(expected.ct_eq(sum)) {
            return Err(ShareError::Checksum);
        }
        if x == 0 {
            return Err(ShareError::ZeroIndex);
        }
        let mut share = Share::from_parts(x, &[0u8; KEY_LEN]);
        share.y.copy_from_slice(y);
        Ok(share)
    }

    /// The binary form `[x][y][checksum]`.
    pub(crate) fn to_bytes(&self) -> Zeroizing<[u8; SHARE_LEN]> {
        let mut out = Zeroizing::new([0u8; SHARE_LEN]);
        out[0] = self.x;
        out[1..1 + KEY_LEN].copy_from_slice(&self.y[..]);
        out[1 + KEY_LEN..].copy_from_slice(&checksum(self.x, &self.y[..]));
        out
    }

    /// Constant-time equality of the whole share (index and bytes).
    pub(crate) fn ct_eq(&self, other: &Share) -> Choice {
        self.x.ct_eq(&other.x) & self.y[..].ct_eq(&other.y[..])
    }

    /// The share as 74 lower-case hex characters.
    #[must_use]
    pub fn to_hex(&self) -> Zeroizing<String> {
        let bytes = self.to_bytes();
        let mut buf = Zeroizing::new([0u8; HEX_LEN]);
        let encoded = codec::hex_encode(&bytes[..], &mut buf[..]);
        debug_assert!(encoded, "HEX_LEN is twice SHARE_LEN");
        // Hex digits are ASCII, so each byte is one char; pushing into a string with the exact
        // capacity never reallocates (which would leave a copy behind).
        let mut out = Zeroizing::new(String::with_capacity(HEX_LEN));
        out.extend(buf.iter().map(|&b| char::from(b)));
        out
    }

    /// The share as standard base64 with padding (52 characters).
    #[must_use]
    pub fn to_base64(&self) -> Zeroizing<String> {
        let bytes = self.to_bytes();
        // Encode into a wiped buffer rather than through `encode_string`, whose chunked encoder
        // leaves a copy in an unwiped stack buffer.
        let mut buf = Zeroizing::new([0u8; BASE64_LEN]);
        let written = STANDARD.encode_slice(&bytes[..], &mut buf[..]).unwrap_or(0);
        debug_assert_eq!(written, BASE64_LEN, "BASE64_LEN fits SHARE_LEN");
        let mut out = Zeroizing::new(String::with_capacity(BASE64_LEN));
        out.extend(buf[..written].iter().map(|&b| char::from(b)));
        out
    }
}

/// First [`CHECKSUM_LEN`] bytes of `SHA-256(CHECKSUM_DOMAIN || x || y)`.
fn checksum(x: u8, y: &[u8]) -> [u8; CHECKSUM_LEN] {
    // The hasher wipes its buffer (which holds y) on drop (sha2 feature `zeroize`). The digest
    // is a one-way image of the share, so it is not wiped.
    let digest = Sha256::new()
        .chain_update(CHECKSUM_DOMAIN)
        .chain_update([x])
        .chain_update(y)
        .finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&digest[..CHECKSUM_LEN]);
    out
}

/// Decodes hex or base64 into a zeroizing buffer of whatever length the input encodes.
///
/// Both readings are tried where both are possible, and a reading of exactly [`SHARE_LEN`]
/// bytes wins (an unpadded base64 share can, rarely, consist of hex digits only). Otherwise a
/// hex-looking input is reported with its hex length, so truncated hex reads as "truncated".
fn decode_text(s: &[u8]) -> Result<Zeroizing<Vec<u8>>, ShareError> {
    match (decode_hex(s), decode_base64(s)) {
        (Some(hex), _) if hex.len() == SHARE_LEN => Ok(hex),
        (_, Some(b64)) if b64.len() == SHARE_LEN => Ok(b64),
        (Some(hex), _) => Ok(hex),
        (None, Some(b64)) => Ok(b64),
        // Odd number of hex digits: most likely hex with a character lost.
        (None, None) if !s.len().is_multiple_of(2) && all_hex_digits(s) => {
            Err(ShareError::WrongLength { got: s.len() / 2 })
        }
        (None, None) => Err(ShareError::NotEncoded),
    }
}

fn decode_hex(s: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Zeroizing::new(vec![0u8; s.len() / 2]);
    codec::hex_decode(s, &mut out).then_some(out)
}

fn decode_base64(s: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    // Decoded base64 is never longer than its input.
    let mut out = Zeroizing::new(vec![0u8; s.len()]);
    let n = BASE64_LENIENT.decode_slice(s, &mut out[..]).ok()?;
    out.truncate(n);
    Some(out)
}

/// Whether every byte is a hex digit; looks at every byte (no early exit) and uses the
/// branch-free nibble decoder, since the input is secret.
fn all_hex_digits(s: &[u8]) -> bool {
    let mut scratch = Zeroizing::new(vec![0u8; s.len() / 2 + 1]);
    let mut padded = Zeroizing::new(Vec::with_capacity(s.len() + 1));
    padded.extend_from_slice(s);
    padded.push(b'0');
    codec::hex_decode(&padded, &mut scratch)
}

#[cfg(test)]
mod tests;
