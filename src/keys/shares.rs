//! Shares encrypted to their custodians with age (X25519 recipients), so a
//! share leaves the server only as ciphertext only its holder can open.
//!
//! Vault's `pgp_keys` field carries the recipients (one per share, in share
//! order): each entry is an `age1…` recipient, or the base64 of a text that
//! holds one (what the Vault/OpenBao CLI sends for `-pgp-keys=FILE`). The
//! plaintext is the share's hex text, exactly what `sys/unseal` accepts.
//! Encryption happens in memory; nothing here logs or stores anything.

use std::str::FromStr;

use base64::Engine;
use zeroize::Zeroizing;

/// A custodian's public key.
pub type Recipient = age::x25519::Recipient;

fn recipient_in(text: &str) -> Option<Recipient> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("age1"))
        .and_then(|l| Recipient::from_str(l).ok())
}

/// Parse the `pgp_keys` list; the error names the entry at fault.
pub fn parse_recipients(field: &str, list: &[String]) -> Result<Vec<Recipient>, String> {
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            let entry = entry.trim();
            let parsed = if entry.starts_with("age1") {
                Recipient::from_str(entry).ok()
            } else {
                base64::engine::general_purpose::STANDARD
                    .decode(entry)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|t| recipient_in(&t))
            };
            parsed.ok_or_else(|| {
                format!(
                    "{field}[{i}] is not an age X25519 recipient (age1…), nor the base64 of a file holding one; \
                     PGP keys are not supported"
                )
            })
        })
        .collect()
}

/// Encrypt one share's text to its custodian (binary age format).
pub fn encrypt_share(recipient: &Recipient, share_text: &str) -> Result<Vec<u8>, String> {
    age::encrypt(recipient, share_text.as_bytes()).map_err(|e| format!("age encryption failed: {e}"))
}

/// Custodian side: open an encrypted share (hex, base64 or armored age)
/// with the X25519 identities (`AGE-SECRET-KEY-1…` lines) of an identity
/// file. Returns the share text.
pub fn decrypt_share(identity_file: &str, encrypted: &str) -> Result<Zeroizing<String>, String> {
    let identities: Vec<age::x25519::Identity> = identity_file
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
        .filter_map(|l| age::x25519::Identity::from_str(l).ok())
        .collect();
    if identities.is_empty() {
        return Err("the identity file holds no AGE-SECRET-KEY-1… line".into());
    }
    let text = encrypted.trim();
    let blob: Vec<u8> = if text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----") {
        text.as_bytes().to_vec()
    } else if let Ok(b) = hex::decode(text) {
        b
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| "the encrypted share is not hex, base64 or armored age".to_owned())?
    };
    for id in &identities {
        if let Ok(plain) = age::decrypt(id, &blob) {
            let plain = Zeroizing::new(plain);
            return std::str::from_utf8(&plain)
                .map(|s| Zeroizing::new(s.trim().to_owned()))
                .map_err(|_| "the decrypted share is not text".to_owned());
        }
    }
    Err("none of the identities in the file opens this share (another custodian's?)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn each_share_opens_only_with_its_identity() {
        let alice = age::x25519::Identity::generate();
        let bob = age::x25519::Identity::generate();
        let via_file =
            base64::engine::general_purpose::STANDARD.encode(format!("# bob\n{}\n", bob.to_public()).as_bytes());
        let rs = parse_recipients("pgp_keys", &[alice.to_public().to_string(), via_file]).expect("parse");
        let ct = encrypt_share(&rs[0], "0123abcd").expect("encrypt");
        let alice_file = format!("# created: now\n{}\n", alice.to_string().expose_secret());
        let bob_file = bob.to_string().expose_secret().to_owned();
        assert_eq!(
            decrypt_share(&alice_file, &hex::encode(&ct)).expect("opens").as_str(),
            "0123abcd"
        );
        assert!(decrypt_share(&bob_file, &hex::encode(&ct)).is_err());
        let b64 = base64::engine::general_purpose::STANDARD.encode(encrypt_share(&rs[1], "ff").expect("enc"));
        assert_eq!(decrypt_share(&bob_file, &b64).expect("opens").as_str(), "ff");
        let err = parse_recipients("pgp_keys", &["mQINBF…".into()]).expect_err("pgp");
        assert!(err.contains("pgp_keys[0]"), "{err}");
    }
}
