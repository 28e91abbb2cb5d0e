//! Shamir K-of-N sharing of coffer's 32-byte root key, the share format custodians hold,
//! and the unseal ceremony that collects their shares.
//!
//! # What this crate owns
//!
//! * [`split`] and [`combine`]: Shamir secret sharing over GF(2^8), done by the `blahaj` crate
//!   (the maintained fork of `sharks`). `blahaj` silently "recovers" a wrong secret from
//!   duplicate shares, shares with index 0 or tampered shares, and a threshold of 1 puts the
//!   secret in clear in every share; the wrappers here refuse all of those.
//! * [`Share`]: one custodian's share, `[x][y0..y31][c0..c3]` ([`SHARE_LEN`] bytes) where
//!   `c` is the first 4 bytes of `SHA-256(b"coffer-share-v1" || x || y)`, written as hex or
//!   standard base64. The checksum only catches typos and truncation: it is not keyed and not
//!   bound to one initialisation, so a share from another initialisation parses fine and only
//!   the server's verification tag (checked after [`combine`]) tells it apart.
//! * [`Ceremony`]: collects shares one at a time until the threshold is reached, rejecting
//!   malformed and duplicate shares without losing the shares already given.
//!
//! # Example
//!
//! ```
//! use unseal::{Ceremony, ShareError, split};
//!
//! let root_key = [7u8; unseal::KEY_LEN];
//! let shares = split(&root_key, 2, 3)?;
//! let handed_out: Vec<_> = shares.iter().map(|s| s.to_hex()).collect();
//!
//! let mut ceremony = Ceremony::new(2, 3);
//! assert!(ceremony.submit(&handed_out[2])?.is_none());
//! // A second submission of the same share is refused and costs nothing.
//! assert_eq!(ceremony.submit(&handed_out[2]), Err(ShareError::Duplicate));
//! let candidate = ceremony.submit(&handed_out[0])?.expect("threshold reached");
//! // The caller checks `candidate` against its verification tag before trusting it.
//! assert_eq!(*candidate, root_key);
//! assert_eq!(ceremony.progress(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Invariants
//!
//! * Every [`Share`] that exists has `x != 0` and a `y` of [`KEY_LEN`] bytes; a parsed share
//!   also had a matching checksum.
//! * [`split`] only produces sharings with `2 <= K <= N <= 255`, or the single dev-mode share
//!   `K = N = 1`.
//! * [`combine`] never interpolates over an empty set, an index 0 or a repeated index.
//! * Share and key bytes live in zeroize-on-drop storage, and never appear in an error message,
//!   a `Debug` output or a panic message. No type here derives `Debug`, `Clone` or `Serialize`
//!   over secret bytes.
//!
//! # What it must never do
//!
//! * Any I/O other than reading the operating system's random number generator.
//! * `unsafe` code (forbidden below).
//! * Decide whether a recovered key is *the* key: it cannot know the threshold nor the
//!   initialisation a share came from. The caller checks the result against its stored
//!   verification tag before using it.
//!
//! # Known limits
//!
//! * `blahaj` does its GF(2^8) arithmetic with log/exp tables (not constant time), and it does
//!   not wipe its internal copy of the polynomial coefficients when [`split`] drops it.
//! * Base64 decoding uses the `base64` crate's table-driven decoder; hex encoding and decoding
//!   are done here without secret-dependent branches or tables.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod ceremony;
mod codec;
mod shamir;
mod share;

// Public interface:
pub use ceremony::Ceremony;
pub use shamir::{CombineError, SplitError, combine, split};
pub use share::{Share, ShareError};

/// Length in bytes of the key that is split: coffer's root key.
pub const KEY_LEN: usize = 32;

/// Encoded share length: 1 byte x, 32 bytes y, 4 bytes checksum.
pub const SHARE_LEN: usize = 37;
