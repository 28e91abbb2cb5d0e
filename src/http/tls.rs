//! TLS termination with rustls (TLS 1.3 and 1.2 only), optionally mutual:
//! with a client CA configured, every connection must present a certificate
//! that chains to it. Our own accept loop, because axum's `serve` takes plain
//! TCP only.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::extract::PeerCert;
use crate::config::ConnLimits;
use crate::service::ClientCert;

/// TLS set-up errors; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {what}")]
    Pem {
        /// file
        path: String,
        /// problem
        what: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |what: String| TlsError::Pem {
        path: path.display().to_string(),
        what,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// Build the server configuration from PEM files.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    client_crl: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
        path: key.display().to_string(),
        what: format!("cannot read a private key: {e}"),
    })?;
    let builder = ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12]);
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca.display())))?;
            }
            let mut verifier = WebPkiClientVerifier::builder(Arc::new(roots));
            if let Some(path) = client_crl {
                let crls = CertificateRevocationListDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| TlsError::Pem {
                        path: path.display().to_string(),
                        what: format!("bad PEM certificate revocation list: {e}"),
                    })?;
                if crls.is_empty() {
                    return Err(TlsError::Pem {
                        path: path.display().to_string(),
                        what: "no X509 CRL block found".into(),
                    });
                }
                verifier = verifier.with_crls(crls);
            }
            let verifier = verifier.build().map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The identity facts of a verified client certificate: SHA-256 of its
/// SubjectPublicKeyInfo, subject CN, DNS SANs.
fn client_cert(der: &[u8]) -> Option<Arc<ClientCert>> {
    use sha2::Digest;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let spki_sha256 = hex::encode(sha2::Sha256::digest(cert.public_key().raw));
    let subject_cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let dns_sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Arc::new(ClientCert {
        spki_sha256,
        subject_cn,
        dns_sans,
    }))
}

/// The server configuration new handshakes use. SIGHUP swaps it (see
/// `server::reload`); open connections keep the one they started with.
#[derive(Clone)]
pub struct SharedConfig(Arc<std::sync::RwLock<Arc<ServerConfig>>>);

impl std::fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedConfig(..)")
    }
}

impl SharedConfig {
    /// Wrap the first configuration.
    pub fn new(config: Arc<ServerConfig>) -> SharedConfig {
        SharedConfig(Arc::new(std::sync::RwLock::new(config)))
    }

    /// Use `config` for every new handshake from now on.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        if let Ok(mut slot) = self.0.write() {
            *slot = config;
        }
    }

    fn current(&self) -> Option<Arc<ServerConfig>> {
        self.0.read().ok().map(|c| c.clone())
    }
}

/// The accept loop of both listeners (`config` None: plain HTTP). At most
/// `limits.max_connections` connections are served at once: the loop
/// accepts the next one only when a slot is free (the others wait in the
/// kernel's backlog). Headers must arrive within `limits.header_timeout`
/// (which also ends idle keep-alive connections); bodies get their
/// deadline from [`transport::layer`](super::transport::layer).
pub async fn serve(
    listener: TcpListener,
    config: Option<SharedConfig>,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = match &config {
            None => None,
            Some(config) => match config.current() {
                Some(current) => Some(TlsAcceptor::from(current)),
                None => {
                    tracing::error!("TLS configuration lock poisoned; refusing the connection");
                    continue;
                }
            },
        };
        let app = app.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            // The slot is held as long as the connection lives.
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let Some(acceptor) = acceptor else {
                return serve_connection(tcp, peer, None, app, limits, stopping).await;
            };
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let peer_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|der| client_cert(der.as_ref()));
            serve_connection(tls, peer, peer_cert, app, limits, stopping).await;
        });
    }
    // Shutdown: no new connection; open ones finish their request in
    // flight and close (idle ones at once), for at most 30 s.
    let _ = stop.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(30), slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown: connections still open after 30 s; closing them");
    }
}

/// Serve one HTTP/1 connection with its peer facts.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    peer_cert: Option<Arc<ClientCert>>,
    app: Router,
    limits: ConnLimits,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = tower::ServiceExt::map_request(app, move |mut req: axum::extract::Request<_>| {
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        if let Some(cert) = &peer_cert {
            req.extensions_mut().insert(PeerCert(cert.clone()));
        }
        req
    });
    let service = TowerToHyperService::new(app);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        () = async {
            let _ = stopping.wait_for(|s| *s).await;
        } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
