//! Hex encoding and decoding without secret-dependent branches or table lookups.
//!
//! Share bytes are secret, so the per-character work here is plain arithmetic on masks
//! (the technique of the `base16ct` crate): how long it takes depends only on the input's
//! length, not on its characters. Errors are reported as one flag for the whole input, never
//! as a position or a character, so nothing of the input ends up in an error.

/// Lower-case hex digit for a nibble `0..=15`.
fn encode_nibble(nibble: u8) -> u8 {
    let n = i16::from(nibble & 0x0f);
    // For n > 9, (9 - n) is negative, so `>> 8` is all ones and adds 'a' - '0' - 10 = 0x27.
    (n + 0x30 + (((9 - n) >> 8) & 0x27)) as u8
}

/// Value of a hex digit (either case), or `0xffff` for any other byte.
fn decode_nibble(c: u8) -> u16 {
    let c = i16::from(c);
    let mut ret: i16 = -1;
    // Each line adds (value + 1) when `c` is in its range: the mask `((lo - c) & (c - hi)) >> 8`
    // is all ones exactly when lo < c < hi.
    ret += (((0x2f - c) & (c - 0x3a)) >> 8) & (c - 0x2f); // '0'..='9'
    ret += (((0x40 - c) & (c - 0x47)) >> 8) & (c - 0x36); // 'A'..='F'
    ret += (((0x60 - c) & (c - 0x67)) >> 8) & (c - 0x56); // 'a'..='f'
    ret as u16
}

/// Writes the lower-case hex of `src` into `dst`, which must be exactly twice as long.
///
/// Returns `false` (writing nothing) on a length mismatch, which callers rule out statically.
pub(crate) fn hex_encode(src: &[u8], dst: &mut [u8]) -> bool {
    if dst.len() != src.len() * 2 {
        return false;
    }
    for (byte, pair) in src.iter().zip(dst.chunks_exact_mut(2)) {
        pair[0] = encode_nibble(byte >> 4);
        pair[1] = encode_nibble(byte & 0x0f);
    }
    true
}

/// Decodes hex (either case) from `src` into `dst`, which must be exactly half as long.
///
/// Returns `false` if the lengths don't match or any character is not a hex digit; `dst` then
/// holds garbage that the caller must discard (it is the caller's zeroizing buffer).
pub(crate) fn hex_decode(src: &[u8], dst: &mut [u8]) -> bool {
    if src.len() != dst.len() * 2 {
        return false;
    }
    let mut err: u16 = 0;
    for (pair, out) in src.chunks_exact(2).zip(dst.iter_mut()) {
        let hi = decode_nibble(pair[0]);
        let lo = decode_nibble(pair[1]);
        err |= (hi | lo) >> 8;
        *out = ((hi << 4) | lo) as u8;
    }
    err == 0
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "tests: a panic with the unexpected value is the failure report"
)]
mod tests {
    use super::*;

    #[test]
    fn nibbles_match_std_for_every_byte() {
        for c in 0..=u8::MAX {
            let expected = char::from(c).to_digit(16).map(|d| d as u16);
            let got = decode_nibble(c);
            match expected {
                Some(d) => assert_eq!(got, d, "byte {c:#04x}"),
                None => assert_eq!(got, 0xffff, "byte {c:#04x}"),
            }
        }
        for n in 0..16u8 {
            assert_eq!(char::from(encode_nibble(n)), format!("{n:x}").chars().next().unwrap());
        }
    }

    #[test]
    fn round_trips_every_byte_and_matches_format() {
        let all: Vec<u8> = (0..=u8::MAX).collect();
        let mut hex = vec![0u8; all.len() * 2];
        assert!(hex_encode(&all, &mut hex));
        let expected: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected.as_bytes());

        let mut back = vec![0u8; all.len()];
        assert!(hex_decode(&hex, &mut back));
        assert_eq!(back, all);

        let upper = expected.to_uppercase();
        let mut back = vec![0u8; all.len()];
        assert!(hex_decode(upper.as_bytes(), &mut back));
        assert_eq!(back, all);
    }

    #[test]
    fn rejects_non_hex_and_bad_lengths() {
        let mut out = [0u8; 2];
        assert!(!hex_decode(b"0g12", &mut out));
        assert!(!hex_decode(b"12 4", &mut out));
        assert!(!hex_decode("12é".as_bytes(), &mut out));
        assert!(!hex_decode(b"123", &mut out));
        assert!(!hex_decode(b"123456", &mut out));
        assert!(!hex_encode(&[1, 2, 3], &mut out));
    }
}
