//! [`split`] and [`combine`]: guarded wrappers around `blahaj`'s Shamir secret sharing.
//!
//! `blahaj` (like `sharks`, which it forks) accepts input that silently yields a wrong secret
//! or no protection at all. This module is the only place that calls it, and it refuses:
//!
//! * thresholds that make no sense (`K = 0`, `K > N`, `N = 0`), and `K = 1` with `N > 1`,
//!   which would make every share equal to the key (`K = N = 1` stays allowed as the dev-mode
//!   single share);
//! * empty input, index 0 and repeated indices when combining.
//!
//! Polynomial coefficients come straight from the operating system's RNG (`getrandom`), not
//! from a user-space RNG; an RNG failure is an error, never a panic or a weaker RNG.

use blahaj::Sharks;
use getrandom::rand_core::{Infallible, TryCryptoRng, TryRng};
use zeroize::{Zeroize, Zeroizing};

use crate::{KEY_LEN, Share};

/// Why [`split`] refused. Messages name the rule and the numbers given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// `N = 0`: there would be nothing to hand out.
    #[error("cannot split the key into 0 shares; ask for at least 1 share")]
    NoShares,
    /// `K = 0`: no share would be needed to recover the key.
    #[error(
        "threshold 0 with {shares} shares would need no share at all to recover the key; use a \
         threshold of at least 2"
    )]
    ZeroThreshold {
        /// Number of shares asked for.
        shares: u8,
    },
    /// `K > N`: the key could never be recovered.
    #[error(
        "threshold {threshold} is more than the {shares} shares asked for, so the key could never \
         be recovered; use a threshold of at most {shares}"
    )]
    ThresholdAboveShares {
        /// Threshold asked for.
        threshold: u8,
        /// Number of shares asked for.
        shares: u8,
    },
    /// `K = 1` with `N > 1`: every share would be the key itself.
    #[error(
        "threshold 1 with {shares} shares would put the key in clear in every share; use a \
         threshold of at least 2"
    )]
    ThresholdOne {
        /// Number of shares asked for.
        shares: u8,
    },
    /// The operating system's random number generator failed; no shares were produced.
    #[error("the operating system's random number generator failed; no shares were produced")]
    Rng,
    /// The Shamir library produced a share of an unexpected shape (index 0 or wrong length);
    /// no shares were produced. Not expected: it would mean `blahaj` changed behaviour.
    #[error("the Shamir library produced an unexpected share; no shares were produced")]
    Library,
}

/// Why [`combine`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CombineError {
    /// No shares were given.
    #[error("no shares were given")]
    Empty,
    /// A share has index 0 (never produced by [`split`]; it would be the key itself).
    #[error("a share has index 0, which is never valid")]
    ZeroIndex,
    /// Two shares have the same index; interpolating them would give a wrong key.
    #[error("two shares have index {x}; each share may be given only once")]
    DuplicateIndex {
        /// The repeated share index.
        x: u8,
    },
    /// The Shamir library refused the shares (not expected after the checks above).
    #[error("the Shamir library refused the shares: {0}")]
    Library(&'static str),
}

/// Splits `secret` into `shares` (N) shares, any `threshold` (K) of which recover it.
///
/// Rules: `1 <= K <= N <= 255`, and `K >= 2` unless `N = 1` (the dev-mode single share, which
/// holds the key in clear). Shares get indices `1..=N` in order.
///
/// # Errors
///
/// [`SplitError`] naming the violated rule, or [`SplitError::Rng`] if the OS RNG failed.
pub fn split(secret: &[u8; KEY_LEN], threshold: u8, shares: u8) -> Result<Vec<Share>, SplitError> {
    check_rules(threshold, shares)?;

    let mut rng = OsRng { failed: false };
    // `dealer_rng` draws every coefficient before returning; the iterator only evaluates.
    let dealer = Sharks(threshold).dealer_rng(secret, &mut rng);
    if rng.failed {
        return Err(SplitError::Rng);
    }

    let mut out = Vec::with_capacity(usize::from(shares));
    for share in dealer.take(usize::from(shares)) {
        // `blahaj::Share` wipes itself on drop; so does this copy of its bytes.
        let bytes = Zeroizing::new(Vec::<u8>::from(&share));
        let (x, y) = match bytes.split_first() {
            Some((&x, y)) if x != 0 && y.len() == KEY_LEN => (x, y),
            // blahaj evaluates at x = 1..=255 and keeps the secret's length; anything else
            // means the library changed under us.
            _ => return Err(SplitError::Library),
        };
        let mut y_arr = Zeroizing::new([0u8; KEY_LEN]);
        y_arr.copy_from_slice(y);
        out.push(Share::from_parts(x, &y_arr));
    }
    Ok(out)
}

fn check_rules(threshold: u8, shares: u8) -> Result<(), SplitError> {
    if shares == 0 {
        return Err(SplitError::NoShares);
    }
    if threshold == 0 {
        return Err(SplitError::ZeroThreshold { shares });
    }
    if threshold > shares {
        return Err(SplitError::ThresholdAboveShares { threshold, shares });
    }
    if threshold == 1 && shares > 1 {
        return Err(SplitError::ThresholdOne { shares });
    }
    Ok(())
}

/// Recovers the key from `shares` by interpolating over all of them.
///
/// Refuses empty input, index 0 and repeated indices. It cannot know the threshold or which
/// initialisation a share belongs to: given fewer shares than the threshold, or a share of
/// another initialisation, it returns a key that is simply wrong. The caller must check the
/// result against its verification tag.
///
/// # Errors
///
/// [`CombineError::Empty`], [`CombineError::ZeroIndex`] or [`CombineError::DuplicateIndex`].
pub fn combine(shares: &[Share]) -> Result<Zeroizing<[u8; KEY_LEN]>, CombineError> {
    combine_refs(shares.iter())
}

/// [`combine`] over borrowed shares (the ceremony and tests use subsets without copying).
pub(crate) fn combine_refs<'a, I>(shares: I) -> Result<Zeroizing<[u8; KEY_LEN]>, CombineError>
where
    I: Iterator<Item = &'a Share> + Clone,
{
    let mut seen = [false; 256];
    let mut count = 0usize;
    for share in shares.clone() {
        let x = share.x();
        if x == 0 {
            return Err(CombineError::ZeroIndex);
        }
        if seen[usize::from(x)] {
            return Err(CombineError::DuplicateIndex { x });
        }
        seen[usize::from(x)] = true;
        count += 1;
    }
    // Distinct non-zero indices: at most 255 shares, so the count fits the threshold type.
    let threshold = match u8::try_from(count) {
        Ok(0) => return Err(CombineError::Empty),
        Ok(n) => n,
        Err(_) => return Err(CombineError::Library("more than 255 shares")),
    };

    let mut points = Vec::with_capacity(count);
    for share in shares {
        let mut bytes = Zeroizing::new([0u8; 1 + KEY_LEN]);
        bytes[0] = share.x();
        bytes[1..].copy_from_slice(share.y());
        // `blahaj::Share` zeroizes on drop (feature `zeroize_memory`).
        let point = blahaj::Share::try_from(&bytes[..]).map_err(CombineError::Library)?;
        points.push(point);
    }
    // Passing the count as threshold makes blahaj require that many distinct indices, which
    // the checks above already guarantee.
    let recovered = Zeroizing::new(
        Sharks(threshold)
            .recover(points.iter())
            .map_err(|_| CombineError::Library("not enough distinct shares"))?,
    );
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if recovered.len() != KEY_LEN {
        return Err(CombineError::Library("recovered secret has the wrong length"));
    }
    key.copy_from_slice(&recovered);
    Ok(key)
}

/// The OS RNG as the infallible `CryptoRng` blahaj wants, without panicking: a failure fills
/// zeros and sets `failed`, and [`split`] then discards everything and reports
/// [`SplitError::Rng`].
struct OsRng {
    failed: bool,
}

impl OsRng {
    fn fill(&mut self, dst: &mut [u8]) {
        if getrandom::fill(dst).is_err() {
            dst.zeroize();
            self.failed = true;
        }
    }
}

impl TryRng for OsRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut buf = Zeroizing::new([0u8; 4]);
        self.fill(&mut buf[..]);
        Ok(u32::from_le_bytes(*buf))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut buf = Zeroizing::new([0u8; 8]);
        self.fill(&mut buf[..]);
        Ok(u64::from_le_bytes(*buf))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.fill(dst);
        Ok(())
    }
}

// Coefficients come from the OS RNG directly.
impl TryCryptoRng for OsRng {}

#[cfg(test)]
mod tests;
