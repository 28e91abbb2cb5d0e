//! Break-glass root token generation (Vault's `sys/generate-root/*`): a
//! quorum of unseal (or recovery) shares mints a new root token, returned
//! only XORed with a one-time pad (Vault's OTP encoding: base62 pad of the
//! token's length, `encoded_token = base64_raw_std(token XOR otp)`), so the
//! token is readable only by whoever started the attempt and holds the pad.
//! Every step is logged (audit log proper comes later); never a share,
//! pad or token.

use base64::Engine;
use zeroize::Zeroizing;

use super::{Coffer, Result, ServiceError, now_ms, random_bytes, token_hash};
use crate::seal::{GenerateRootStatus, GenerateRootStep};
use crate::storage::TokenRow;

/// Length of coffer's root tokens: `cfr_` + 43 base64url characters.
pub const ROOT_TOKEN_LEN: usize = 47;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An attempt as the wire shows it.
#[derive(Debug, Clone)]
pub struct GenerateRootView {
    /// attempt open
    pub started: bool,
    /// its nonce
    pub nonce: String,
    /// shares collected
    pub progress: u8,
    /// shares required
    pub required: u8,
    /// the token was minted
    pub complete: bool,
    /// base64(token XOR otp), once complete
    pub encoded_token: String,
    /// the generated pad, only in the answer that started the attempt
    pub otp: String,
    /// required pad length
    pub otp_length: usize,
}

fn view(s: GenerateRootStatus) -> GenerateRootView {
    GenerateRootView {
        started: s.started,
        nonce: s.nonce,
        progress: s.progress,
        required: s.required,
        complete: false,
        encoded_token: String::new(),
        otp: String::new(),
        otp_length: ROOT_TOKEN_LEN,
    }
}

/// A fresh base62 pad of the root token's length (rejection sampling: no bias).
fn fresh_otp() -> Result<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::with_capacity(ROOT_TOKEN_LEN));
    while out.len() < ROOT_TOKEN_LEN {
        for b in random_bytes::<64>()? {
            if b < 248 && out.len() < ROOT_TOKEN_LEN {
                out.push(char::from(BASE62[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// Vault's OTP encoding of a token.
pub fn encode_token(token: &str, otp: &str) -> Option<String> {
    if token.len() != otp.len() {
        return None;
    }
    let x: Zeroizing<Vec<u8>> = Zeroizing::new(token.bytes().zip(otp.bytes()).map(|(a, b)| a ^ b).collect());
    Some(base64::engine::general_purpose::STANDARD_NO_PAD.encode(x.as_slice()))
}

impl Coffer {
    /// `GET sys/generate-root/attempt`.
    pub fn generate_root_status(&self) -> Result<GenerateRootView> {
        Ok(view(self.seal.generate_root_status()?))
    }

    /// `PUT sys/generate-root/attempt`: with no `otp`, one is generated and
    /// returned in this answer only.
    pub fn generate_root_start(&self, otp: Option<String>) -> Result<GenerateRootView> {
        let (otp, generated) = match otp.filter(|o| !o.is_empty()) {
            Some(o) => {
                if o.len() != ROOT_TOKEN_LEN || !o.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(ServiceError::Invalid(format!(
                        "otp must be {ROOT_TOKEN_LEN} base62 characters (or omitted: coffer generates it)"
                    )));
                }
                (Zeroizing::new(o), false)
            }
            None => (fresh_otp()?, true),
        };
        let shown = if generated {
            otp.as_str().to_owned()
        } else {
            String::new()
        };
        let mut v = view(self.seal.generate_root_start(otp)?);
        v.otp = shown;
        tracing::warn!(nonce = %v.nonce, "root token generation started");
        Ok(v)
    }

    /// `DELETE sys/generate-root/attempt`.
    pub fn generate_root_cancel(&self) -> Result<()> {
        self.seal.generate_root_cancel()?;
        tracing::warn!("root token generation cancelled");
        Ok(())
    }

    /// `PUT sys/generate-root/update`: one share; the K-th mints the token.
    pub async fn generate_root_update(&self, share: &str, nonce: &str) -> Result<GenerateRootView> {
        let step = match self.seal.generate_root_update(share, nonce) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "root token generation: share refused");
                return Err(e.into());
            }
        };
        let (nonce, otp, required) = match step {
            GenerateRootStep::Progress(s) => return Ok(view(s)),
            GenerateRootStep::Authorized { nonce, otp, required } => (nonce, otp, required),
        };
        let token = Zeroizing::new(format!(
            "cfr_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
        ));
        let row = TokenRow {
            accessor: hex::encode(random_bytes::<12>()?),
            token_hash: token_hash(&token),
            policy: "root".to_owned(),
            display_name: "root (generated by quorum)".to_owned(),
            created_at: now_ms(),
            expires_at: None,
            principal_id: None,
            org_id: None,
            bound_spki: None,
            family_id: None,
        };
        let encoded = encode_token(&token, &otp)
            .ok_or_else(|| ServiceError::Internal("root token and OTP lengths differ".into()))?;
        self.store.insert_root_token(&row).await?;
        tracing::warn!(accessor = %row.accessor, nonce = %nonce, "root token generated by a quorum of shares");
        Ok(GenerateRootView {
            started: false,
            nonce,
            progress: required,
            required,
            complete: true,
            encoded_token: encoded,
            otp: String::new(),
            otp_length: ROOT_TOKEN_LEN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otp_encoding_round_trips_and_pads_are_base62() {
        let otp = fresh_otp().expect("otp");
        assert_eq!(otp.len(), ROOT_TOKEN_LEN);
        assert!(otp.bytes().all(|b| b.is_ascii_alphanumeric()));
        let token = format!("cfr_{}", "A".repeat(43));
        let enc = encode_token(&token, &otp).expect("same length");
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(enc)
            .expect("b64");
        let back: Vec<u8> = raw.iter().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
        assert_eq!(back, token.as_bytes());
        assert!(encode_token("short", &otp).is_none());
    }
}
