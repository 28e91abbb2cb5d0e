//! `seal "pkcs11"`: the [`RootWrapper`] backed by the `hsm` crate, and the
//! boot-time auto-unseal loop with back-off.
//!
//! The decrypted root key is copied straight into locked memory and the
//! intermediate buffer is zeroized; errors carry the HSM's reason (token
//! missing, PIN refused, key not found), never a PIN or key byte.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{HsmFailure, RootWrapper, Seal};
use crate::secure_mem::KeyBytes;

/// The HSM as the seal sees it.
#[derive(Debug)]
pub(crate) struct Pkcs11Wrapper {
    /// the token key
    pub hsm: hsm::Hsm,
    /// `disabled = true`: only to migrate away from it
    pub disabled: bool,
}

impl RootWrapper for Pkcs11Wrapper {
    fn wrap(&self, root: &KeyBytes) -> Result<Vec<u8>, HsmFailure> {
        Ok(self.hsm.wrap_root(root.expose())?)
    }

    fn unwrap(&self, blob: &[u8]) -> Result<KeyBytes, HsmFailure> {
        let plain = self.hsm.unwrap_root(blob)?;
        KeyBytes::from_slice(&plain).ok_or(HsmFailure::KeyLength)
    }

    fn disabled(&self) -> bool {
        self.disabled
    }
}

/// First retry delay after a failed auto-unseal; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest pause between two auto-unseal attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Boot: try the HSM until the server is unsealed (or was initialized in
/// pkcs11 mode, which unseals at init). Each failure is logged once per
/// distinct reason and kept for seal-status/health; retries back off.
pub(crate) async fn auto_unseal_loop(seal: Arc<Seal>) {
    let mut backoff = FIRST_BACKOFF;
    let mut last_reason = String::new();
    loop {
        let status = seal.status();
        if !status.initialized {
            // Init in pkcs11 mode unseals by itself; check again later.
            let _ = seal.refresh_if_uninitialized().await;
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        if !status.sealed {
            return;
        }
        let started = Instant::now();
        let s = seal.clone();
        let result = tokio::task::spawn_blocking(move || s.auto_unseal()).await;
        match result {
            Ok(Ok(true)) => {
                tracing::info!(
                    unwrap_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "unsealed through the HSM"
                );
                return;
            }
            Ok(Ok(false)) => return,
            Ok(Err(e)) => {
                let reason = e.to_string();
                if reason != last_reason {
                    tracing::warn!(error = %reason, "HSM auto-unseal failed; staying sealed and retrying with back-off");
                    last_reason = reason;
                }
            }
            Err(join) => tracing::error!(error = %join, "HSM auto-unseal task failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
