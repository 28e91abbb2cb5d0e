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
//! # trusted_proxies = ["10.0.0.0/8"]  # their X-Forwarded-For names the client (http/proxy.rs)
//! # header_timeout_ms = 10000   # headers (and idle keep-alive) deadline (http/transport.rs)
//! # body_timeout_ms = 30000     # body deadline from the headers
//! # max_connections = 1024      # served at once; more wait in the backlog
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
//! [metrics]
//! # token_file = "/etc/coffer/metrics-token"            # turns on GET /metrics (bearer token)
//! [orgs]
//! # max_per_user = 10           # organizations one user may create (root: no limit; 0: only root)
//! # deletion_window_s = 604800  # a deleted org/project/environment is restorable this long (7 days), then purged
//! [breach_check]                                        # leaked-password check, see service/breach.rs
//! # enabled = false             # off unless set (the packaged config turns it on)
//! # url = "https://api.pwnedpasswords.com"  # or a self-hosted mirror of the range files
//! # timeout_ms = 2000           # then the check fails open (warning + metric)
//! ```
//!
//! Every key can be overridden by `COFFER_<SECTION>_<KEY>` (top-level keys:
//! `COFFER_<KEY>`), e.g. `COFFER_STORAGE_URL`, `COFFER_LISTENER_ADDRESS`;
//! `[seal]` keys are file-only. The full list is [`ENV_KEYS`]; the
//! documented default file is `packaging/coffer.toml`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

mod seal;
pub(crate) use seal::Pkcs11Settings;

/// Configuration errors; each names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
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
    /// A value is invalid; `at` says where it came from (file and line, or
    /// the environment variable).
    #[error("{at}: {key}: {message}")]
    Value {
        /// `file:line` or `environment variable COFFER_…`
        at: String,
        /// dotted key, e.g. `listener.address`
        key: String,
        /// what is wrong
        message: String,
    },
}

/// `(section, key, environment variable)` of every key that the
/// environment can override. `section` "" is the top level.
pub(crate) const ENV_KEYS: &[(&str, &str, &str)] = &[
    ("", "disable_mlock", "COFFER_DISABLE_MLOCK"),
    ("", "log_level", "COFFER_LOG_LEVEL"),
    ("", "log_format", "COFFER_LOG_FORMAT"),
    ("listener", "address", "COFFER_LISTENER_ADDRESS"),
    ("listener", "tls_cert", "COFFER_LISTENER_TLS_CERT"),
    ("listener", "tls_key", "COFFER_LISTENER_TLS_KEY"),
    ("listener", "tls_client_ca", "COFFER_LISTENER_TLS_CLIENT_CA"),
    ("listener", "tls_client_crl", "COFFER_LISTENER_TLS_CLIENT_CRL"),
    ("listener", "tls_disable", "COFFER_LISTENER_TLS_DISABLE"),
    ("listener", "trusted_proxies", "COFFER_LISTENER_TRUSTED_PROXIES"),
    ("listener", "header_timeout_ms", "COFFER_LISTENER_HEADER_TIMEOUT_MS"),
    ("listener", "body_timeout_ms", "COFFER_LISTENER_BODY_TIMEOUT_MS"),
    ("listener", "max_connections", "COFFER_LISTENER_MAX_CONNECTIONS"),
    ("storage", "url", "COFFER_STORAGE_URL"),
    ("metrics", "token_file", "COFFER_METRICS_TOKEN_FILE"),
    ("audit", "enabled", "COFFER_AUDIT_ENABLED"),
    ("audit", "timeout_ms", "COFFER_AUDIT_TIMEOUT_MS"),
    ("audit", "checkpoint_interval_s", "COFFER_AUDIT_CHECKPOINT_INTERVAL_S"),
    ("audit", "retention_days", "COFFER_AUDIT_RETENTION_DAYS"),
    ("audit", "file", "COFFER_AUDIT_FILE"),
    ("audit", "syslog", "COFFER_AUDIT_SYSLOG"),
    ("audit", "bulk_reveal_threshold", "COFFER_AUDIT_BULK_REVEAL_THRESHOLD"),
    ("audit", "failed_login_threshold", "COFFER_AUDIT_FAILED_LOGIN_THRESHOLD"),
    ("jobs", "interval_ms", "COFFER_JOBS_INTERVAL_MS"),
    ("orgs", "max_per_user", "COFFER_ORGS_MAX_PER_USER"),
    ("orgs", "deletion_window_s", "COFFER_ORGS_DELETION_WINDOW_S"),
    ("breach_check", "enabled", "COFFER_BREACH_CHECK_ENABLED"),
    ("breach_check", "url", "COFFER_BREACH_CHECK_URL"),
    ("breach_check", "timeout_ms", "COFFER_BREACH_CHECK_TIMEOUT_MS"),
];

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
    log_level: Option<String>,
    log_format: Option<String>,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    orgs: RawOrgs,
    #[serde(default)]
    breach_check: RawBreachCheck,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreachCheck {
    enabled: Option<bool>,
    url: Option<String>,
    timeout_ms: Option<u64>,
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
    fn validate(self) -> Result<AuditConfig, ConfigError> {
        let d = AuditConfig::default();
        let positive = |key: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(value_error(&format!("audit.{key}"), "must be greater than 0".into())),
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
        Ok(AuditConfig {
            enabled: self.enabled.unwrap_or(true),
            timeout: Duration::from_millis(timeout_ms),
            checkpoint_interval: Duration::from_secs(checkpoint_s),
            retention: Duration::from_secs(retention_days.saturating_mul(86_400)),
            file: self.file,
            syslog: self.syslog,
            bulk_reveal_threshold: positive(
                "bulk_reveal_threshold",
                self.bulk_reveal_threshold,
                d.bulk_reveal_threshold,
            )?,
            failed_login_threshold: positive(
                "failed_login_threshold",
                self.failed_login_threshold,
                d.failed_login_threshold,
            )?,
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
struct RawOrgs {
    max_per_user: Option<u64>,
    deletion_window_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    token_file: Option<PathBuf>,
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
    /// CIDRs or addresses
    trusted_proxies: Option<Vec<String>>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    max_connections: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    url: Option<String>,
}

/// How the server listens.
#[derive(Debug, Clone)]
pub(crate) enum Listener {
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

/// `[audit]` as configured (docs/audit.md), defaults applied. The audit
/// service builds its runtime settings from it
/// (`service::audit::AuditSettings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditConfig {
    /// false: no record is written (benchmark comparisons only)
    pub enabled: bool,
    /// how long a request waits for its record to commit
    pub timeout: Duration,
    /// how often the chain head is signed
    pub checkpoint_interval: Duration,
    /// records younger than this cannot be pruned
    pub retention: Duration,
    /// JSON-lines copy of every record
    pub file: Option<PathBuf>,
    /// copy to this local syslog socket
    pub syslog: Option<PathBuf>,
    /// values per actor per call or minute that raise a security signal
    pub bulk_reveal_threshold: u64,
    /// failed logins per source per minute that raise a security signal
    pub failed_login_threshold: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            timeout: Duration::from_secs(5),
            checkpoint_interval: Duration::from_secs(60),
            retention: Duration::from_secs(365 * 86_400),
            file: None,
            syslog: None,
            bulk_reveal_threshold: 100,
            failed_login_threshold: 10,
        }
    }
}

/// The connection limits of `[listener]` (docs: packaging/coffer.toml),
/// enforced by `http::transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// time to receive a request's headers, counted from the moment the
    /// connection waits for them: it also closes idle keep-alive and
    /// silent connections
    pub header_timeout: Duration,
    /// time to receive a request's whole body, from its headers
    pub body_timeout: Duration,
    /// connections served at once; more wait in the kernel's backlog
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_timeout: Duration::from_millis(DEFAULT_HEADER_TIMEOUT_MS),
            body_timeout: Duration::from_millis(DEFAULT_BODY_TIMEOUT_MS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Default `listener.header_timeout_ms`.
pub(crate) const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Default `listener.body_timeout_ms`.
pub(crate) const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// Default `listener.max_connections`.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Validated server settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// listener
    pub listener: Listener,
    /// `sqlite://PATH` or `postgres://…`
    pub storage_url: String,
    /// run even if key memory cannot be locked
    pub disable_mlock: bool,
    /// `seal "pkcs11"`: the HSM that wraps the root key (None: shamir)
    pub pkcs11: Option<Pkcs11Settings>,
    /// `[audit]`
    pub audit: AuditConfig,
    /// `[jobs] interval_ms`: period of the background jobs (purge of
    /// expired tokens…), run by one server of a cluster at a time
    pub jobs_interval: Duration,
    /// tracing filter directive (`info`, `debug`, `coffer=debug,info`);
    /// reloaded on SIGHUP
    pub log_level: String,
    /// `json` or `text`; None: JSON unless stderr is a terminal
    pub log_format: Option<LogFormat>,
    /// file holding the bearer token that `GET /metrics` requires (None:
    /// no /metrics endpoint)
    pub metrics_token_file: Option<PathBuf>,
    /// `listener.trusted_proxies`: peers whose `X-Forwarded-For` names the
    /// client (empty: the TCP peer is the client)
    pub trusted_proxies: Vec<IpNet>,
    /// `[orgs] max_per_user`: organizations one user may create (root is
    /// not limited; 0: only root creates organizations)
    pub max_orgs_per_user: u64,
    /// `[orgs] deletion_window_s`: how long a deleted organization,
    /// project or environment stays restorable before the purge job
    /// erases it
    pub deletion_window: Duration,
    /// `listener.header_timeout_ms`, `body_timeout_ms`, `max_connections`
    /// (a restart applies changes)
    pub conn_limits: ConnLimits,
    /// `[breach_check]`: the leaked-password check (off by default)
    pub breach_check: BreachCheck,
    /// the file the settings were read from (SIGHUP re-reads it)
    pub source: Option<PathBuf>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// one JSON object per line (for journald/log shippers)
    Json,
    /// human-readable
    Text,
}

/// Organizations one user may create unless `[orgs] max_per_user` says
/// otherwise (root is not limited).
pub const DEFAULT_MAX_ORGS_PER_USER: u64 = 10;

/// How long a deleted organization, project or environment stays
/// restorable unless `[orgs] deletion_window_s` says otherwise: 7 days.
pub(crate) const DEFAULT_DELETION_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Default period of the background jobs.
pub(crate) const DEFAULT_JOBS_INTERVAL_MS: u64 = 60_000;

/// Default address, as Vault's.
pub(crate) const DEFAULT_ADDRESS: &str = "127.0.0.1:8200";
/// Default storage when none is configured.
pub(crate) const DEFAULT_STORAGE: &str = "sqlite:///var/lib/coffer/coffer.db";

impl Settings {
    /// Read `path` (if given), apply the `COFFER_<SECTION>_<KEY>`
    /// overrides ([`ENV_KEYS`]), then validate. Errors name the key and
    /// where its value came from (file line or environment variable).
    pub(crate) fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let text = match path {
            None => String::new(),
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
        };
        let shown = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(no file)".into());
        let mut settings = Self::from_text(&text, &shown, |var| std::env::var(var).ok())?;
        settings.source = path.map(Path::to_path_buf);
        Ok(settings)
    }

    /// [`Settings::load`] of a file's `text` (named `shown` in errors) with
    /// the environment `env` (a variable's value by name).
    pub(crate) fn from_text(
        text: &str,
        shown: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut raw = parse_file(text, shown)?;
        let mut from_env: Vec<(&str, &str)> = Vec::new();
        for &(section, key, var) in ENV_KEYS {
            if let Some(v) = env(var) {
                raw.set(section, key, v).map_err(|message| ConfigError::Value {
                    at: format!("environment variable {var}"),
                    key: dotted(section, key),
                    message,
                })?;
                from_env.push((section, key));
            }
        }
        // The name before COFFER_LISTENER_ADDRESS existed; kept for old setups.
        if env("COFFER_LISTENER_ADDRESS").is_none()
            && let Some(v) = env("COFFER_LISTEN_ADDRESS")
        {
            raw.listener.address = Some(v);
            from_env.push(("listener", "address"));
        }
        Self::validate(raw).map_err(|e| match e {
            ConfigError::Value { key, message, .. } => {
                let at = match from_env.iter().find(|(s, k)| dotted(s, k) == key) {
                    Some((s, k)) => ENV_KEYS
                        .iter()
                        .find(|(es, ek, _)| es == s && ek == k)
                        .map(|(_, _, var)| format!("environment variable {var}"))
                        .unwrap_or_else(|| "environment variable COFFER_LISTEN_ADDRESS".into()),
                    None => match key_line(text, &key) {
                        Some(line) => format!("config file {shown}, line {line}"),
                        None => format!("config file {shown} (default value)"),
                    },
                };
                ConfigError::Value { at, key, message }
            }
            other => other,
        })
    }

    fn validate(raw: RawFile) -> Result<Settings, ConfigError> {
        let addr_text = raw.listener.address.as_deref().unwrap_or(DEFAULT_ADDRESS);
        let address: SocketAddr = addr_text
            .parse()
            .map_err(|_| value_error("listener.address", format!("{addr_text:?} is not an IP:port address")))?;
        let l = raw.listener;
        let trusted_proxies = l
            .trusted_proxies
            .iter()
            .flatten()
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        value_error(
                            "listener.trusted_proxies",
                            format!("{s:?} is not an address or a network like 10.0.0.0/8"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let conn_limits = conn_limits(&l)?;
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
            return Err(value_error(
                "storage.url",
                "must start with sqlite:// or postgres://".into(),
            ));
        }
        let interval_ms = raw.jobs.interval_ms.unwrap_or(DEFAULT_JOBS_INTERVAL_MS);
        if interval_ms < 100 {
            return Err(value_error(
                "jobs.interval_ms",
                "must be at least 100 (milliseconds)".into(),
            ));
        }
        let log_level = raw.log_level.unwrap_or_else(|| "info".to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            return Err(value_error(
                "log_level",
                format!("not a log filter ({e}); use e.g. \"info\" or \"coffer=debug,info\""),
            ));
        }
        let log_format = match raw.log_format.as_deref() {
            None => None,
            Some("json") => Some(LogFormat::Json),
            Some("text") => Some(LogFormat::Text),
            Some(other) => {
                return Err(value_error(
                    "log_format",
                    format!("{other:?} is not \"json\" or \"text\""),
                ));
            }
        };
        Ok(Settings {
            listener,
            storage_url,
            disable_mlock: raw.disable_mlock,
            pkcs11: raw.seal.validate()?,
            audit: raw.audit.validate()?,
            jobs_interval: Duration::from_millis(interval_ms),
            log_level,
            log_format,
            metrics_token_file: raw.metrics.token_file,
            trusted_proxies,
            max_orgs_per_user: raw.orgs.max_per_user.unwrap_or(DEFAULT_MAX_ORGS_PER_USER),
            deletion_window: raw
                .orgs
                .deletion_window_s
                .map_or(DEFAULT_DELETION_WINDOW, Duration::from_secs),
            conn_limits,
            breach_check: breach_check(raw.breach_check)?,
            source: None,
        })
    }
}

/// `[breach_check]`, validated (the service's `breach::BreachSettings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BreachCheck {
    /// ask the range API at all (default false; the packaged file: true)
    pub enabled: bool,
    /// base URL of the range API
    pub url: String,
    /// per-query deadline, then the check fails open
    pub timeout: Duration,
}

/// Default `breach_check.url`: Have I Been Pwned's range API.
pub(crate) const DEFAULT_BREACH_URL: &str = "https://api.pwnedpasswords.com";
/// Default `breach_check.timeout_ms`.
pub(crate) const DEFAULT_BREACH_TIMEOUT: Duration = Duration::from_secs(2);

fn breach_check(raw: RawBreachCheck) -> Result<BreachCheck, ConfigError> {
    let url = raw.url.unwrap_or_else(|| DEFAULT_BREACH_URL.to_owned());
    if !(url.starts_with("https://") || url.starts_with("http://")) || reqwest::Url::parse(&url).is_err() {
        return Err(value_error(
            "breach_check.url",
            format!("{url:?} is not an http(s) URL like https://api.pwnedpasswords.com"),
        ));
    }
    let timeout = match raw.timeout_ms {
        None => DEFAULT_BREACH_TIMEOUT,
        Some(0) => return Err(value_error("breach_check.timeout_ms", "must be at least 1".into())),
        Some(ms) => Duration::from_millis(ms),
    };
    Ok(BreachCheck {
        enabled: raw.enabled.unwrap_or(false),
        url,
        timeout,
    })
}

fn value_error(key: &str, message: String) -> ConfigError {
    ConfigError::Value {
        at: String::new(),
        key: key.to_owned(),
        message,
    }
}

fn dotted(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_owned()
    } else {
        format!("{section}.{key}")
    }
}

/// 1-based line of byte offset `at` in `text`.
fn line_at(text: &str, at: usize) -> usize {
    text.get(..at).unwrap_or(text).matches('\n').count() + 1
}

/// The line where dotted `key` is set in the file (a flat scan: the
/// config has one level of `[section]` tables and `key = value` lines).
fn key_line(text: &str, key: &str) -> Option<usize> {
    let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            current = h.trim().to_owned();
        } else if current == section
            && let Some((k, _)) = t.split_once('=')
            && k.trim() == name
        {
            return Some(i + 1);
        }
    }
    None
}

/// Parse the file; a syntax error, a mistyped or an unknown key names
/// the line.
fn parse_file(text: &str, shown: &str) -> Result<RawFile, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end().to_owned();
        match e.span() {
            Some(span) => ConfigError::Parse {
                path: format!("{shown}, line {}", line_at(text, span.start)),
                message,
            },
            None => ConfigError::Parse {
                path: shown.to_owned(),
                message,
            },
        }
    })
}

/// The connection limits of `[listener]`, each at least 1.
fn conn_limits(l: &RawListener) -> Result<ConnLimits, ConfigError> {
    let positive = |key: &str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(value_error(key, "must be at least 1".into())),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    Ok(ConnLimits {
        header_timeout: Duration::from_millis(positive(
            "listener.header_timeout_ms",
            l.header_timeout_ms,
            DEFAULT_HEADER_TIMEOUT_MS,
        )?),
        body_timeout: Duration::from_millis(positive(
            "listener.body_timeout_ms",
            l.body_timeout_ms,
            DEFAULT_BODY_TIMEOUT_MS,
        )?),
        max_connections: usize::try_from(positive(
            "listener.max_connections",
            l.max_connections,
            DEFAULT_MAX_CONNECTIONS as u64,
        )?)
        .unwrap_or(usize::MAX),
    })
}

fn env_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        _ => Err(format!("{v:?} is not a boolean (true/false/1/0)")),
    }
}

fn env_u64(v: &str) -> Result<u64, String> {
    v.parse().map_err(|_| format!("{v:?} is not a non-negative integer"))
}

impl RawFile {
    /// Apply one environment override.
    fn set(&mut self, section: &str, key: &str, v: String) -> Result<(), String> {
        match (section, key) {
            ("", "disable_mlock") => self.disable_mlock = env_bool(&v)?,
            ("", "log_level") => self.log_level = Some(v),
            ("", "log_format") => self.log_format = Some(v),
            ("listener", "address") => self.listener.address = Some(v),
            ("listener", "tls_cert") => self.listener.tls_cert = Some(v.into()),
            ("listener", "tls_key") => self.listener.tls_key = Some(v.into()),
            ("listener", "tls_client_ca") => self.listener.tls_client_ca = Some(v.into()),
            ("listener", "tls_client_crl") => self.listener.tls_client_crl = Some(v.into()),
            ("listener", "tls_disable") => self.listener.tls_disable = env_bool(&v)?,
            ("listener", "header_timeout_ms") => self.listener.header_timeout_ms = Some(env_u64(&v)?),
            ("listener", "body_timeout_ms") => self.listener.body_timeout_ms = Some(env_u64(&v)?),
            ("listener", "max_connections") => self.listener.max_connections = Some(env_u64(&v)?),
            ("listener", "trusted_proxies") => {
                self.listener.trusted_proxies = Some(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            ("storage", "url") => self.storage.url = Some(v),
            ("metrics", "token_file") => self.metrics.token_file = Some(v.into()),
            ("audit", "enabled") => self.audit.enabled = Some(env_bool(&v)?),
            ("audit", "timeout_ms") => self.audit.timeout_ms = Some(env_u64(&v)?),
            ("audit", "checkpoint_interval_s") => self.audit.checkpoint_interval_s = Some(env_u64(&v)?),
            ("audit", "retention_days") => self.audit.retention_days = Some(env_u64(&v)?),
            ("audit", "file") => self.audit.file = Some(v.into()),
            ("audit", "syslog") => self.audit.syslog = Some(v.into()),
            ("audit", "bulk_reveal_threshold") => self.audit.bulk_reveal_threshold = Some(env_u64(&v)?),
            ("audit", "failed_login_threshold") => self.audit.failed_login_threshold = Some(env_u64(&v)?),
            ("jobs", "interval_ms") => self.jobs.interval_ms = Some(env_u64(&v)?),
            ("orgs", "max_per_user") => self.orgs.max_per_user = Some(env_u64(&v)?),
            ("orgs", "deletion_window_s") => self.orgs.deletion_window_s = Some(env_u64(&v)?),
            ("breach_check", "enabled") => self.breach_check.enabled = Some(env_bool(&v)?),
            ("breach_check", "url") => self.breach_check.url = Some(v),
            ("breach_check", "timeout_ms") => self.breach_check.timeout_ms = Some(env_u64(&v)?),
            _ => return Err("not overridable from the environment".into()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::validate(parse_file(text, "test")?)
    }

    #[test]
    fn errors_name_the_line() {
        let err =
            parse("log_level = \"info\"\n[listener]\ntls_disable = true\n\nbogus = 1\n").expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("line 5") && msg.contains("bogus"), "{msg}");
        let err = parse("[listener]\ntls_disable = \"yes\"\n").expect_err("mistyped");
        assert!(err.to_string().contains("line 2"), "{err}");
        assert_eq!(
            key_line("a = 1\n[listener]\n\naddress = \"x\"\n", "listener.address"),
            Some(4)
        );
        assert_eq!(key_line("address = 1\n", "listener.address"), None);
    }

    /// The packaged default config parses as shipped, documents every
    /// key, and still parses with every commented key turned on.
    #[test]
    fn the_default_config_documents_every_key() {
        let shipped = include_str!("../../packaging/coffer.toml");
        parse(shipped).expect("packaging/coffer.toml parses");
        for (section, key, _) in ENV_KEYS {
            let dotted = dotted(section, key);
            assert!(
                shipped
                    .lines()
                    .any(|l| l.trim_start_matches(['#', ' ']).starts_with(&format!("{key} ="))),
                "packaging/coffer.toml does not document {dotted}"
            );
        }
        for key in ["type", "module", "token_label", "key_label", "pin_file", "disabled"] {
            assert!(shipped.contains(&format!("# {key} =")), "seal.{key} undocumented");
        }
        // Uncomment the top-level and [listener]/[metrics] keys (not the
        // [seal] example, whose keys conflict): still a valid file.
        let mut on = String::new();
        let mut in_seal = false;
        for line in shipped.lines() {
            in_seal |= line.starts_with("# [seal]");
            match line.strip_prefix("# ") {
                Some(rest)
                    if !in_seal
                        && !rest.starts_with("tls_disable")
                        && rest
                            .split_once(" = ")
                            .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')) =>
                {
                    on.push_str(rest);
                }
                _ => on.push_str(line),
            }
            on.push('\n');
        }
        let s = parse(&on).expect("every documented key is accepted");
        assert!(s.metrics_token_file.is_some() && s.log_format.is_some());
        assert!(matches!(
            s.listener,
            Listener::Tls {
                client_crl: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn every_env_key_is_settable() {
        for (section, key, var) in ENV_KEYS {
            let mut raw = RawFile::default();
            let v = if key.ends_with("disable") || matches!(*key, "disable_mlock" | "enabled") {
                "true"
            } else if key.ends_with("_ms")
                || key.ends_with("_s")
                || key.ends_with("_days")
                || key.ends_with("threshold")
                || key.starts_with("max_")
            {
                "7"
            } else {
                "x"
            };
            raw.set(section, key, v.into()).unwrap_or_else(|e| panic!("{var}: {e}"));
            assert_eq!(
                *var,
                format!("COFFER_{}", dotted(section, key).replace('.', "_").to_uppercase())
            );
        }
    }

    #[test]
    fn orgs_max_per_user_defaults_to_ten_and_takes_zero() {
        let plain = "[listener]\ntls_disable = true\n";
        assert_eq!(parse(plain).expect("default").max_orgs_per_user, 10);
        let zero = parse(&format!("{plain}[orgs]\nmax_per_user = 0\n")).expect("zero: only root");
        assert_eq!(zero.max_orgs_per_user, 0);
        assert!(parse(&format!("{plain}[orgs]\nmax_per_user = -1\n")).is_err());
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
    fn trusted_proxies_are_networks_or_addresses() {
        let s = parse("[listener]\ntls_disable = true\n").expect("default");
        assert!(s.trusted_proxies.is_empty(), "no proxy is trusted by default");
        let s = parse(
            "[listener]\ntls_disable = true\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]\n",
        )
        .expect("set");
        assert_eq!(s.trusted_proxies.len(), 3);
        assert!(s.trusted_proxies[1].contains(&"192.0.2.7".parse::<IpAddr>().expect("ip")));
        let err = parse("[listener]\ntls_disable = true\ntrusted_proxies = [\"lb.internal\"]\n").expect_err("a name");
        assert!(
            err.to_string().contains("listener.trusted_proxies") && err.to_string().contains("lb.internal"),
            "{err}"
        );
        let mut raw = RawFile::default();
        raw.set("listener", "trusted_proxies", " 10.0.0.0/8, ::1 ,".into())
            .expect("from the environment");
        raw.listener.tls_disable = true;
        assert_eq!(
            Settings::validate(raw)
                .expect("from the environment")
                .trusted_proxies
                .len(),
            2
        );
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
