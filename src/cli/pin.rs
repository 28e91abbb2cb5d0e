//! Server certificate pinning: `--pin sha256:<hex>` (or `COFFER_PIN`), or a
//! pin `coffer trust` stored for the address (trust on first use, after the
//! user confirmed the fingerprint). A pinned connection accepts exactly the
//! certificate whose public key (SPKI) has that SHA-256 — self-signed or
//! not — and refuses any other loudly; the handshake signature is still
//! verified, so only the key's holder can answer.
//!
//! Pins live in `$XDG_CONFIG_HOME/coffer/known_servers.json` (0600),
//! address → `sha256:<hex>`; they hold no secret.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use super::credentials::Store;

const FILE: &str = "known_servers.json";

/// `sha256:<64 hex>` of a DER certificate's SubjectPublicKeyInfo.
pub(crate) fn spki_pin(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(format!("sha256:{}", hex::encode(Sha256::digest(cert.public_key().raw))))
}

/// Normalize a user-given pin (`sha256:HEX` or bare HEX, any case).
pub(crate) fn parse_pin(s: &str) -> anyhow::Result<String> {
    let hex_part = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{s:?} is not a certificate pin: expected sha256:<64 hex digits> (from `coffer trust`)");
    }
    Ok(format!("sha256:{hex_part}"))
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Accepts the one certificate whose SPKI matches the pin.
#[derive(Debug)]
struct PinVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
    /// what the server presented (for `coffer trust`), pinned or not
    seen: Option<Arc<Mutex<Option<String>>>>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got =
            spki_pin(end_entity).ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        if let Some(seen) = &self.seen
            && let Ok(mut s) = seen.lock()
        {
            *s = Some(got.clone());
            // Capturing only: never let this connection carry a request.
            return Err(rustls::Error::General("certificate captured".into()));
        }
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "THE SERVER'S CERTIFICATE CHANGED: pinned {}, presented {got}. Someone may be intercepting \
                 the connection; if the server's key was replaced on purpose, check the new fingerprint with \
                 its operator and run `coffer trust` again",
                self.pin
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A rustls client configuration that trusts exactly `pin` (and presents
/// the client certificate, when given).
pub(crate) fn pinned_config(pin: &str, client: Option<(&PathBuf, &PathBuf)>) -> anyhow::Result<rustls::ClientConfig> {
    config(
        PinVerifier {
            pin: pin.to_owned(),
            provider: provider(),
            seen: None,
        },
        client,
    )
}

fn config(verifier: PinVerifier, client: Option<(&PathBuf, &PathBuf)>) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let builder = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    Ok(match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("cannot read client certificate {}", cert.display()))?;
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("cannot read client key {}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .context("the client certificate and key do not match")?
        }
    })
}

fn store_path() -> anyhow::Result<PathBuf> {
    Ok(Store::locate()?.dir().join(FILE))
}

fn load() -> anyhow::Result<BTreeMap<String, String>> {
    let path = store_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The pin stored for `address`, if any.
pub(crate) fn stored(address: &str) -> anyhow::Result<Option<String>> {
    Ok(load()?.remove(address))
}

fn save(address: &str, pin: &str) -> anyhow::Result<PathBuf> {
    let store = Store::locate()?;
    let _lock = store.lock()?; // creates the directory 0700
    let mut pins = load()?;
    pins.insert(address.to_owned(), pin.to_owned());
    let path = store_path()?;
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = super::credentials::create_private(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(&pins)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The SPKI pin of the certificate `https://host:port` presents.
async fn fetch(address: &str) -> anyhow::Result<String> {
    let rest = address
        .strip_prefix("https://")
        .with_context(|| format!("{address} is not an https:// address: there is no certificate to trust"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let target = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:443")
    };
    let seen = Arc::new(Mutex::new(None));
    let verifier = PinVerifier {
        pin: String::new(),
        provider: provider(),
        seen: Some(seen.clone()),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config(verifier, None)?));
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
        .with_context(|| format!("{host} is not a host name or IP address"))?;
    let tcp = tokio::net::TcpStream::connect(&target)
        .await
        .with_context(|| format!("cannot connect to {target}"))?;
    // The verifier aborts the handshake once it has the certificate.
    let _ = connector.connect(name, tcp).await;
    let pin = seen.lock().ok().and_then(|s| s.clone());
    pin.with_context(|| format!("{target} did not present a certificate"))
}

/// `coffer trust`: show the server's fingerprint, confirm, store the pin.
pub(crate) async fn trust(address: &str, expect: Option<&str>) -> anyhow::Result<u8> {
    let pin = fetch(address).await?;
    let previous = stored(address)?;
    println!("{address} presents a certificate whose public key is\n  {pin}");
    if let Some(p) = &previous {
        if *p == pin {
            println!("It is already pinned; nothing to do.");
            return Ok(0);
        }
        println!("WARNING: the pin stored for this address is {p}: the server's key changed.");
    }
    match expect {
        Some(e) => {
            if parse_pin(e)? != pin {
                bail!("the server presents {pin}, not the expected {e}: not trusted");
            }
        }
        None if std::io::stdin().is_terminal() => {
            eprint!("Compare it with the fingerprint the server's operator gave you. Trust it? [y/N] ");
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                bail!("not trusted; nothing was stored");
            }
        }
        None => bail!(
            "not a terminal, so nobody can confirm it: pass --expect {pin} once you have checked it with the \
             server's operator"
        ),
    }
    let path = save(address, &pin)?;
    println!(
        "Pinned in {}: coffer now accepts this key only, for {address}.",
        path.display()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pins_are_normalized_and_checked() {
        let hex = "AB".repeat(32);
        let want = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(super::parse_pin(&hex).expect("bare hex"), want);
        assert_eq!(super::parse_pin(&format!("sha256:{hex}")).expect("prefixed"), want);
        assert!(super::parse_pin("sha256:abc").is_err());
        assert!(super::parse_pin(&"zz".repeat(32)).is_err());
    }
}
