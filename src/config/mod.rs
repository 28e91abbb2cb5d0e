//! Configuration: the TOML file, then `COFFER_*` environment variables,
//! resolved once into a validated [`Settings`]. Unknown keys are errors (a
//! typo must not silently leave TLS off).
//!
//! ```toml
//! disable_mlock = false
//! [listener]
//! address = "0.0.0.0:8200"
//! tls_cert = "/etc/coffer/tls/cert.pem"
//! tls_key = "/etc/coffer/tls/key.pem"
//! # tls_client_ca = "/etc/coffer/tls/clients-ca.pem"   # turns on mutual TLS
//! # tls_client_crl = "/etc/coffer/tls/clients.crl.pem"  # revoked client certificates (PEM CRLs)
//! # tls_disable = true                                  # plain HTTP, explicit only
//! [storage]
//! url = "sqlite:///var/lib/coffer/coffer.db"            # or postgres://user@host/db
//! # [seal] type = "pkcs11" …                            # HSM auto-unseal, see seal.rs
//! [audit]                                               # see docs/audit.md
//! # enabled = true              # false only to measure what auditing costs
//! # timeout_ms = 5000           # a request fails if its record is not committed by then
//! # checkpoint_interval_s = 60  # how often the chain head is signed
//! # retention_days = 365        # younger records cannot be pruned (0: any age)
//! # file = "/var/log/coffer/audit.jsonl"   # JSON-lines copy, reopened on SIGHUP
//! # syslog = "/dev/log"         # copy to the local syslog socket
//! # bulk_reveal_threshold = 100 # values per actor per call or minute → security signal
//! # failed_login_threshold = 10 # failed logins per source per minute → security signal
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::Deserialize;

use crate::service::audit::AuditSettings;
use crate::service::audit::signals::Thresholds;
use crate::service::audit::sinks::SinkSettings;

mod seal;
pub use seal::Pkcs11Settings;

/// Configuration errors; each names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// file
        path: String,
        /// cause
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// file
        path: String,
        /// parser message
        message: String,
    },
    /// A value is invalid.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    disable_mlock: bool,
    #[serde(default)]
    listener: RawListener,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    seal: seal::RawSeal,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    jobs: RawJobs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    enabled: Option<bool>,
    timeout_ms: Option<u64>,
    checkpoint_interval_s: Option<u64>,
    retention_days: Option<u64>,
    file: Option<PathBuf>,
    syslog: Option<PathBuf>,
    bulk_reveal_threshold: Option<u64>,
    failed_login_threshold: Option<u64>,
}

impl RawAudit {
    fn validate(self) -> Result<AuditSettings, ConfigError> {
        let d = AuditSettings::default();
        let positive = |key: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(ConfigError::Invalid(format!("audit.{key} must be greater than 0"))),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let timeout_ms = positive("timeout_ms", self.timeout_ms, d.timeout.as_millis() as u64)?;
        let checkpoint_s = positive(
            "checkpoint_interval_s",
            self.checkpoint_interval_s,
            d.checkpoint_interval.as_secs(),
        )?;
        // 0: no minimum age (records may be exported and pruned at once).
        let retention_days = self.retention_days.unwrap_or(d.retention.as_secs() / 86_400);
        Ok(AuditSettings {
            enabled: self.enabled.unwrap_or(true),
            timeout: Duration::from_millis(timeout_ms),
            checkpoint_interval: Duration::from_secs(checkpoint_s),
            retention: Duration::from_secs(retention_days.saturating_mul(86_400)),
            sinks: SinkSettings {
                file: self.file,
                syslog: self.syslog,
            },
            thresholds: Thresholds {
                bulk_reveal: positive(
                    "bulk_reveal_threshold",
                    self.bulk_reveal_threshold,
                    d.thresholds.bulk_reveal,
                )?,
                failed_logins: positive(
                    "failed_login_threshold",
                    self.failed_login_threshold,
                    d.thresholds.failed_logins,
                )?,
            },
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    tls_client_crl: Option<PathBuf>,
    #[serde(default)]
    tls_disable: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    url: Option<String>,
}

/// How the server listens.
#[derive(Debug, Clone)]
pub enum Listener {
    /// Plain HTTP (`tls_disable = true`, or dev mode).
    Plain {
        /// bind address
        address: SocketAddr,
    },
    /// HTTPS, optionally with client certificates.
    Tls {
        /// bind address
        address: SocketAddr,
        /// PEM certificate chain
        cert: PathBuf,
        /// PEM private key
        key: PathBuf,
        /// PEM CA bundle for client certificates (mutual TLS)
        client_ca: Option<PathBuf>,
        /// PEM certificate revocation lists for client certificates
        client_crl: Option<PathBuf>,
    },
}

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// listener
    pub listener: Listener,
    /// `sqlite://PATH` or `postgres://…`
    pub storage_url: String,
    /// run even if key memory cannot be locked
    pub disable_mlock: bool,
    /// `seal "pkcs11"`: the HSM that wraps the root key (None: shamir)
    pub pkcs11: Option<Pkcs11Settings>,
    /// `[audit]`
    pub audit: AuditSettings,
    /// `[jobs] interval_ms`: period of the background jobs (purge of
    /// expired tokens…), run by one server of a cluster at a time
    pub jobs_interval: Duration,
}

/// Default period of the background jobs.
pub const DEFAULT_JOBS_INTERVAL_MS: u64 = 60_000;

/// Default address, as Vault's.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8200";
/// Default storage when none is configured.
pub const DEFAULT_STORAGE: &str = "sqlite:///var/lib/coffer/coffer.db";

impl Settings {
    /// Read `path` (if given), apply `COFFER_LISTEN_ADDRESS`,
    /// `COFFER_STORAGE_URL` and `COFFER_DISABLE_MLOCK`, then validate.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut raw = match path {
            None => RawFile::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: p.display().to_string(),
                    message: e.message().to_owned(),
                })?
            }
        };
        if let Ok(v) = std::env::var("COFFER_LISTEN_ADDRESS") {
            raw.listener.address = Some(v);
        }
        if let Ok(v) = std::env::var("COFFER_STORAGE_URL") {
            raw.storage.url = Some(v);
        }
        if let Ok(v) = std::env::var("COFFER_DISABLE_MLOCK") {
            raw.disable_mlock = matches!(v.as_str(), "1" | "true" | "yes");
        }
        Self::validate(raw)
    }

    fn validate(raw: RawFile) -> Result<Settings, ConfigError> {
        let addr_text = raw.listener.address.as_deref().unwrap_or(DEFAULT_ADDRESS);
        let address: SocketAddr = addr_text
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("listener.address {addr_text:?} is not an IP:port address")))?;
        let l = raw.listener;
        let listener = if l.tls_disable {
            if l.tls_client_ca.is_some() || l.tls_client_crl.is_some() {
                return Err(ConfigError::Invalid(
                    "listener.tls_client_ca and tls_client_crl need TLS; remove them or set listener.tls_disable = false"
                        .into(),
                ));
            }
            Listener::Plain { address }
        } else {
            match (l.tls_cert, l.tls_key) {
                (Some(cert), Some(key)) => Listener::Tls {
                    address,
                    cert,
                    key,
                    client_ca: l.tls_client_ca,
                    client_crl: l.tls_client_crl,
                },
                _ => {
                    return Err(ConfigError::Invalid(
                        "listener.tls_cert and listener.tls_key are required; to serve plain HTTP \
                         set listener.tls_disable = true explicitly"
                            .into(),
                    ));
                }
            }
        };
        let storage_url = raw.storage.url.unwrap_or_else(|| DEFAULT_STORAGE.to_owned());
        if !(storage_url.starts_with("sqlite:")
            || storage_url.starts_with("postgres://")
            || storage_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(
                "storage.url must start with sqlite:// or postgres://".into(),
            ));
        }
        let interval_ms = raw.jobs.interval_ms.unwrap_or(DEFAULT_JOBS_INTERVAL_MS);
        if interval_ms < 100 {
            return Err(ConfigError::Invalid(
                "jobs.interval_ms must be at least 100 (milliseconds)".into(),
            ));
        }
        Ok(Settings {
            listener,
            storage_url,
            disable_mlock: raw.disable_mlock,
            pkcs11: raw.seal.validate()?,
            audit: raw.audit.validate()?,
            jobs_interval: Duration::from_millis(interval_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "test".into(),
            message: e.message().to_owned(),
        })?;
        Settings::validate(raw)
    }

    #[test]
    fn tls_is_required_unless_disabled_explicitly() {
        let err = parse("[listener]\naddress = \"127.0.0.1:1\"\n").expect_err("no TLS files");
        assert!(err.to_string().contains("tls_disable"), "{err}");
        let s = parse("[listener]\ntls_disable = true\n").expect("plain");
        assert!(matches!(s.listener, Listener::Plain { .. }));
        let s =
            parse("[listener]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_client_ca = \"ca.pem\"\n").expect("mtls");
        assert!(matches!(s.listener, Listener::Tls { client_ca: Some(_), .. }));
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let err = parse("[listener]\ntls_disabled = true\n").expect_err("unknown key");
        assert!(err.to_string().contains("tls_disabled"), "{err}");
        let err = parse("[listener]\ntls_disable = true\naddress = \"localhost\"\n").expect_err("bad addr");
        assert!(err.to_string().contains("listener.address"), "{err}");
        let err = parse("[listener]\ntls_disable = true\n[storage]\nurl = \"mysql://x\"\n").expect_err("bad url");
        assert!(err.to_string().contains("storage.url"), "{err}");
    }

    #[test]
    fn jobs_interval_defaults_and_is_bounded() {
        let s = parse("[listener]\ntls_disable = true\n").expect("default");
        assert_eq!(s.jobs_interval, Duration::from_millis(DEFAULT_JOBS_INTERVAL_MS));
        let s = parse("[listener]\ntls_disable = true\n[jobs]\ninterval_ms = 250\n").expect("set");
        assert_eq!(s.jobs_interval, Duration::from_millis(250));
        let err = parse("[listener]\ntls_disable = true\n[jobs]\ninterval_ms = 5\n").expect_err("too small");
        assert!(err.to_string().contains("jobs.interval_ms"), "{err}");
        let err = parse("[listener]\ntls_disable = true\n[jobs]\nperiod = 5\n").expect_err("unknown key");
        assert!(err.to_string().contains("period"), "{err}");
    }
}
