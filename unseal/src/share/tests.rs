//! Share format: known-answer vector, text round trips and every parse error.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a panic with the unexpected value is the failure report"
)]

use proptest::prelude::*;

use super::*;

/// x = 1, y = 00 01 .. 1f; checksum computed independently (Python hashlib).
const KAT_HEX: &str = "01000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fdd6f34d9";
const KAT_BASE64: &str = "AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f3W802Q==";
/// Same y with x = 0 and a checksum that matches it.
const X0_HEX: &str = "00000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0eb5725f";

fn kat_y() -> [u8; KEY_LEN] {
    core::array::from_fn(|i| i as u8)
}

fn kat_share() -> Share {
    Share::from_parts(1, &kat_y())
}

#[test]
fn known_answer_encodings() {
    let share = kat_share();
    assert_eq!(share.to_hex().as_str(), KAT_HEX);
    assert_eq!(share.to_base64().as_str(), KAT_BASE64);
    assert_eq!(KAT_HEX.len(), HEX_LEN);
    assert_eq!(KAT_BASE64.len(), BASE64_LEN);
}

#[test]
fn parses_known_answer_in_every_accepted_form() {
    let unpadded = KAT_BASE64.trim_end_matches('=');
    let forms = [
        KAT_HEX.to_owned(),
        KAT_HEX.to_uppercase(),
        KAT_BASE64.to_owned(),
        unpadded.to_owned(),
        format!("  \t{KAT_HEX}\r\n"),
        format!("\n{KAT_BASE64} "),
    ];
    for form in &forms {
        let share = Share::parse(form).unwrap_or_else(|e| panic!("{form:?}: {e}"));
        assert_eq!(share.x(), 1);
        assert_eq!(share.y(), &kat_y());
    }
}

#[test]
fn one_flipped_hex_character_is_a_checksum_error() {
    // Every position, each changed to another hex digit: all caught (the checksum covers
    // x and y, and a change in the checksum itself no longer matches).
    for pos in 0..KAT_HEX.len() {
        let mut bytes = KAT_HEX.as_bytes().to_vec();
        bytes[pos] = if bytes[pos] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(bytes).unwrap();
        assert_eq!(Share::parse(&typo).unwrap_err(), ShareError::Checksum, "position {pos}");
    }
}

#[test]
fn one_flipped_base64_character_is_a_checksum_error() {
    // Skip the last data character: its low bits are padding and changing them makes the
    // encoding non-canonical (refused as not base64, also fine).
    for pos in 0..48 {
        let mut bytes = KAT_BASE64.as_bytes().to_vec();
        bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
        let typo = String::from_utf8(bytes).unwrap();
        assert_eq!(Share::parse(&typo).unwrap_err(), ShareError::Checksum, "position {pos}");
    }
}

#[test]
fn truncated_or_extended_is_a_length_error() {
    assert_eq!(
        Share::parse(&KAT_HEX[..72]).unwrap_err(),
        ShareError::WrongLength { got: 36 }
    );
    // One hex digit lost: odd length, still reported as a length problem.
    assert_eq!(
        Share::parse(&KAT_HEX[..73]).unwrap_err(),
        ShareError::WrongLength { got: 36 }
    );
    assert_eq!(
        Share::parse(&format!("{KAT_HEX}00")).unwrap_err(),
        ShareError::WrongLength { got: 38 }
    );
    // Base64 of 36 bytes.
    assert_eq!(
        Share::parse(&KAT_BASE64[..48]).unwrap_err(),
        ShareError::WrongLength { got: 36 }
    );
    // A 33-byte share of the plain sharks/blahaj format (no checksum).
    assert_eq!(
        Share::parse(&KAT_HEX[..66]).unwrap_err(),
        ShareError::WrongLength { got: 33 }
    );
}

#[test]
fn x_zero_with_valid_checksum_is_refused() {
    assert_eq!(Share::parse(X0_HEX).unwrap_err(), ShareError::ZeroIndex);
    let mut bytes = [0u8; SHARE_LEN];
    let decoded = decode_hex(X0_HEX.as_bytes()).unwrap();
    bytes.copy_from_slice(&decoded);
    assert_eq!(Share::from_encoded(&bytes).unwrap_err(), ShareError::ZeroIndex);
}

#[test]
fn garbage_is_not_encoded_and_blank_is_empty() {
    for garbage in [
        "not a share",
        "zz",
        "01000102-0304",
        "AQAB!gME",
        "é",
        &format!("{KAT_HEX}!"),
        "Z", // 1 base64 character cannot encode anything
    ] {
        assert_eq!(
            Share::parse(garbage).unwrap_err(),
            ShareError::NotEncoded,
            "{garbage:?}"
        );
    }
    assert_eq!(Share::parse("").unwrap_err(), ShareError::Empty);
    assert_eq!(Share::parse(" \n\t ").unwrap_err(), ShareError::Empty);
}

#[test]
fn inner_whitespace_is_not_accepted() {
    let spaced = format!("{} {}", &KAT_HEX[..37], &KAT_HEX[37..]);
    assert_eq!(Share::parse(&spaced).unwrap_err(), ShareError::NotEncoded);
}

#[test]
fn debug_shows_only_the_index() {
    let share = kat_share();
    let debug = format!("{share:?}");
    assert_eq!(debug, "Share { x: 1, .. }");
    assert!(!debug.contains(&KAT_HEX[2..66]));
    let pretty = format!("{share:#?}");
    assert!(!pretty.contains("0102"));
}

#[test]
fn errors_never_echo_the_input() {
    let inputs = [
        KAT_HEX[..72].to_owned(),
        KAT_HEX.replace('d', "e"),
        X0_HEX.to_owned(),
        "0123456789abcdef-garbage".to_owned(),
    ];
    for input in &inputs {
        let err = Share::parse(input).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&input[..16]), "{shown}");
    }
}

#[test]
fn error_messages_say_what_to_do() {
    let msg = ShareError::WrongLength { got: 36 }.to_string();
    assert!(msg.contains("expected 37 bytes") && msg.contains("36") && msg.contains("truncated"));
    assert!(ShareError::Checksum.to_string().contains("mistyped or altered"));
    assert!(
        ShareError::DuplicateIndex { x: 4 }
            .to_string()
            .contains("a share with index 4 was already submitted")
    );
    assert!(
        ShareError::Duplicate
            .to_string()
            .contains("this share was already submitted in this ceremony")
    );
}

#[test]
fn hex_only_unpadded_base64_is_read_as_base64() {
    // Find a valid share whose unpadded base64 (50 characters) uses hex digits only: read as
    // hex it would be 25 bytes, so parse must prefer the 37-byte base64 reading.
    const HEXISH: &[u8] = b"0123456789abcdefABCDEF";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        HEXISH[(state >> 33) as usize % HEXISH.len()]
    };
    let found = (0..200_000).find_map(|_| {
        let head: Vec<u8> = (0..44).map(|_| next()).collect();
        let body = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&head).ok()?;
        if body[0] == 0 {
            return None;
        }
        let share = Share::from_parts(body[0], body[1..].try_into().ok()?);
        let text = share.to_base64().trim_end_matches('=').to_owned();
        text.bytes().all(|c| c.is_ascii_hexdigit()).then_some((share, text))
    });
    let (share, text) = found.expect("a hex-only base64 share exists in the search space");
    assert_eq!(decode_hex(text.as_bytes()).map(|b| b.len()), Some(25));
    let parsed = Share::parse(&text).unwrap();
    assert!(bool::from(parsed.ct_eq(&share)));
}

proptest! {
    #[test]
    fn round_trips_any_share(x in 1u8..=255, y in any::<[u8; KEY_LEN]>()) {
        let share = Share::from_parts(x, &y);
        for text in [share.to_hex(), share.to_base64()] {
            let back = Share::parse(&text).unwrap();
            prop_assert_eq!(back.x(), x);
            prop_assert_eq!(back.y(), &y);
            prop_assert!(bool::from(back.ct_eq(&share)));
        }
        let unpadded = share.to_base64().trim_end_matches('=').to_owned();
        prop_assert_eq!(*Share::parse(&unpadded).unwrap().y(), y);
        let upper = share.to_hex().to_uppercase();
        prop_assert_eq!(*Share::parse(&upper).unwrap().y(), y);
    }

    #[test]
    fn any_single_byte_change_is_caught(
        x in 1u8..=255,
        y in any::<[u8; KEY_LEN]>(),
        pos in 0..SHARE_LEN,
        delta in 1u8..=255,
    ) {
        let share = Share::from_parts(x, &y);
        let mut bytes = share.to_bytes();
        bytes[pos] ^= delta;
        let err = Share::from_encoded(&bytes).unwrap_err();
        // A change to x that lands on 0 with a matching checksum is a 2^-32 event.
        prop_assert_eq!(err, ShareError::Checksum);
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,120}") {
        let _ = Share::parse(&s);
    }
}
