//! Ceremony: progress, refusals that leave it unchanged, reset and completion.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a panic with the unexpected value is the failure report"
)]

use super::*;
use crate::split;

fn texts(key: &[u8; KEY_LEN], k: u8, n: u8) -> Vec<String> {
    split(key, k, n)
        .unwrap()
        .iter()
        .map(|s| s.to_hex().to_string())
        .collect()
}

#[test]
fn new_ceremony_is_empty_with_a_uuid_nonce() {
    let c = Ceremony::new(3, 5);
    assert_eq!((c.threshold(), c.shares(), c.progress()), (3, 5, 0));
    let nonce = c.nonce();
    assert_eq!(nonce.len(), 36);
    let parts: Vec<&str> = nonce.split('-').collect();
    assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
    assert!(parts[2].starts_with('4'));
    assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
    assert_ne!(Ceremony::new(3, 5).nonce(), nonce);
}

#[test]
fn progress_counts_and_completion_returns_key_and_resets() {
    let key = [0x3cu8; KEY_LEN];
    let shares = texts(&key, 3, 5);
    let mut c = Ceremony::new(3, 5);
    let nonce = c.nonce().to_owned();

    assert!(c.submit(&shares[4]).unwrap().is_none());
    assert_eq!(c.progress(), 1);
    assert!(c.submit(&shares[0]).unwrap().is_none());
    assert_eq!(c.progress(), 2);
    assert_eq!(c.nonce(), nonce, "nonce is stable within a round");

    let got = c.submit(&shares[2]).unwrap().expect("threshold reached");
    assert_eq!(*got, key);
    assert_eq!(c.progress(), 0);
    assert_ne!(c.nonce(), nonce, "completion starts a fresh round");

    // The fresh round is usable, and shares from the last round are welcome again.
    assert!(c.submit(&shares[0]).unwrap().is_none());
    assert!(c.submit(&shares[1]).unwrap().is_none());
    assert_eq!(*c.submit(&shares[3]).unwrap().unwrap(), key);
}

#[test]
fn base64_and_hex_submissions_mix() {
    let key = [0x01u8; KEY_LEN];
    let shares = split(&key, 2, 3).unwrap();
    let mut c = Ceremony::new(2, 3);
    assert!(c.submit(&shares[0].to_base64()).unwrap().is_none());
    assert_eq!(*c.submit(&shares[2].to_hex()).unwrap().unwrap(), key);
}

#[test]
fn duplicate_is_refused_and_progress_unchanged() {
    let shares = texts(&[9u8; KEY_LEN], 3, 5);
    let mut c = Ceremony::new(3, 5);
    c.submit(&shares[1]).unwrap();
    c.submit(&shares[3]).unwrap();
    let nonce = c.nonce().to_owned();

    assert_eq!(c.submit(&shares[1]).unwrap_err(), ShareError::Duplicate);
    // Same share in another encoding is still the same share.
    let b64 = Share::parse(&shares[3]).unwrap().to_base64();
    assert_eq!(c.submit(&b64).unwrap_err(), ShareError::Duplicate);
    assert_eq!(c.progress(), 2);
    assert_eq!(c.nonce(), nonce);
}

#[test]
fn same_index_different_share_is_refused_as_duplicate_index() {
    let ours = texts(&[1u8; KEY_LEN], 2, 3);
    let other_init = texts(&[2u8; KEY_LEN], 2, 3);
    let mut c = Ceremony::new(2, 3);
    c.submit(&ours[1]).unwrap();
    let err = c.submit(&other_init[1]).unwrap_err();
    assert_eq!(err, ShareError::DuplicateIndex { x: 2 });
    assert!(err.to_string().contains("a share with index 2 was already submitted"));
    assert_eq!(c.progress(), 1);
}

#[test]
fn malformed_is_refused_and_progress_unchanged() {
    let key = [0x77u8; KEY_LEN];
    let shares = texts(&key, 2, 3);
    let mut c = Ceremony::new(2, 3);
    c.submit(&shares[0]).unwrap();
    let nonce = c.nonce().to_owned();

    let mut typo = shares[1].clone().into_bytes();
    typo[10] = if typo[10] == b'0' { b'1' } else { b'0' };
    let typo = String::from_utf8(typo).unwrap();
    assert_eq!(c.submit(&typo).unwrap_err(), ShareError::Checksum);
    assert_eq!(
        c.submit(&shares[1][..70]).unwrap_err(),
        ShareError::WrongLength { got: 35 }
    );
    assert_eq!(c.submit("hello").unwrap_err(), ShareError::NotEncoded);
    assert_eq!(c.submit("").unwrap_err(), ShareError::Empty);
    assert_eq!(c.progress(), 1);
    assert_eq!(c.nonce(), nonce);

    // The ceremony goes on with the correct share.
    assert_eq!(*c.submit(&shares[1]).unwrap().unwrap(), key);
}

#[test]
fn index_beyond_share_count_is_refused() {
    let big = split(&[5u8; KEY_LEN], 2, 6).unwrap();
    let mut c = Ceremony::new(2, 5);
    let err = c.submit(&big[5].to_hex()).unwrap_err();
    assert_eq!(err, ShareError::IndexOutOfRange { x: 6, shares: 5 });
    assert_eq!(c.progress(), 0);
}

#[test]
fn reset_clears_and_changes_nonce() {
    let shares = texts(&[4u8; KEY_LEN], 3, 3);
    let mut c = Ceremony::new(3, 3);
    c.submit(&shares[0]).unwrap();
    c.submit(&shares[1]).unwrap();
    let nonce = c.nonce().to_owned();
    c.reset();
    assert_eq!(c.progress(), 0);
    assert_ne!(c.nonce(), nonce);
    assert_eq!((c.threshold(), c.shares()), (3, 3));
    // The first share is accepted again: the collection really was dropped.
    assert!(c.submit(&shares[0]).unwrap().is_none());
    assert_eq!(c.progress(), 1);
}

#[test]
fn wrong_init_shares_complete_with_a_wrong_key() {
    // Documented: the ceremony can't tell; the server's verification tag does.
    let key_a = [0xaau8; KEY_LEN];
    let a = texts(&key_a, 2, 3);
    let b = texts(&[0xbbu8; KEY_LEN], 2, 3);
    let mut c = Ceremony::new(2, 3);
    c.submit(&a[0]).unwrap();
    let got = c.submit(&b[1]).unwrap().unwrap();
    assert_ne!(*got, key_a);
}

#[test]
fn dev_mode_single_share_completes_at_once() {
    let key = [0x10u8; KEY_LEN];
    let share = split(&key, 1, 1).unwrap().remove(0);
    let mut c = Ceremony::new(1, 1);
    assert_eq!(*c.submit(&share.to_hex()).unwrap().unwrap(), key);
    assert_eq!(c.progress(), 0);
}

#[test]
fn zero_threshold_is_treated_as_one() {
    let key = [0x10u8; KEY_LEN];
    let share = split(&key, 1, 1).unwrap().remove(0);
    let mut c = Ceremony::new(0, 1);
    assert_eq!(*c.submit(&share.to_hex()).unwrap().unwrap(), key);
}

#[test]
fn debug_never_shows_share_bytes() {
    let key = [0x6du8; KEY_LEN];
    let shares = split(&key, 3, 3).unwrap();
    let mut c = Ceremony::new(3, 3);
    c.submit(&shares[0].to_hex()).unwrap();
    c.submit(&shares[1].to_base64()).unwrap();
    let dbg = format!("{c:?} {c:#?}");
    for s in &shares[..2] {
        let hex = s.to_hex();
        // y bytes are hex[2..66]; any 8-character run of them would be a leak.
        for start in (2..58).step_by(8) {
            assert!(!dbg.contains(&hex[start..start + 8]), "{dbg}");
        }
    }
    assert!(dbg.contains("progress: 2"));
    assert!(dbg.contains(c.nonce()));
}
