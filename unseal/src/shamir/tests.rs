//! Shamir split/combine: the rules, known-answer shares, and the K-of-N property.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a panic with the unexpected value is the failure report"
)]

use proptest::prelude::*;

use super::*;

/// All `k`-element subsets of `0..n`, as index lists in increasing order.
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    fn go(start: usize, n: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            if n - i < k - cur.len() {
                break;
            }
            cur.push(i);
            go(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    go(0, n, k, &mut Vec::new(), &mut out);
    out
}

fn combine_subset(shares: &[Share], idx: &[usize]) -> Zeroizing<[u8; KEY_LEN]> {
    combine_refs(idx.iter().map(|&i| &shares[i])).expect("distinct non-zero indices")
}

#[test]
fn subsets_helper_counts() {
    assert_eq!(subsets(5, 3).len(), 10);
    assert_eq!(subsets(10, 5).len(), 252);
    assert_eq!(subsets(4, 0), vec![Vec::<usize>::new()]);
    assert_eq!(subsets(3, 3), vec![vec![0, 1, 2]]);
}

// ---- split rules ----

#[test]
fn split_refuses_zero_shares() {
    let key = [7u8; KEY_LEN];
    assert_eq!(split(&key, 0, 0).unwrap_err(), SplitError::NoShares);
    assert_eq!(split(&key, 2, 0).unwrap_err(), SplitError::NoShares);
}

#[test]
fn split_refuses_zero_threshold() {
    let err = split(&[7u8; KEY_LEN], 0, 3).unwrap_err();
    assert_eq!(err, SplitError::ZeroThreshold { shares: 3 });
    assert!(err.to_string().contains("threshold 0 with 3 shares"));
}

#[test]
fn split_refuses_threshold_above_shares() {
    let err = split(&[7u8; KEY_LEN], 4, 3).unwrap_err();
    assert_eq!(
        err,
        SplitError::ThresholdAboveShares {
            threshold: 4,
            shares: 3
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("threshold 4") && msg.contains("3 shares"), "{msg}");
    assert!(split(&[7u8; KEY_LEN], 255, 254).is_err());
}

#[test]
fn split_refuses_threshold_one_with_several_shares() {
    for n in [2u8, 5, 255] {
        let err = split(&[7u8; KEY_LEN], 1, n).unwrap_err();
        assert_eq!(err, SplitError::ThresholdOne { shares: n });
    }
    assert_eq!(
        split(&[7u8; KEY_LEN], 1, 5).unwrap_err().to_string(),
        "threshold 1 with 5 shares would put the key in clear in every share; use a threshold of \
         at least 2"
    );
}

#[test]
fn split_allows_single_dev_share() {
    let key = [0x5au8; KEY_LEN];
    let shares = split(&key, 1, 1).unwrap();
    assert_eq!(shares.len(), 1);
    assert_eq!(shares[0].x(), 1);
    // Documented: the dev-mode single share holds the key in clear.
    assert_eq!(shares[0].y(), &key);
    assert_eq!(*combine(&shares).unwrap(), key);
}

#[test]
fn split_gives_indices_one_to_n() {
    let shares = split(&[1u8; KEY_LEN], 3, 7).unwrap();
    let xs: Vec<u8> = shares.iter().map(Share::x).collect();
    assert_eq!(xs, (1..=7).collect::<Vec<u8>>());
}

#[test]
fn split_is_randomised_and_no_share_is_the_key() {
    let key = [0x42u8; KEY_LEN];
    let a = split(&key, 2, 3).unwrap();
    let b = split(&key, 2, 3).unwrap();
    for (sa, sb) in a.iter().zip(&b) {
        assert_ne!(sa.y(), sb.y(), "two splits gave the same share");
        assert_ne!(sa.y(), &key, "a share holds the key in clear");
    }
}

// ---- combine ----

#[test]
fn combine_refuses_empty() {
    assert_eq!(combine(&[]).unwrap_err(), CombineError::Empty);
}

#[test]
fn combine_refuses_index_zero() {
    let mut shares = split(&[3u8; KEY_LEN], 2, 2).unwrap();
    shares.push(Share::from_parts(0, &[9u8; KEY_LEN]));
    assert_eq!(combine(&shares).unwrap_err(), CombineError::ZeroIndex);
}

#[test]
fn combine_refuses_duplicate_index() {
    let shares = split(&[3u8; KEY_LEN], 2, 3).unwrap();
    // Same share twice.
    let twice = [
        Share::from_parts(shares[1].x(), shares[1].y()),
        Share::from_parts(shares[1].x(), shares[1].y()),
    ];
    assert_eq!(combine(&twice).unwrap_err(), CombineError::DuplicateIndex { x: 2 });
    // Same index, different bytes (e.g. another initialisation).
    let clash = [
        Share::from_parts(shares[0].x(), shares[0].y()),
        Share::from_parts(shares[2].x(), shares[2].y()),
        Share::from_parts(3, &[0u8; KEY_LEN]),
    ];
    let err = combine(&clash).unwrap_err();
    assert_eq!(err, CombineError::DuplicateIndex { x: 3 });
    assert!(err.to_string().contains("index 3"));
}

/// Shares computed independently (Python, GF(2^8) modulo 0x11d, K = 3, N = 5). Pins the field
/// and share format: if the Shamir library were swapped for one with another field, existing
/// shares would stop recombining, and this test says so.
const KAT_KEY: &str = "21271095cb16830bf6822de58e3f61232baa6ccf653fc106988ab251b66b6a22";
const KAT_SHARES: [&str; 5] = [
    "01785232e00d2c1fff9e7055af830d865f249a628037d8b45cab20cf6159bdc53922caefd2",
    "02faaa2aca24bb1ec9d2ace234b2641c709e6896b2204b13b4005e016fbea5b124ed9d7b58",
    "03a3df08bfe281823dba5e9a7ebf56fb0c915898fd72ac66ee33f47c5f51731e3f1cab2825",
    "0433a181c5ed127e4e49a552536e751913ca813a9e4c7198676a71f048ad0b9beec9f5fc5f",
    "056ad4a3b02b28e2ba21572a196347fe6fc5b134d11e96ed3d59db8d7842dd34f5f2173b2a",
];

#[test]
fn known_answer_shares_recombine() {
    let shares: Vec<Share> = KAT_SHARES.iter().map(|s| Share::parse(s).unwrap()).collect();
    let mut expected = [0u8; KEY_LEN];
    assert!(crate::codec::hex_decode(KAT_KEY.as_bytes(), &mut expected));
    for idx in subsets(5, 3).into_iter().chain(subsets(5, 4)).chain(subsets(5, 5)) {
        assert_eq!(*combine_subset(&shares, &idx), expected, "subset {idx:?}");
    }
    for idx in subsets(5, 2) {
        assert_ne!(*combine_subset(&shares, &idx), expected, "subset {idx:?}");
    }
}

#[test]
fn order_of_shares_does_not_matter() {
    let key = [0xa5u8; KEY_LEN];
    let shares = split(&key, 3, 5).unwrap();
    assert_eq!(*combine_subset(&shares, &[4, 0, 2]), key);
    assert_eq!(*combine_subset(&shares, &[2, 4, 1, 3]), key);
}

#[test]
fn three_of_255() {
    let key: [u8; KEY_LEN] = core::array::from_fn(|i| (i * 7 + 3) as u8);
    let shares = split(&key, 3, 255).unwrap();
    assert_eq!(shares.len(), 255);
    assert_eq!(shares[254].x(), 255);
    for i in 0..85 {
        assert_eq!(*combine_subset(&shares, &[i, i + 85, i + 170]), key);
    }
    assert_eq!(*combine_subset(&shares, &[252, 253, 254]), key);
    assert_eq!(*combine(&shares).unwrap(), key);
    for i in 0..254 {
        assert_ne!(*combine_subset(&shares, &[i, i + 1]), key);
    }
}

#[test]
fn all_255_of_255() {
    let key = [0xffu8; KEY_LEN];
    let shares = split(&key, 255, 255).unwrap();
    assert_eq!(*combine(&shares).unwrap(), key);
    let all_but_last: Vec<usize> = (0..254).collect();
    assert_ne!(*combine_subset(&shares, &all_but_last), key);
}

#[test]
fn split_shares_survive_text_round_trip() {
    let key = [0x11u8; KEY_LEN];
    let shares = split(&key, 2, 4).unwrap();
    let reparsed: Vec<Share> = shares
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let text = if i % 2 == 0 { s.to_hex() } else { s.to_base64() };
            Share::parse(&text).unwrap()
        })
        .collect();
    assert_eq!(*combine(&reparsed[1..3]).unwrap(), key);
}

#[test]
fn errors_and_debug_never_show_key_bytes() {
    let key = [0xc3u8; KEY_LEN];
    let shares = split(&key, 2, 2).unwrap();
    let dbg = format!("{shares:?}");
    assert_eq!(dbg, "[Share { x: 1, .. }, Share { x: 2, .. }]");
    for err in [
        CombineError::Empty,
        CombineError::ZeroIndex,
        CombineError::DuplicateIndex { x: 1 },
    ] {
        assert!(!format!("{err} {err:?}").to_lowercase().contains("c3c3"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any K of the N shares give back the key; any K-1 give something else.
    #[test]
    fn k_of_n_round_trips((k, n) in (2u8..=10).prop_flat_map(|k| (Just(k), k..=10u8)),
                          key in any::<[u8; KEY_LEN]>()) {
        let shares = split(&key, k, n).unwrap();
        prop_assert_eq!(shares.len(), usize::from(n));
        for idx in subsets(usize::from(n), usize::from(k)) {
            prop_assert_eq!(*combine_subset(&shares, &idx), key, "subset {:?}", idx);
        }
        for idx in subsets(usize::from(n), usize::from(k - 1)) {
            prop_assert_ne!(*combine_subset(&shares, &idx), key, "subset {:?}", idx);
        }
    }

    /// More than K shares also give back the key (the server may be handed extras).
    #[test]
    fn more_than_k_round_trips((k, n) in (2u8..=20).prop_flat_map(|k| (Just(k), k..=20u8)),
                               key in any::<[u8; KEY_LEN]>()) {
        let shares = split(&key, k, n).unwrap();
        prop_assert_eq!(*combine(&shares).unwrap(), key);
    }
}
