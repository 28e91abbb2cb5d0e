//! [`Ceremony`]: collects custodians' shares, one submission at a time, until the threshold.
//!
//! Invariants:
//! * The collected shares are valid (checksum, index in `1..=N`) and pairwise distinct in index,
//!   so [`crate::combine`] never sees a duplicate or index 0.
//! * A refused submission (malformed, duplicate, out of range) leaves the ceremony exactly as it
//!   was: a custodian's typo must not cost the others their submissions.
//! * Completion and [`Ceremony::reset`] replace the whole collection state at once (the old
//!   value is dropped, which wipes its shares) and start a fresh nonce; nothing is reset field
//!   by field.
//! * Duplicates are found by comparing whole shares in constant time against every collected
//!   share, so timing does not tell which collected share matched or how closely.
//!
//! The ceremony does not decide whether the recovered key is right: the server checks it
//! against its verification tag.

use core::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use subtle::Choice;
use zeroize::Zeroizing;

use crate::shamir::combine_refs;
use crate::{KEY_LEN, Share, ShareError};

/// An unseal ceremony for a key split into `shares` (N) shares with threshold `threshold` (K).
///
/// `Debug` shows the threshold, share count, progress and nonce, never share bytes.
pub struct Ceremony {
    threshold: u8,
    shares: u8,
    /// Accepted shares, pairwise distinct in index; never more than `threshold` (the
    /// threshold-th share completes the ceremony).
    collected: Vec<Share>,
    /// Identifies this round of collection; changes on completion and reset, so a client can
    /// tell that the shares it submitted were dropped.
    nonce: String,
}

impl fmt::Debug for Ceremony {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ceremony")
            .field("threshold", &self.threshold)
            .field("shares", &self.shares)
            .field("progress", &self.progress())
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl Ceremony {
    /// Starts a ceremony with a fresh random nonce.
    ///
    /// `threshold` and `shares` are those the key was [`crate::split`] with. Shares with an
    /// index above `shares` are refused as belonging to another initialisation. A `threshold`
    /// of 0 (which `split` never accepts) is treated as 1.
    #[must_use]
    pub fn new(threshold: u8, shares: u8) -> Ceremony {
        Ceremony {
            threshold,
            shares,
            collected: Vec::with_capacity(usize::from(threshold)),
            nonce: fresh_nonce(),
        }
    }

    /// Number of shares needed (K).
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// Number of shares the key was split into (N).
    pub fn shares(&self) -> u8 {
        self.shares
    }

    /// Number of shares accepted so far in this round.
    pub fn progress(&self) -> u8 {
        // Never more than the threshold (a u8) are kept.
        u8::try_from(self.collected.len()).unwrap_or(u8::MAX)
    }

    /// This round's nonce, a UUID-v4-looking string. Not secret.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Parses and adds one share.
    ///
    /// Returns `Ok(None)` while fewer than the threshold have been accepted, and
    /// `Ok(Some(key))` on the threshold-th share; the collected shares are then wiped, a fresh
    /// nonce is started and progress is back to 0. The key is only a candidate: check it against
    /// the verification tag.
    ///
    /// A malformed share, a share already submitted, or a share whose index is taken or out of
    /// range is refused with an error and leaves the ceremony unchanged.
    ///
    /// # Errors
    ///
    /// Any [`Share::parse`] error, [`ShareError::IndexOutOfRange`], [`ShareError::Duplicate`] or
    /// [`ShareError::DuplicateIndex`] (ceremony unchanged); [`ShareError::Combine`] is not
    /// expected and leaves the ceremony reset.
    pub fn submit(&mut self, share: &str) -> Result<Option<Zeroizing<[u8; KEY_LEN]>>, ShareError> {
        let share = Share::parse(share)?;
        if share.x() > self.shares {
            return Err(ShareError::IndexOutOfRange {
                x: share.x(),
                shares: self.shares,
            });
        }
        self.check_not_submitted(&share)?;

        self.collected.push(share);
        if self.collected.len() < usize::from(self.threshold.max(1)) {
            return Ok(None);
        }
        // Swap in a fresh round first, so the ceremony is reset whatever combine returns; the
        // old round (and its shares) is wiped when `done` drops.
        let fresh = Ceremony::new(self.threshold, self.shares);
        let done = core::mem::replace(self, fresh);
        let key = combine_refs(done.collected.iter())?;
        Ok(Some(key))
    }

    /// Drops the collected shares (wiping them) and starts a fresh nonce.
    pub fn reset(&mut self) {
        *self = Ceremony::new(self.threshold, self.shares);
    }

    /// Refuses a share equal to a collected one, or with the index of a collected one.
    ///
    /// Compares against every collected share, whole share in constant time; the index is not
    /// secret.
    fn check_not_submitted(&self, share: &Share) -> Result<(), ShareError> {
        let mut same_share = Choice::from(0);
        let mut same_index = false;
        for collected in &self.collected {
            same_share |= collected.ct_eq(share);
            same_index |= collected.x() == share.x();
        }
        if bool::from(same_share) {
            return Err(ShareError::Duplicate);
        }
        if same_index {
            return Err(ShareError::DuplicateIndex { x: share.x() });
        }
        Ok(())
    }
}

/// 16 random bytes formatted as a UUID v4 (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`).
///
/// If the OS RNG fails (it does not, on a booted Linux), the nonce is derived from the clock
/// and a process-wide counter instead: still distinct per round, just not unpredictable. The
/// nonce is not secret and protects nothing by being random; refusing to start a ceremony over
/// it would only block unsealing.
fn fresh_nonce() -> String {
    static FALLBACK_COUNTER: AtomicU64 = AtomicU64::new(0);

    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let count = FALLBACK_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let digest = Sha256::new()
            .chain_update(b"coffer-ceremony-nonce-fallback")
            .chain_update(count.to_le_bytes())
            .chain_update(nanos.to_le_bytes())
            .finalize();
        bytes.copy_from_slice(&digest[..16]);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant

    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{b:02x}"); // writing to a String cannot fail
    }
    out
}

#[cfg(test)]
mod tests;
