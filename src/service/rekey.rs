//! Rekey and root rotation for the root token holder: thin wrappers over
//! the seal (which owns the crypto), plus the share encodings the wire
//! format wants. Every step is logged by token accessor, never a share.

use base64::Engine;
use zeroize::Zeroizing;

use super::{InitResult, OperatorService, Result, ServiceError, Unsealed};
use crate::keys::shares;
use crate::seal::{RekeyStatus, RekeyUpdate, RotateStatus, VerifyStatus};

/// New shares, returned once by the rekey's last current share.
pub struct RekeyResult {
    /// rekey nonce
    pub nonce: String,
    /// shares, hex
    pub keys_hex: Vec<Zeroizing<String>>,
    /// shares, base64
    pub keys_base64: Vec<Zeroizing<String>>,
    /// the age recipients the shares are encrypted to (empty: plaintext)
    pub recipients: Vec<String>,
    /// the new shares take effect only after verification
    pub verification_required: bool,
    /// nonce of the verification round
    pub verification_nonce: String,
}

impl std::fmt::Debug for RekeyResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RekeyResult")
            .field("shares", &self.keys_hex.len())
            .finish_non_exhaustive()
    }
}

/// What a rekey share did.
#[derive(Debug)]
pub enum RekeyOutcome {
    /// more shares needed
    Progress(RekeyStatus),
    /// the new share set
    Complete(RekeyResult),
}

impl OperatorService {
    /// `seal "pkcs11"`: start the boot-time HSM auto-unseal loop (retries
    /// with back-off until unsealed; reasons show in seal-status/health).
    pub fn spawn_auto_unseal(&self) {
        tokio::spawn(crate::seal::pkcs11::auto_unseal_loop(self.shared.seal.clone()));
    }

    /// `GET sys/rekey/init`.
    pub fn rekey_status(&self, who: &Unsealed) -> Result<RekeyStatus> {
        who.require_root()?;
        Ok(self.shared.seal.rekey_status()?)
    }

    /// `PUT sys/rekey/init`.
    pub fn rekey_init(
        &self,
        who: &Unsealed,
        shares: u8,
        threshold: u8,
        require_verification: bool,
        recipients: Vec<String>,
    ) -> Result<RekeyStatus> {
        who.require_root()?;
        check_recipients(&recipients, shares)?;
        let s = self
            .shared
            .seal
            .rekey_init(shares, threshold, require_verification, recipients)?;
        tracing::warn!(accessor = %who.accessor, shares, threshold, require_verification, "rekey started");
        Ok(s)
    }

    /// `DELETE sys/rekey/init`.
    pub fn rekey_cancel(&self, who: &Unsealed) -> Result<()> {
        who.require_root()?;
        self.shared.seal.rekey_cancel()?;
        tracing::warn!(accessor = %who.accessor, "rekey cancelled");
        Ok(())
    }

    /// `PUT sys/rekey/update`: one current share.
    pub async fn rekey_update(&self, who: &Unsealed, share: &str, nonce: &str) -> Result<RekeyOutcome> {
        who.require_root()?;
        let out = self.shared.seal.rekey_update(share, nonce).await;
        match &out {
            Ok(RekeyUpdate::Complete {
                verification_required, ..
            }) => tracing::warn!(
                accessor = %who.accessor,
                verification_required,
                "rekey: new shares issued{}",
                if *verification_required { " (pending verification)" } else { "; old shares revoked" }
            ),
            Ok(RekeyUpdate::Progress(_)) => tracing::info!(accessor = %who.accessor, "rekey: share accepted"),
            Err(e) => tracing::warn!(accessor = %who.accessor, error = %e, "rekey: share refused"),
        }
        Ok(match out? {
            RekeyUpdate::Progress(s) => RekeyOutcome::Progress(s),
            RekeyUpdate::Complete {
                nonce,
                shares,
                recipients,
                verification_required,
                verification_nonce,
            } => {
                let (keys_hex, keys_base64) = encode_shares(&shares, &recipients)?;
                RekeyOutcome::Complete(RekeyResult {
                    nonce,
                    keys_hex,
                    keys_base64,
                    recipients,
                    verification_required,
                    verification_nonce,
                })
            }
        })
    }

    /// `GET sys/rekey/verify`.
    pub fn rekey_verify_status(&self, who: &Unsealed) -> Result<VerifyStatus> {
        who.require_root()?;
        Ok(self.shared.seal.rekey_verify_status()?)
    }

    /// `DELETE sys/rekey/verify`.
    pub fn rekey_verify_reset(&self, who: &Unsealed) -> Result<VerifyStatus> {
        who.require_root()?;
        Ok(self.shared.seal.rekey_verify_reset()?)
    }

    /// `PUT sys/rekey/verify`: one new share.
    pub async fn rekey_verify_update(&self, who: &Unsealed, share: &str, nonce: &str) -> Result<VerifyStatus> {
        who.require_root()?;
        let s = self.shared.seal.rekey_verify_update(share, nonce).await?;
        if s.complete {
            tracing::warn!(accessor = %who.accessor, "rekey verified: new shares in effect, old shares revoked");
        }
        Ok(s)
    }

    /// Rotate the root key (every KEK re-wrapped in one transaction). In
    /// shamir mode each call submits one current share; the K-th rotates.
    pub async fn rotate_root(&self, who: &Unsealed, share: Option<&str>, reset: bool) -> Result<RotateStatus> {
        who.require_root()?;
        // The others verify the announcement with the root they hold: the old one.
        let old_root = self.shared.keyring().ok();
        let s = self.shared.seal.rotate_root(share, reset).await;
        match &s {
            Ok(RotateStatus {
                keks_rewrapped: Some(n),
                ..
            }) => {
                tracing::warn!(accessor = %who.accessor, keks = n, "root key rotated");
                // Other servers hold the old root: they seal (see cluster.rs).
                if let Some(old_root) = &old_root {
                    self.shared.broadcast_signed(super::cluster::Event::Root, old_root);
                }
            }
            Ok(_) => tracing::info!(accessor = %who.accessor, "root rotation: share accepted"),
            Err(e) => tracing::warn!(accessor = %who.accessor, error = %e, "root rotation refused"),
        }
        Ok(s?)
    }
}

/// Validate `pgp_keys` (age recipients): none, or exactly one per share.
fn check_recipients(recipients: &[String], shares_count: u8) -> Result<()> {
    if recipients.is_empty() {
        return Ok(());
    }
    if recipients.len() != usize::from(shares_count) {
        return Err(ServiceError::Invalid(format!(
            "pgp_keys has {} entries; it needs exactly one age recipient per share ({shares_count})",
            recipients.len()
        )));
    }
    shares::parse_recipients("pgp_keys", recipients).map_err(ServiceError::Invalid)?;
    Ok(())
}

type Encoded = (Vec<Zeroizing<String>>, Vec<Zeroizing<String>>);

/// Hex and base64 of each share: in clear, or (with recipients) of the age
/// ciphertext of share i to recipient i. Plaintext texts are zeroized.
fn encode_shares(split: &[unseal::Share], recipients: &[String]) -> Result<Encoded> {
    if recipients.is_empty() {
        return Ok((
            split.iter().map(|s| s.to_hex()).collect(),
            split.iter().map(|s| s.to_base64()).collect(),
        ));
    }
    let parsed = shares::parse_recipients("pgp_keys", recipients).map_err(ServiceError::Invalid)?;
    let mut hex_out = Vec::with_capacity(split.len());
    let mut b64_out = Vec::with_capacity(split.len());
    for (share, r) in split.iter().zip(&parsed) {
        let ct = shares::encrypt_share(r, &share.to_hex()).map_err(ServiceError::Internal)?;
        hex_out.push(Zeroizing::new(hex::encode(&ct)));
        b64_out.push(Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&ct)));
    }
    Ok((hex_out, b64_out))
}

impl OperatorService {
    /// Init with each share encrypted to its custodian's age recipient
    /// (`pgp_keys`, one per share, checked before anything is created).
    pub async fn init_encrypted(&self, count: u8, threshold: u8, recipients: &[String]) -> Result<InitResult> {
        if recipients.is_empty() {
            return self.init(count, threshold).await;
        }
        check_recipients(recipients, count)?;
        let plain = self.init_split(count, threshold).await?;
        let (keys_hex, keys_base64) = encode_shares(&plain.0, recipients)?;
        drop(plain.0);
        Ok(InitResult {
            keys_hex,
            keys_base64,
            root_token: plain.1,
        })
    }
}
