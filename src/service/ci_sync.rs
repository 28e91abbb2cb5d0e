//! CI sync targets (issue 19, part 1; docs/ci-sync.md): the secrets of an
//! environment pushed into GitHub Actions secrets (repository, environment
//! or organization) or GitLab CI/CD variables (project or group).
//!
//! - A target's credential (a GitHub token, a GitLab token) is encrypted
//!   like a secret value: a fresh DEK under the organization's active KEK,
//!   the AAD binding organization, environment and target. No API answer,
//!   log line, error or audit record carries it; its types redact Debug.
//! - The queue is durable and derived: after every write of an environment
//!   (set, delete, rollback, push, an applied change request: the
//!   `Event::Env` every write broadcasts, see [`WriteSignal`]) the writing
//!   server compares each of its targets' last written versions
//!   (`ci_sync_state`) with the environment's current versions and queues
//!   one job per difference (`put` key at version, or `delete`). A unique
//!   index on (target, key, version, op) over pending and dead jobs makes
//!   the enqueue idempotent, so the `ci_sync` job (one server of a cluster,
//!   `jobs.rs`) runs the same comparison as a safety net every tick: a
//!   write whose signal was lost (a crash between commit and enqueue) is
//!   still synced. Delivery is at least once; a job whose key moved on
//!   (a newer version, deleted) is `superseded`, so an old value never
//!   overwrites a newer one.
//! - Failures back off exponentially (`retry_base × 2^n`, at most 1 h);
//!   `Retry-After` and the providers' rate-limit headers
//!   (`x-ratelimit-remaining/reset`, `RateLimit-Remaining/Reset`) block the
//!   whole target until then; after [`MAX_ATTEMPTS`], or at once on an
//!   answer that cannot change by retrying (400, 401, 403, 404, 422), the
//!   job is `dead` and keeps its error. `run` requeues dead letters.
//! - Reconcile (every [`RECONCILE_INTERVAL`] and on `run`): GitHub never
//!   returns values, so a secret whose `updated_at` moved since coffer's
//!   write is drift; GitLab returns values, so they are compared (in
//!   constant time). Drift is reported in the status and audited; with the
//!   target's `overwrite_drift` flag the coffer value is written again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::audit::{Actor, AuditEvent, Outcome};
use super::secrets::author_of;
use super::{AuditService, Result, SecretService, ServiceError, Shared, Unsealed, now_ms, rfc3339};
use crate::keys::{self, Keyring, ValueRow};
use crate::storage::ci_sync::CiSyncStore;
use crate::storage::ci_sync::{CiJobRow, CiStateRow, CiTargetRow};
use crate::storage::{CurrentValue, EnvPath, SecretStore, TenantStore};

/// Attempts before a job is `dead`.
pub const MAX_ATTEMPTS: i64 = 8;
/// The longest wait between two attempts, and the longest rate-limit block.
const MAX_BACKOFF_MS: i64 = 3600 * 1000;
/// How often a target is compared with its provider without being asked.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(300);
/// Jobs of one target sent per run.
const BATCH: i64 = 100;
/// Targets per organization.
const MAX_TARGETS: usize = 100;
/// Jobs a listing returns at most.
const JOBS_LIMIT: i64 = 200;
/// Default per-request timeout.
const DEFAULT_TIMEOUT_MS: i64 = 10_000;
/// How long the writing server trusts its map of synced environments.
const ENV_MAP_TTL_MS: i64 = 5_000;

/// The signal every environment write raises (`Shared::broadcast` of
/// `Event::Env`): the writing server then queues the sync jobs of that
/// environment's targets. Set once, when the service starts.
#[derive(Debug, Default)]
pub(crate) struct WriteSignal(OnceLock<tokio::sync::mpsc::UnboundedSender<Uuid>>);

impl WriteSignal {
    /// Environment `env_id` was written.
    pub(crate) fn written(&self, env_id: Uuid) {
        if let Some(tx) = self.0.get() {
            // A closed channel only means no target can be synced here;
            // the `ci_sync` job's comparison still catches the write.
            let _ = tx.send(env_id);
        }
    }
}

/// Where in the provider a target writes (no secret; stored as JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Location {
    /// GitHub: the repository owner, or the organization (scope organization)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// GitHub: the repository (scopes repository and environment)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repo: String,
    /// GitHub: the deployment environment (scope environment)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub github_environment: String,
    /// GitHub organization secrets: all | private | selected
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub visibility: String,
    /// GitLab: the project or group id, or its full path
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gitlab_id: String,
    /// GitLab: the variables' environment scope (`*`: every environment)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub environment_scope: String,
    /// GitLab: masked in job logs
    #[serde(default)]
    pub masked: bool,
    /// GitLab: exposed to protected branches and tags only
    #[serde(default)]
    pub protected: bool,
    /// how the target authenticates: empty (a token) or `github_app`
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    /// GitHub App: the App's id (the JWT's `iss`)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app_id: String,
    /// GitHub App: the installation whose token coffer asks for
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub installation_id: String,
}

/// `POST /api/v1/orgs/{org}/ci-sync` body. Its Debug hides the token.
#[derive(Deserialize)]
pub struct TargetInput {
    /// project slug
    pub project: String,
    /// environment slug
    pub environment: String,
    /// github | gitlab
    pub provider: String,
    /// GitHub: repository (default) | environment | organization;
    /// GitLab: project (default) | group
    pub scope: Option<String>,
    /// GitHub owner (or organization)
    #[serde(default)]
    pub owner: String,
    /// GitHub repository
    #[serde(default)]
    pub repo: String,
    /// GitHub deployment environment
    #[serde(default)]
    pub github_environment: String,
    /// GitHub organization secrets' visibility (default private)
    #[serde(default)]
    pub visibility: String,
    /// GitLab project or group id (or full path)
    #[serde(default)]
    pub gitlab_id: String,
    /// GitLab environment scope (default `*`)
    #[serde(default)]
    pub environment_scope: String,
    /// GitLab masked flag (default true)
    pub masked: Option<bool>,
    /// GitLab protected flag (default false)
    #[serde(default)]
    pub protected: bool,
    /// the provider's API base URL (default https://api.github.com,
    /// https://gitlab.com)
    pub api_url: Option<String>,
    /// the credential: a GitHub token (fine-grained, or an App
    /// installation token) or a GitLab token with the `api` scope
    #[serde(default)]
    pub token: Zeroizing<String>,
    /// GitHub App authentication instead of a token: the App id
    #[serde(default)]
    pub app_id: Option<Value>,
    /// GitHub App: the installation id
    #[serde(default)]
    pub installation_id: Option<Value>,
    /// GitHub App: the App's private key (PEM)
    #[serde(default)]
    pub private_key: Zeroizing<String>,
    /// write the coffer value again over a value changed at the target
    #[serde(default)]
    pub overwrite_drift: bool,
    /// per-request timeout in ms (default 10000; 100..=60000)
    pub timeout_ms: Option<i64>,
}

impl std::fmt::Debug for TargetInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetInput")
            .field("project", &self.project)
            .field("environment", &self.environment)
            .field("provider", &self.provider)
            .field("scope", &self.scope)
            .field("token", &"<redacted>")
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// `PUT|PATCH /api/v1/orgs/{org}/ci-sync/{id}` body: a new credential for
/// the target, a token or a GitHub App. Its Debug hides the secrets.
#[derive(Default, Deserialize)]
#[serde(default)]
pub struct CredentialInput {
    /// a token (GitHub or GitLab)
    pub token: Zeroizing<String>,
    /// GitHub App id
    pub app_id: Option<Value>,
    /// GitHub App installation id
    pub installation_id: Option<Value>,
    /// GitHub App private key (PEM)
    pub private_key: Zeroizing<String>,
}

impl std::fmt::Debug for CredentialInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialInput")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

/// A checked credential: the secret to seal and how it authenticates.
struct Credential {
    secret: Zeroizing<String>,
    /// "" (a token) or "github_app"
    auth: &'static str,
    app_id: String,
    installation_id: String,
}

/// A numeric GitHub id given as a JSON number or string.
fn github_id(field: &str, v: Option<&Value>) -> Result<String> {
    let text = match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.trim().to_owned(),
        _ => String::new(),
    };
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ServiceError::Invalid(format!(
            "{field} is required for GitHub App authentication: the numeric id GitHub shows"
        )));
    }
    Ok(text)
}

/// The DER of a PKCS#1 RSA private key in PEM (`BEGIN RSA PRIVATE KEY`,
/// what GitHub issues for an App). The message never quotes the key.
fn app_key_der(pem: &str) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
    const BEGIN: &str = "-----BEGIN RSA PRIVATE KEY-----";
    const END: &str = "-----END RSA PRIVATE KEY-----";
    let pem = pem.trim();
    if pem.starts_with("-----BEGIN PRIVATE KEY-----") {
        return Err(
            "private_key is PKCS#8 (BEGIN PRIVATE KEY); give the PKCS#1 PEM GitHub issues \
                    (BEGIN RSA PRIVATE KEY), or convert it with `openssl pkey -in key.pem -traditional`"
                .into(),
        );
    }
    let body = pem
        .strip_prefix(BEGIN)
        .and_then(|r| r.trim_end().strip_suffix(END))
        .ok_or("private_key must be the App's private key in PEM (BEGIN RSA PRIVATE KEY … END RSA PRIVATE KEY)")?;
    let b64: Zeroizing<String> = Zeroizing::new(body.chars().filter(|c| !c.is_whitespace()).collect());
    B64.decode(b64.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| "private_key: the PEM body is not base64".to_owned())
}

/// The App JWT GitHub asks for: RS256, `iat` 60 s in the past (clock
/// drift), `exp` 9 min ahead (GitHub allows at most 10), `iss` the App id.
fn app_jwt(app_id: &str, pem: &str) -> std::result::Result<Zeroizing<String>, String> {
    let der = app_key_der(pem)?;
    let now = now_ms() / 1000;
    let claims = json!({ "iat": now - 60, "exp": now + 540, "iss": app_id });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_der(&der),
    )
    .map(Zeroizing::new)
    .map_err(|_| "private_key is not a usable RSA private key".to_owned())
}

/// Check a credential for `provider`: a token, or (GitHub) an App id,
/// installation id and private key, the key tried by signing a JWT.
fn parse_credential(
    provider: &str,
    token: &str,
    app_id: Option<&Value>,
    installation_id: Option<&Value>,
    private_key: &str,
) -> Result<Credential> {
    let app = app_id.is_some_and(|v| !v.is_null())
        || installation_id.is_some_and(|v| !v.is_null())
        || !private_key.trim().is_empty();
    if app {
        if provider != "github" {
            return Err(ServiceError::Invalid(
                "app_id, installation_id and private_key are for GitHub targets only".into(),
            ));
        }
        if !token.trim().is_empty() {
            return Err(ServiceError::Invalid(
                "give either a token or a GitHub App (app_id, installation_id, private_key), not both".into(),
            ));
        }
        let app_id = github_id("app_id", app_id)?;
        let installation_id = github_id("installation_id", installation_id)?;
        if private_key.len() > 16_384 {
            return Err(ServiceError::Invalid(
                "private_key must be at most 16384 characters".into(),
            ));
        }
        app_jwt(&app_id, private_key).map_err(ServiceError::Invalid)?;
        return Ok(Credential {
            secret: Zeroizing::new(private_key.trim().to_owned()),
            auth: "github_app",
            app_id,
            installation_id,
        });
    }
    let token = token.trim();
    if token.is_empty() || token.len() > 4096 || token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ServiceError::Invalid(
            "token is required (or, for GitHub, a GitHub App: app_id, installation_id, private_key): \
             one line, at most 4096 characters, no spaces"
                .into(),
        ));
    }
    Ok(Credential {
        secret: Zeroizing::new(token.to_owned()),
        auth: "",
        app_id: String::new(),
        installation_id: String::new(),
    })
}

/// `expires_at` of GitHub (`2016-07-11T22:14:10Z`) as unix ms.
fn github_time(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| std::str::from_utf8(&b[r]).ok()?.parse::<u32>().ok();
    let month = time::Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(num(0..4)?).ok()?, month, u8::try_from(num(8..10)?).ok()?).ok()?;
    let t = time::Time::from_hms(
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(14..16)?).ok()?,
        u8::try_from(num(17..19)?).ok()?,
    )
    .ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc().unix_timestamp() * 1000)
}

/// An installation token is used until this long before its `expires_at`.
const APP_TOKEN_MARGIN_MS: i64 = 5 * 60 * 1000;

/// Installation tokens by target: (token, expires_at in unix ms).
type AppTokens = Mutex<HashMap<Uuid, (Zeroizing<String>, i64)>>;

/// One key found changed (or gone) at the target by a reconcile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DriftEntry {
    /// secret key
    pub key: String,
    /// changed | missing
    pub reason: String,
    /// RFC 3339
    pub detected_at: String,
    /// the coffer value was queued to be written again
    pub overwritten: bool,
}

/// A target with its status, as the API shows it (never the credential).
#[derive(Debug, Serialize)]
pub struct TargetView {
    /// id
    pub id: String,
    /// project slug
    pub project: String,
    /// environment slug
    pub environment: String,
    /// github | gitlab
    pub provider: String,
    /// repository | environment | organization | project | group
    pub scope: String,
    /// API base URL
    pub api_url: String,
    /// where in the provider
    pub location: Location,
    /// how coffer authenticates: token | github_app
    pub auth: String,
    /// overwrite drift
    pub overwrite_drift: bool,
    /// per-request timeout
    pub timeout_ms: i64,
    /// who added it
    pub created_by: String,
    /// RFC 3339
    pub created_at: String,
    /// RFC 3339 of the last successful write at the target
    pub last_success_at: Option<String>,
    /// the last error (no value, no credential)
    pub last_error: Option<String>,
    /// RFC 3339
    pub last_error_at: Option<String>,
    /// RFC 3339: the provider asked to wait until then
    pub blocked_until: Option<String>,
    /// jobs waiting
    pub pending: i64,
    /// dead letters
    pub dead: i64,
    /// drift found by the last reconcile
    pub drift: Vec<DriftEntry>,
    /// RFC 3339 of the last reconcile
    pub reconciled_at: Option<String>,
}

/// One job of a target's queue.
#[derive(Debug, Serialize)]
pub struct JobView {
    /// id
    pub id: String,
    /// secret key
    pub key: String,
    /// coffer version
    pub version: i64,
    /// put | delete
    pub op: String,
    /// pending | done | dead | superseded
    pub status: String,
    /// attempts made
    pub attempts: i64,
    /// the last error
    pub last_error: Option<String>,
    /// RFC 3339
    pub created_at: String,
    /// RFC 3339: the next attempt (pending only)
    pub next_at: Option<String>,
    /// RFC 3339
    pub done_at: Option<String>,
}

/// What `run` did.
#[derive(Debug, Serialize)]
pub struct RunView {
    /// jobs queued for differences
    pub queued: usize,
    /// pending jobs made due and dead letters requeued
    pub requeued: u64,
}

/// A provider's failed answer: a message without value or credential,
/// when to try again at the earliest, and whether retrying can help.
#[derive(Debug)]
struct CallError {
    msg: String,
    /// the provider's HTTP status, when it answered
    status: Option<u16>,
    retry_at: Option<i64>,
    permanent: bool,
}

impl CallError {
    fn new(msg: impl Into<String>) -> CallError {
        CallError {
            msg: msg.into(),
            status: None,
            retry_at: None,
            permanent: false,
        }
    }
}

type CallResult<T> = std::result::Result<T, CallError>;

/// Percent-encode one URL path segment (RFC 3986 unreserved kept).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `url` with `pairs` appended as a form-encoded query string.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.query_pairs_mut().extend_pairs(pairs);
            u.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

/// Unix ms until which the provider asks us to wait, from `Retry-After`
/// (seconds) or an exhausted rate limit (`x-ratelimit-*` of GitHub,
/// `RateLimit-*` of GitLab: remaining 0, reset in unix seconds); capped
/// at one hour from `now`.
fn retry_at(headers: &reqwest::header::HeaderMap, now: i64) -> Option<i64> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let cap = now.saturating_add(MAX_BACKOFF_MS);
    if let Some(ra) = get("retry-after") {
        // Seconds; an HTTP date (rare on these APIs) waits a minute.
        let secs = ra.parse::<i64>().unwrap_or(60).clamp(0, 3600);
        return Some(now.saturating_add(secs * 1000).min(cap));
    }
    for (remaining, reset) in [
        ("x-ratelimit-remaining", "x-ratelimit-reset"),
        ("ratelimit-remaining", "ratelimit-reset"),
    ] {
        if get(remaining) == Some("0") {
            let at = get(reset)
                .and_then(|r| r.parse::<i64>().ok())
                .map_or(now + 60_000, |s| s.saturating_mul(1000));
            return Some(at.clamp(now, cap));
        }
    }
    None
}

/// Turn a provider answer into an error unless it succeeded.
async fn check(resp: reqwest::Response, what: &str) -> CallResult<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let now = now_ms();
    let retry = retry_at(resp.headers(), now);
    // The provider's own message (GitHub, GitLab: `message`/`error`),
    // cut short; these APIs never echo the token or a value.
    let detail = resp
        .json::<Value>()
        .await
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error"))
                .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
        })
        .map(|m| format!(": {}", m.chars().take(200).collect::<String>()))
        .unwrap_or_default();
    let limited = status.as_u16() == 429 || (status.as_u16() == 403 && retry.is_some());
    Err(CallError {
        msg: format!("{what}: the provider answered {status}{detail}"),
        status: Some(status.as_u16()),
        retry_at: retry.or(limited.then(|| now + 60_000)),
        permanent: !limited && matches!(status.as_u16(), 400 | 401 | 403 | 404 | 422),
    })
}

fn send_error(e: &reqwest::Error, what: &str) -> CallError {
    CallError::new(if e.is_timeout() {
        format!("{what}: timed out")
    } else if e.is_connect() {
        format!("{what}: cannot connect")
    } else {
        format!("{what}: request failed")
    })
}

/// A connection to one target's provider for one run. Its Debug hides
/// the token.
struct Provider<'a> {
    http: &'a reqwest::Client,
    target: CiTargetRow,
    location: Location,
    token: Zeroizing<String>,
    timeout: Duration,
    /// GitHub: (key_id, public key) fetched once per run
    github_key: Option<(String, crypto_box::PublicKey)>,
    /// the rate limit told us to stop after this answer
    blocked_until: Option<i64>,
    /// GitHub App targets: the App's private key (PEM); `token` is then
    /// the installation token [`Provider::authenticate`] got
    app_key: Option<Zeroizing<String>>,
    /// GitHub answered 401 to the installation token: drop it from the cache
    app_token_refused: bool,
    /// installation tokens by target
    app_cache: Arc<AppTokens>,
}

impl std::fmt::Debug for Provider<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("target", &self.target.id)
            .finish_non_exhaustive()
    }
}

impl<'a> Provider<'a> {
    /// A connection with the target's decrypted `secret`: the token, or
    /// (GitHub App targets) the App's private key.
    fn open(
        http: &'a reqwest::Client,
        t: &CiTargetRow,
        secret: Zeroizing<String>,
        app_cache: Arc<AppTokens>,
    ) -> Provider<'a> {
        let location: Location = serde_json::from_str(&t.location).unwrap_or_default();
        let app = location.auth == "github_app";
        Provider {
            http,
            target: t.clone(),
            location,
            token: if app { Zeroizing::default() } else { secret.clone() },
            timeout: Duration::from_millis(u64::try_from(t.timeout_ms).unwrap_or(10_000)),
            github_key: None,
            blocked_until: None,
            app_key: app.then_some(secret),
            app_token_refused: false,
            app_cache,
        }
    }

    fn base(&self) -> &str {
        self.target.api_url.trim_end_matches('/')
    }

    /// GitHub: the secrets collection of the target's scope.
    fn github_prefix(&self) -> String {
        let l = &self.location;
        match self.target.scope.as_str() {
            "organization" => format!("{}/orgs/{}/actions", self.base(), seg(&l.owner)),
            "environment" => format!(
                "{}/repos/{}/{}/environments/{}",
                self.base(),
                seg(&l.owner),
                seg(&l.repo),
                seg(&l.github_environment)
            ),
            _ => format!("{}/repos/{}/{}/actions", self.base(), seg(&l.owner), seg(&l.repo)),
        }
    }

    /// GitLab: the variables collection of the project or group.
    fn gitlab_prefix(&self) -> String {
        let kind = if self.target.scope == "group" {
            "groups"
        } else {
            "projects"
        };
        format!(
            "{}/api/v4/{kind}/{}/variables",
            self.base(),
            seg(&self.location.gitlab_id)
        )
    }

    /// A request without its credential: [`Provider::send`] adds it.
    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, url).timeout(self.timeout);
        if self.target.provider == "github" {
            rb.header(reqwest::header::ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
        } else {
            rb
        }
    }

    /// GitHub App targets: the installation token, from `cache` while it
    /// has more than [`APP_TOKEN_MARGIN_MS`] to live, else exchanged for a
    /// fresh App JWT at `POST /app/installations/{id}/access_tokens`.
    /// Token targets: nothing to do.
    async fn authenticate(&mut self) -> CallResult<()> {
        let Some(pem) = self.app_key.clone() else {
            return Ok(());
        };
        if !self.token.is_empty() {
            return Ok(());
        }
        let cache = self.app_cache.clone();
        let now = now_ms();
        {
            let c = cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((token, expires)) = c.get(&self.target.id)
                && expires.saturating_sub(APP_TOKEN_MARGIN_MS) > now
            {
                self.token = token.clone();
                return Ok(());
            }
        }
        let what = "getting a GitHub App installation token";
        let jwt = app_jwt(&self.location.app_id, &pem).map_err(|m| CallError {
            msg: format!("{what}: {m}"),
            status: None,
            retry_at: None,
            permanent: true,
        })?;
        let url = format!(
            "{}/app/installations/{}/access_tokens",
            self.base(),
            seg(&self.location.installation_id)
        );
        let rb = self
            .http
            .post(&url)
            .timeout(self.timeout)
            .header(reqwest::header::AUTHORIZATION, format!("Bearer {}", jwt.as_str()))
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        let resp = rb.send().await.map_err(|e| send_error(&e, what))?;
        let body: Value = check(resp, what)
            .await?
            .json()
            .await
            .map_err(|_| CallError::new(format!("{what}: not JSON")))?;
        let token = Zeroizing::new(body["token"].as_str().unwrap_or_default().to_owned());
        let expires = body["expires_at"].as_str().and_then(github_time);
        let (false, Some(expires)) = (token.is_empty(), expires) else {
            return Err(CallError::new(format!("{what}: the answer has no token or expires_at")));
        };
        if expires.saturating_sub(APP_TOKEN_MARGIN_MS) > now {
            cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(self.target.id, (token.clone(), expires));
        }
        self.token = token;
        Ok(())
    }

    /// Check that the credential works at the target: GitHub: read the
    /// scope's public key (needs the secrets permission); GitLab: list one
    /// variable (needs the `api` scope on the project or group).
    async fn verify(&mut self) -> CallResult<()> {
        if self.target.provider == "github" {
            self.github_key().await.map(|_| ())
        } else {
            let url = with_query(&self.gitlab_prefix(), &[("per_page", "1")]);
            let rb = self.request(reqwest::Method::GET, &url);
            self.send(rb, "listing variables").await.map(|_| ())
        }
    }

    /// Send, note an exhausted rate limit of a successful answer, and
    /// map failures.
    async fn send(&mut self, rb: reqwest::RequestBuilder, what: &str) -> CallResult<reqwest::Response> {
        // GitHub App: the installation token, at the first request of a run.
        self.authenticate().await?;
        let rb = if self.target.provider == "github" {
            rb.header(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", self.token.as_str()),
            )
        } else {
            rb.header("PRIVATE-TOKEN", self.token.as_str())
        };
        let resp = rb.send().await.map_err(|e| send_error(&e, what))?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED && self.app_key.is_some() {
            self.app_token_refused = true;
        }
        if resp.status().is_success()
            && let Some(at) = retry_at(resp.headers(), now_ms())
        {
            self.blocked_until = Some(at);
        }
        check(resp, what).await
    }

    async fn github_key(&mut self) -> CallResult<(String, crypto_box::PublicKey)> {
        if let Some(k) = &self.github_key {
            return Ok(k.clone());
        }
        let url = format!("{}/secrets/public-key", self.github_prefix());
        let rb = self.request(reqwest::Method::GET, &url);
        let body: Value = self
            .send(rb, "fetching the public key")
            .await?
            .json()
            .await
            .map_err(|_| CallError::new("fetching the public key: not JSON"))?;
        let key_id = body["key_id"].as_str().unwrap_or_default().to_owned();
        let raw: [u8; crypto_box::KEY_SIZE] = body["key"]
            .as_str()
            .and_then(|k| B64.decode(k).ok())
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| CallError::new("fetching the public key: not a base64 X25519 key"))?;
        if key_id.is_empty() {
            return Err(CallError::new("fetching the public key: no key_id"));
        }
        let key = (key_id, crypto_box::PublicKey::from(raw));
        self.github_key = Some(key.clone());
        Ok(key)
    }

    /// Write `key` = `value`; GitHub returns the secret's `updated_at`
    /// right after the write ("" for GitLab).
    async fn put(&mut self, key: &str, value: &str) -> CallResult<String> {
        if self.target.provider == "github" {
            let (key_id, pk) = self.github_key().await?;
            let sealed = pk
                .seal(&mut crypto_box::aead::OsRng, value.as_bytes())
                .map_err(|_| CallError::new("sealing the value failed"))?;
            let mut body = json!({ "encrypted_value": B64.encode(sealed), "key_id": key_id });
            if self.target.scope == "organization" {
                body["visibility"] = json!(self.location.visibility);
            }
            let url = format!("{}/secrets/{}", self.github_prefix(), seg(key));
            let rb = self.request(reqwest::Method::PUT, &url).json(&body);
            self.send(rb, &format!("writing {key}")).await?;
            // The time GitHub recorded: the base of drift detection.
            let rb = self.request(reqwest::Method::GET, &url);
            let meta: Value = self
                .send(rb, &format!("reading {key}"))
                .await?
                .json()
                .await
                .map_err(|_| CallError::new(format!("reading {key}: not JSON")))?;
            Ok(meta["updated_at"].as_str().unwrap_or_default().to_owned())
        } else {
            let l = &self.location;
            let scope = l.environment_scope.clone();
            // `raw`: GitLab must not expand `$…` inside a coffer value.
            let body = json!({
                "value": value,
                "masked": l.masked,
                "protected": l.protected,
                "raw": true,
                "variable_type": "env_var",
                "environment_scope": scope,
            });
            let url = format!("{}/{}", self.gitlab_prefix(), seg(key));
            // Update first: a retried create after a lost answer must not
            // make a second variable.
            let rb = self
                .request(
                    reqwest::Method::PUT,
                    &with_query(&url, &[("filter[environment_scope]", &scope)]),
                )
                .json(&body);
            match self.send(rb, &format!("writing {key}")).await {
                Ok(_) => Ok(String::new()),
                Err(e) if e.status == Some(404) => {
                    let mut create = body;
                    create["key"] = json!(key);
                    let rb = self.request(reqwest::Method::POST, &self.gitlab_prefix()).json(&create);
                    self.send(rb, &format!("creating {key}")).await?;
                    Ok(String::new())
                }
                Err(e) => Err(e),
            }
        }
    }

    /// Delete `key` at the target (absent already: done).
    async fn delete(&mut self, key: &str) -> CallResult<()> {
        let rb = if self.target.provider == "github" {
            let url = format!("{}/secrets/{}", self.github_prefix(), seg(key));
            self.request(reqwest::Method::DELETE, &url)
        } else {
            let url = format!("{}/{}", self.gitlab_prefix(), seg(key));
            let scope = self.location.environment_scope.clone();
            self.request(
                reqwest::Method::DELETE,
                &with_query(&url, &[("filter[environment_scope]", &scope)]),
            )
        };
        match self.send(rb, &format!("deleting {key}")).await {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// GitHub: every secret's `updated_at`, by upper-case name (GitHub
    /// stores names upper-case).
    async fn github_list(&mut self) -> CallResult<HashMap<String, String>> {
        let mut out = HashMap::new();
        for page in 1..=50 {
            let url = format!("{}/secrets", self.github_prefix());
            let url = with_query(&url, &[("per_page", "100"), ("page", &page.to_string())]);
            let rb = self.request(reqwest::Method::GET, &url);
            let body: Value = self
                .send(rb, "listing secrets")
                .await?
                .json()
                .await
                .map_err(|_| CallError::new("listing secrets: not JSON"))?;
            let secrets = body["secrets"].as_array().cloned().unwrap_or_default();
            for s in &secrets {
                if let Some(name) = s["name"].as_str() {
                    let at = s["updated_at"].as_str().unwrap_or_default().to_owned();
                    out.insert(name.to_uppercase(), at);
                }
            }
            if secrets.len() < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// GitLab: one variable's value in the target's environment scope
    /// (None: absent).
    async fn gitlab_value(&mut self, key: &str) -> CallResult<Option<Zeroizing<String>>> {
        let url = format!("{}/{}", self.gitlab_prefix(), seg(key));
        let scope = self.location.environment_scope.clone();
        let rb = self.request(
            reqwest::Method::GET,
            &with_query(&url, &[("filter[environment_scope]", &scope)]),
        );
        match self.send(rb, &format!("reading {key}")).await {
            Ok(resp) => {
                let body: Value = resp
                    .json()
                    .await
                    .map_err(|_| CallError::new(format!("reading {key}: not JSON")))?;
                Ok(Some(Zeroizing::new(
                    body["value"].as_str().unwrap_or_default().to_owned(),
                )))
            }
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Check an API base URL: http(s), a host, no credentials; plain http
/// only to a loopback address (the token travels in a header).
fn check_api_url(url: &str) -> Result<String> {
    let url = url.trim();
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ServiceError::Invalid(format!("api_url {url:?} is not a valid URL: {e}")))?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    if host.is_empty() {
        return Err(ServiceError::Invalid("api_url has no host".into()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ServiceError::Invalid("api_url must not hold credentials".into()));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ServiceError::Invalid(
            "api_url must not have a query or fragment".into(),
        ));
    }
    let loopback = host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(ServiceError::Invalid(
                "api_url must use https (plain http is accepted for a loopback address only)".into(),
            ));
        }
        other => {
            return Err(ServiceError::Invalid(format!(
                "api_url scheme {other:?} is not allowed; use https"
            )));
        }
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

fn require(field: &str, value: &str, what: &str) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ServiceError::Invalid(format!("{field} is required for {what}")));
    }
    if v.len() > 255 || v.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(format!(
            "{field} must be at most 255 characters, without control characters"
        )));
    }
    Ok(v.to_owned())
}

/// Validate a create request into (provider, scope, api_url, location).
fn parse_input(input: &TargetInput) -> Result<(String, String, String, Location)> {
    let provider = input.provider.trim();
    let scope_in = input.scope.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let mut loc = Location::default();
    let (scope, default_url) = match provider {
        "github" => {
            let scope = scope_in.unwrap_or("repository");
            match scope {
                "repository" | "environment" => {
                    loc.owner = require("owner", &input.owner, "GitHub repository secrets")?;
                    loc.repo = require("repo", &input.repo, "GitHub repository secrets")?;
                    if scope == "environment" {
                        loc.github_environment = require(
                            "github_environment",
                            &input.github_environment,
                            "GitHub environment secrets",
                        )?;
                    }
                }
                "organization" => {
                    loc.owner = require("owner", &input.owner, "GitHub organization secrets (the organization)")?;
                    loc.visibility = match input.visibility.trim() {
                        "" | "private" => "private".to_owned(),
                        "all" => "all".to_owned(),
                        "selected" => "selected".to_owned(),
                        other => {
                            return Err(ServiceError::Invalid(format!(
                                "visibility {other:?} is unknown; use all, private or selected"
                            )));
                        }
                    };
                }
                other => {
                    return Err(ServiceError::Invalid(format!(
                        "scope {other:?} is unknown for github; use repository, environment or organization"
                    )));
                }
            }
            (scope, "https://api.github.com")
        }
        "gitlab" => {
            let scope = scope_in.unwrap_or("project");
            if !matches!(scope, "project" | "group") {
                return Err(ServiceError::Invalid(format!(
                    "scope {scope:?} is unknown for gitlab; use project or group"
                )));
            }
            loc.gitlab_id = require("gitlab_id", &input.gitlab_id, "GitLab variables")?;
            loc.environment_scope = match input.environment_scope.trim() {
                "" => "*".to_owned(),
                s => require("environment_scope", s, "GitLab variables")?,
            };
            loc.masked = input.masked.unwrap_or(true);
            loc.protected = input.protected;
            (scope, "https://gitlab.com")
        }
        other => {
            return Err(ServiceError::Invalid(format!(
                "provider {other:?} is unknown; use github or gitlab"
            )));
        }
    };
    let api_url = check_api_url(input.api_url.as_deref().unwrap_or(default_url))?;
    Ok((provider.to_owned(), scope.to_owned(), api_url, loc))
}

/// The AAD row of a target's credential: the target id stands for the
/// secret and the version row, version 0 (a secret's versions start at 1).
fn credential_row(t: &CiTargetRow) -> ValueRow {
    ValueRow {
        org_id: t.org_id,
        env_id: t.env_id,
        secret_id: t.id,
        version_id: t.id,
        version: 0,
    }
}

impl CiSyncService {
    /// Move the credentials of `org_id`'s targets sealed under an older KEK
    /// version to the `active` one (`KeyService::rewrap_batch`): only the
    /// DEK is wrapped again (same AAD, the target id); the credential
    /// ciphertext is untouched, so its format does not change.
    pub(super) async fn rewrap_credentials(&self, keyring: &Keyring, org_id: Uuid, active: i64) -> Result<usize> {
        let mut n = 0;
        for t in self.store.ci.ci_targets(org_id).await? {
            if t.kek_version >= active {
                continue;
            }
            let old = self.secrets.kek(keyring, org_id, t.kek_version).await?;
            let new = self.secrets.kek(keyring, org_id, active).await?;
            let wrapped = keys::rewrap_dek(&old, &new, &t.id, &t.wrapped_dek)
                .map_err(|_| ServiceError::Internal("a sync target's credential does not decrypt".into()))?;
            if self
                .store
                .ci
                .rewrap_ci_credential(org_id, t.id, &wrapped, active, &t.wrapped_dek)
                .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn drift_of(t: &CiTargetRow) -> Vec<DriftEntry> {
    serde_json::from_str(&t.drift).unwrap_or_default()
}

fn system_event(action: &str, resource: String, org: String, reason: String, outcome: Outcome) -> AuditEvent {
    AuditEvent {
        request_id: format!("ci-sync-{}", Uuid::new_v4()),
        actor: Actor {
            kind: "system",
            name: "ci_sync job".to_owned(),
            accessor: String::new(),
        },
        cert_spki: String::new(),
        source: String::new(),
        method: "JOB".to_owned(),
        action: action.to_owned(),
        resource,
        org,
        status: if outcome == Outcome::Allowed { 200 } else { 502 },
        outcome,
        reason,
        values: 0,
    }
}

/// The stores CI sync touches.
#[derive(Clone)]
pub(super) struct CiSyncStores {
    /// targets, their job queue and what was last written
    pub(super) ci: Arc<dyn CiSyncStore>,
    /// the current values of a synced environment
    pub(super) secrets: Arc<dyn SecretStore>,
    /// organizations, projects and environments by slug
    pub(super) tenants: Arc<dyn TenantStore>,
}

impl std::fmt::Debug for CiSyncStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CiSyncStores").finish_non_exhaustive()
    }
}

/// CI sync targets and their queue.
#[derive(Debug, Clone)]
pub struct CiSyncService {
    pub(super) shared: Arc<Shared>,
    pub(super) store: CiSyncStores,
    pub(super) access: super::AccessService,
    pub(super) secrets: SecretService,
    http: Option<reqwest::Client>,
    /// synced environment → organization, and when it was loaded
    env_map: Arc<Mutex<(i64, HashMap<Uuid, Uuid>)>>,
    /// GitHub App installation tokens by target (never stored)
    app_tokens: Arc<AppTokens>,
}

impl CiSyncService {
    /// The service; starts the consumer of [`WriteSignal`] (when a Tokio
    /// runtime runs).
    pub(super) fn new(
        shared: Arc<Shared>,
        store: CiSyncStores,
        access: super::AccessService,
        secrets: SecretService,
    ) -> CiSyncService {
        let http = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("coffer-ci-sync/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "ci sync: no HTTP client; jobs wait");
                None
            }
        };
        let svc = CiSyncService {
            shared,
            store,
            access,
            secrets,
            http,
            env_map: Arc::new(Mutex::new((i64::MIN, HashMap::new()))),
            app_tokens: Arc::default(),
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Uuid>();
            if svc.shared.ci_sync_writes.0.set(tx).is_ok() {
                let me = svc.clone();
                rt.spawn(async move {
                    while let Some(env_id) = rx.recv().await {
                        let mut envs = vec![env_id];
                        while let Ok(more) = rx.try_recv() {
                            if !envs.contains(&more) {
                                envs.push(more);
                            }
                        }
                        for env_id in envs {
                            if let Err(e) = me.env_written(env_id).await {
                                tracing::warn!(error = %e, "ci sync: cannot queue the jobs of a write");
                            }
                        }
                    }
                });
            }
        }
        svc
    }

    /// The organization of a synced environment (None: not synced, as far
    /// as a map at most [`ENV_MAP_TTL_MS`] old knows).
    async fn synced_org(&self, env_id: Uuid) -> Result<Option<Uuid>> {
        let now = now_ms();
        {
            let map = self.env_map.lock().unwrap_or_else(|p| p.into_inner());
            if map.1.contains_key(&env_id) || now.saturating_sub(map.0) < ENV_MAP_TTL_MS {
                return Ok(map.1.get(&env_id).copied());
            }
        }
        self.reload_env_map().await?;
        let map = self.env_map.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.1.get(&env_id).copied())
    }

    async fn reload_env_map(&self) -> Result<()> {
        let fresh: HashMap<Uuid, Uuid> = self
            .store
            .ci
            .all_ci_targets()
            .await?
            .into_iter()
            .map(|t| (t.env_id, t.org_id))
            .collect();
        *self.env_map.lock().unwrap_or_else(|p| p.into_inner()) = (now_ms(), fresh);
        Ok(())
    }

    /// A write happened in `env_id`: queue its targets' jobs.
    async fn env_written(&self, env_id: Uuid) -> Result<()> {
        let Some(org_id) = self.synced_org(env_id).await? else {
            return Ok(());
        };
        for t in self.store.ci.ci_targets(org_id).await? {
            if t.env_id == env_id {
                self.enqueue_target(&t).await?;
            }
        }
        Ok(())
    }

    /// Queue one job per difference between what the target last got and
    /// the environment's current versions; returns how many were queued.
    async fn enqueue_target(&self, t: &CiTargetRow) -> Result<usize> {
        let current = self.store.secrets.current_values(t.org_id, t.env_id).await?;
        let state: HashMap<String, i64> = self
            .store
            .ci
            .ci_state(t.org_id, t.id)
            .await?
            .into_iter()
            .map(|s| (s.key, s.version))
            .collect();
        let now = now_ms();
        let job = |key: &str, version: i64, op: &str| CiJobRow {
            id: Uuid::new_v4(),
            org_id: t.org_id,
            target_id: t.id,
            key: key.to_owned(),
            version,
            op: op.to_owned(),
            attempts: 0,
            next_at: now,
            status: "pending".to_owned(),
            last_error: None,
            created_at: now,
            done_at: None,
        };
        let mut jobs = Vec::new();
        for v in current.iter() {
            if state.get(&v.key) != Some(&v.version) {
                jobs.push(job(&v.key, v.version, "put"));
            }
        }
        for (key, version) in &state {
            if !current.iter().any(|v| &v.key == key) {
                jobs.push(job(key, *version, "delete"));
            }
        }
        Ok(self.store.ci.enqueue_ci_jobs(t.org_id, &jobs).await?)
    }

    async fn views(&self, org_id: Uuid, rows: Vec<CiTargetRow>) -> Result<Vec<TargetView>> {
        let envs = self.store.tenants.list_envs(org_id).await?;
        let projects = self.store.tenants.list_projects(org_id).await?;
        let mut out = Vec::new();
        for t in rows {
            let env = envs.iter().find(|e| e.id == t.env_id);
            let project = env.and_then(|e| projects.iter().find(|p| p.id == e.project_id));
            let (pending, dead) = self.store.ci.ci_job_counts(org_id, t.id).await?;
            let now = now_ms();
            out.push(TargetView {
                id: t.id.to_string(),
                project: project.map(|p| p.slug.clone()).unwrap_or_default(),
                environment: env.map(|e| e.slug.clone()).unwrap_or_default(),
                provider: t.provider.clone(),
                scope: t.scope.clone(),
                api_url: t.api_url.clone(),
                location: serde_json::from_str(&t.location).unwrap_or_default(),
                auth: if serde_json::from_str::<Location>(&t.location).is_ok_and(|l| l.auth == "github_app") {
                    "github_app".to_owned()
                } else {
                    "token".to_owned()
                },
                overwrite_drift: t.overwrite_drift,
                timeout_ms: t.timeout_ms,
                created_by: t.created_by.clone(),
                created_at: rfc3339(t.created_at),
                last_success_at: t.last_success_at.map(rfc3339),
                last_error: t.last_error.clone(),
                last_error_at: t.last_error_at.map(rfc3339),
                blocked_until: (t.blocked_until > now).then(|| rfc3339(t.blocked_until)),
                pending,
                dead,
                drift: drift_of(&t),
                reconciled_at: t.reconciled_at.map(rfc3339),
            });
        }
        Ok(out)
    }

    async fn target(&self, org_id: Uuid, id: &str) -> Result<CiTargetRow> {
        let missing = || ServiceError::NotFound(format!("sync target {id}"));
        let id = Uuid::parse_str(id.trim()).map_err(|_| missing())?;
        self.store
            .ci
            .ci_targets(org_id)
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(missing)
    }

    /// Add a target to an environment (org admins); its first sync is
    /// queued at once.
    pub async fn create(&self, who: &Unsealed, org: &str, input: TargetInput) -> Result<TargetView> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let (provider, scope, api_url, mut location) = parse_input(&input)?;
        let cred = parse_credential(
            &provider,
            &input.token,
            input.app_id.as_ref(),
            input.installation_id.as_ref(),
            &input.private_key,
        )?;
        cred.auth.clone_into(&mut location.auth);
        location.app_id.clone_from(&cred.app_id);
        location.installation_id.clone_from(&cred.installation_id);
        let timeout_ms = input.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(100..=60_000).contains(&timeout_ms) {
            return Err(ServiceError::Invalid("timeout_ms must be between 100 and 60000".into()));
        }
        let path = self
            .store
            .tenants
            .resolve_env(org, input.project.trim(), input.environment.trim())
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!(
                    "environment {org}/{}/{}",
                    input.project.trim(),
                    input.environment.trim()
                ))
            })?;
        if self.store.ci.ci_targets(org_row.id).await?.len() >= MAX_TARGETS {
            return Err(ServiceError::Invalid(format!(
                "an organization has at most {MAX_TARGETS} sync targets"
            )));
        }
        let mut row = CiTargetRow {
            id: Uuid::new_v4(),
            org_id: org_row.id,
            env_id: path.env_id,
            provider,
            scope,
            api_url,
            location: serde_json::to_string(&location).map_err(|e| ServiceError::Internal(e.to_string()))?,
            overwrite_drift: input.overwrite_drift,
            timeout_ms,
            credential: Vec::new(),
            wrapped_dek: Vec::new(),
            kek_version: path.kek_version,
            created_by: author_of(who),
            created_at: now_ms(),
            last_success_at: None,
            last_error: None,
            last_error_at: None,
            blocked_until: 0,
            drift: "[]".to_owned(),
            reconciled_at: None,
        };
        let kek = self.secrets.kek(who.keyring(), org_row.id, path.kek_version).await?;
        let sealed = keys::encrypt_value(&kek, &credential_row(&row), cred.secret.as_bytes())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        row.credential = sealed.ciphertext;
        row.wrapped_dek = sealed.wrapped_dek;
        self.store.ci.insert_ci_target(&row).await?;
        self.env_map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .insert(row.env_id, row.org_id);
        self.enqueue_target(&row).await?;
        Ok(self.views(org_row.id, vec![row]).await?.remove(0))
    }

    /// Targets with their status (org admins), optionally of one
    /// environment.
    pub async fn list(&self, who: &Unsealed, org: &str, env: Option<(&str, &str)>) -> Result<Vec<TargetView>> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let mut rows = self.store.ci.ci_targets(org_row.id).await?;
        if let Some((project, env)) = env {
            let path = self
                .store
                .tenants
                .resolve_env(org, project, env)
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("environment {org}/{project}/{env}")))?;
            rows.retain(|t| t.env_id == path.env_id);
        }
        self.views(org_row.id, rows).await
    }

    /// One target's status (org admins).
    pub async fn get(&self, who: &Unsealed, org: &str, id: &str) -> Result<TargetView> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let t = self.target(org_row.id, id).await?;
        Ok(self.views(org_row.id, vec![t]).await?.remove(0))
    }

    /// A target's queue: pending jobs and dead letters first (org admins).
    pub async fn jobs(&self, who: &Unsealed, org: &str, id: &str) -> Result<Vec<JobView>> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let t = self.target(org_row.id, id).await?;
        Ok(self
            .store
            .ci
            .ci_jobs(org_row.id, t.id, JOBS_LIMIT)
            .await?
            .into_iter()
            .map(|j| JobView {
                id: j.id.to_string(),
                key: j.key,
                version: j.version,
                op: j.op,
                next_at: (j.status == "pending").then(|| rfc3339(j.next_at)),
                status: j.status,
                attempts: j.attempts,
                last_error: j.last_error,
                created_at: rfc3339(j.created_at),
                done_at: j.done_at.map(rfc3339),
            })
            .collect())
    }

    /// Remove a target with its queue (org admins). What it wrote stays
    /// at the provider.
    pub async fn delete(&self, who: &Unsealed, org: &str, id: &str) -> Result<()> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let t = self.target(org_row.id, id).await?;
        self.store.ci.delete_ci_target(org_row.id, t.id).await?;
        self.app_tokens.lock().unwrap_or_else(|p| p.into_inner()).remove(&t.id);
        let mut map = self.env_map.lock().unwrap_or_else(|p| p.into_inner());
        map.0 = i64::MIN;
        Ok(())
    }

    /// Replace a target's credential (org admins): a new token, or a
    /// GitHub App. The new credential is tried against the target first
    /// (GitHub: the scope's public key; GitLab: its variables) and sealed
    /// under the organization's active KEK only if the target accepts it;
    /// on refusal the old one stays. Dead letters get fresh attempts.
    pub async fn set_credential(
        &self,
        who: &Unsealed,
        org: &str,
        id: &str,
        input: CredentialInput,
    ) -> Result<TargetView> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let t = self.target(org_row.id, id).await?;
        let cred = parse_credential(
            &t.provider,
            &input.token,
            input.app_id.as_ref(),
            input.installation_id.as_ref(),
            &input.private_key,
        )?;
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("no HTTP client to try the credential with".into()))?;
        let mut location: Location = serde_json::from_str(&t.location).unwrap_or_default();
        cred.auth.clone_into(&mut location.auth);
        location.app_id.clone_from(&cred.app_id);
        location.installation_id.clone_from(&cred.installation_id);
        let mut row = t.clone();
        row.location = serde_json::to_string(&location).map_err(|e| ServiceError::Internal(e.to_string()))?;
        // A scratch cache: nothing of the trial is kept unless it is saved.
        let trial = Arc::new(AppTokens::default());
        let mut p = Provider::open(http, &row, cred.secret.clone(), trial.clone());
        if let Err(e) = p.verify().await {
            return Err(ServiceError::Unprocessable(
                "ci_sync_credential_refused",
                format!("the target refused the new credential; the old one is kept: {}", e.msg),
            ));
        }
        let view = self.views(org_row.id, vec![t.clone()]).await?.remove(0);
        let path = self
            .store
            .tenants
            .resolve_env(org, &view.project, &view.environment)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!("environment {org}/{}/{}", view.project, view.environment))
            })?;
        row.kek_version = path.kek_version;
        let kek = self.secrets.kek(who.keyring(), org_row.id, row.kek_version).await?;
        let sealed = keys::encrypt_value(&kek, &credential_row(&row), cred.secret.as_bytes())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        row.credential = sealed.ciphertext;
        row.wrapped_dek = sealed.wrapped_dek;
        if !self.store.ci.set_ci_target_credential(&row).await? {
            return Err(ServiceError::NotFound(format!("sync target {id}")));
        }
        {
            let mut cache = self.app_tokens.lock().unwrap_or_else(|p| p.into_inner());
            cache.remove(&row.id);
            // The trial's installation token is good: keep it.
            if let Some(fresh) = trial.lock().unwrap_or_else(|p| p.into_inner()).remove(&row.id) {
                cache.insert(row.id, fresh);
            }
        }
        self.store.ci.requeue_ci_jobs(org_row.id, row.id, now_ms()).await?;
        Ok(self.views(org_row.id, vec![row]).await?.remove(0))
    }

    /// Sync now (org admins): queue the differences, make pending jobs
    /// due, give dead letters fresh attempts, and reconcile at the next
    /// run. A rate-limit block of the provider still holds.
    pub async fn run(&self, who: &Unsealed, org: &str, id: &str) -> Result<RunView> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let t = self.target(org_row.id, id).await?;
        let queued = self.enqueue_target(&t).await?;
        let requeued = self.store.ci.requeue_ci_jobs(org_row.id, t.id, now_ms()).await?;
        self.store.ci.request_ci_reconcile(org_row.id, t.id).await?;
        Ok(RunView { queued, requeued })
    }

    /// The `ci_sync` job (one server of a cluster): for every target,
    /// queue differences (the safety net of [`WriteSignal`]), send due
    /// jobs in order, then reconcile when due. A failure waits
    /// `retry_base × 2^(attempts-1)` (capped at 1 h), or longer when the
    /// provider says so.
    pub async fn run_due(&self, audit: &AuditService, retry_base: Duration) -> Result<String> {
        let Ok(keyring) = self.shared.keyring() else {
            return Ok("sealed: nothing synced".to_owned());
        };
        let Some(http) = &self.http else {
            return Ok("no HTTP client".to_owned());
        };
        let base = i64::try_from(retry_base.as_millis()).unwrap_or(MAX_BACKOFF_MS).max(1);
        let targets = self.store.ci.all_ci_targets().await?;
        if targets.is_empty() {
            return Ok("no sync targets".to_owned());
        }
        let orgs = self.store.tenants.list_orgs().await?;
        let (mut sent, mut failed, mut drifted) = (0, 0, 0);
        for mut t in targets {
            let org = orgs
                .iter()
                .find(|o| o.id == t.org_id)
                .map_or_else(|| t.org_id.to_string(), |o| o.slug.clone());
            self.enqueue_target(&t).await?;
            if t.blocked_until > now_ms() {
                continue;
            }
            let mut p = match self.provider(&keyring, http, &t).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(target_id = %t.id, error = %e, "ci sync: cannot open the target's credential");
                    continue;
                }
            };
            let (s, f) = self.send_due(&keyring, &mut p, &mut t, audit, (&org, base)).await?;
            sent += s;
            failed += f;
            let reconcile_due = t
                .reconciled_at
                .is_none_or(|at| now_ms().saturating_sub(at) >= RECONCILE_INTERVAL.as_millis() as i64);
            if f == 0 && t.blocked_until <= now_ms() && reconcile_due {
                match self.reconcile(&keyring, &mut p, &mut t, audit, &org).await {
                    Ok(n) => drifted += n,
                    Err(e) => {
                        t.last_error = Some(format!("reconcile: {}", e.msg));
                        t.last_error_at = Some(now_ms());
                        if let Some(at) = e.retry_at {
                            t.blocked_until = at;
                        }
                    }
                }
            }
            if let Some(at) = p.blocked_until {
                t.blocked_until = t.blocked_until.max(at);
            }
            if p.app_token_refused {
                self.app_tokens.lock().unwrap_or_else(|p| p.into_inner()).remove(&t.id);
            }
            drop(p);
            self.store.ci.update_ci_target_status(&t).await?;
        }
        Ok(format!(
            "{sent} sync jobs done, {failed} failed, {drifted} drifted keys"
        ))
    }

    /// A provider connection for `t` with its credential decrypted.
    async fn provider<'a>(
        &self,
        keyring: &Keyring,
        http: &'a reqwest::Client,
        t: &CiTargetRow,
    ) -> Result<Provider<'a>> {
        let kek = self.secrets.kek(keyring, t.org_id, t.kek_version).await?;
        let plain = keys::decrypt_value(&kek, &credential_row(t), &t.credential, &t.wrapped_dek)
            .map_err(|_| ServiceError::Internal("a sync target's credential does not decrypt".into()))?;
        let secret = Zeroizing::new(String::from_utf8_lossy(&plain).into_owned());
        Ok(Provider::open(http, t, secret, self.app_tokens.clone()))
    }

    fn env_path(t: &CiTargetRow) -> EnvPath {
        // Decryption reads the organization and environment only.
        EnvPath {
            org_id: t.org_id,
            project_id: Uuid::nil(),
            env_id: t.env_id,
            kek_version: t.kek_version,
        }
    }

    /// Send a target's due jobs in order; stops at the first failure (the
    /// rest wait for the next run). Returns (done, failed).
    async fn send_due(
        &self,
        keyring: &Keyring,
        p: &mut Provider<'_>,
        t: &mut CiTargetRow,
        audit: &AuditService,
        (org, base): (&str, i64),
    ) -> Result<(usize, usize)> {
        let jobs = self.store.ci.due_ci_jobs(t.org_id, t.id, now_ms(), BATCH).await?;
        if jobs.is_empty() {
            return Ok((0, 0));
        }
        let current = self.store.secrets.current_values(t.org_id, t.env_id).await?;
        let by_key: BTreeMap<&str, &CurrentValue> = current.iter().map(|v| (v.key.as_str(), v)).collect();
        let path = Self::env_path(t);
        let (mut done, mut failed) = (0, 0);
        let resource = |key: &str| format!("/api/v1/orgs/{org}/ci-sync/{}/keys/{key}", t.id);
        for mut job in jobs {
            let now = now_ms();
            let cur = by_key.get(job.key.as_str()).copied();
            // An older job never overwrites a newer state.
            let stale = match job.op.as_str() {
                "put" => cur.map(|v| v.version) != Some(job.version),
                _ => cur.is_some(),
            };
            if stale {
                job.status = "superseded".to_owned();
                job.done_at = Some(now);
                self.store.ci.update_ci_job(&job).await?;
                continue;
            }
            let outcome = match (job.op.as_str(), cur) {
                ("put", Some(v)) => match self.secrets.decrypt(keyring, &path, &v.key, v.into()).await {
                    Ok(value) => p.put(&job.key, &value).await,
                    // A value that does not decrypt here never will: a
                    // dead letter, not a stuck queue.
                    Err(e) => Err(CallError {
                        msg: e.to_string(),
                        status: None,
                        retry_at: None,
                        permanent: true,
                    }),
                },
                _ => p.delete(&job.key).await.map(|()| String::new()),
            };
            job.attempts += 1;
            let now = now_ms();
            match outcome {
                Ok(remote_updated_at) => {
                    job.status = "done".to_owned();
                    job.last_error = None;
                    job.done_at = Some(now);
                    if job.op == "put" {
                        self.store
                            .ci
                            .put_ci_state(&CiStateRow {
                                org_id: t.org_id,
                                target_id: t.id,
                                key: job.key.clone(),
                                version: job.version,
                                written_at: now,
                                remote_updated_at,
                            })
                            .await?;
                    } else {
                        self.store.ci.delete_ci_state(t.org_id, t.id, &job.key).await?;
                    }
                    t.last_success_at = Some(now);
                    self.store.ci.update_ci_job(&job).await?;
                    audit
                        .audit(system_event(
                            &format!("ci_sync.{}", job.op),
                            resource(&job.key),
                            org.to_owned(),
                            format!("{} version {} at {}", t.provider, job.version, t.api_url),
                            Outcome::Allowed,
                        ))
                        .await?;
                    done += 1;
                }
                Err(e) => {
                    job.last_error = Some(e.msg.clone());
                    t.last_error = Some(e.msg.clone());
                    t.last_error_at = Some(now);
                    if let Some(at) = e.retry_at {
                        t.blocked_until = t.blocked_until.max(at);
                    }
                    if e.permanent || job.attempts >= MAX_ATTEMPTS {
                        job.status = "dead".to_owned();
                        job.done_at = Some(now);
                        audit
                            .audit(system_event(
                                "ci_sync.dead",
                                resource(&job.key),
                                org.to_owned(),
                                format!("{} after {} attempts: {}", job.op, job.attempts, e.msg),
                                Outcome::Error,
                            ))
                            .await?;
                    } else {
                        let shift = u32::try_from(job.attempts - 1).unwrap_or(0).min(20);
                        let wait = base.saturating_mul(1_i64 << shift).min(MAX_BACKOFF_MS);
                        job.next_at = now.saturating_add(wait).max(e.retry_at.unwrap_or(0));
                    }
                    self.store.ci.update_ci_job(&job).await?;
                    failed += 1;
                    break;
                }
            }
        }
        Ok((done, failed))
    }

    /// Compare the target with what coffer last wrote there; returns how
    /// many keys drifted. Keys with a job still to run are skipped.
    async fn reconcile(
        &self,
        keyring: &Keyring,
        p: &mut Provider<'_>,
        t: &mut CiTargetRow,
        audit: &AuditService,
        org: &str,
    ) -> CallResult<usize> {
        let internal = |e: ServiceError| CallError::new(format!("internal: {e}"));
        let current = self
            .store
            .secrets
            .current_values(t.org_id, t.env_id)
            .await
            .map_err(|e| internal(e.into()))?;
        let state = self
            .store
            .ci
            .ci_state(t.org_id, t.id)
            .await
            .map_err(|e| internal(e.into()))?;
        let synced: Vec<(&CiStateRow, &CurrentValue)> = state
            .iter()
            .filter_map(|s| {
                current
                    .iter()
                    .find(|v| v.key == s.key && v.version == s.version)
                    .map(|v| (s, v))
            })
            .collect();
        let path = Self::env_path(t);
        let mut found: Vec<(String, &'static str)> = Vec::new();
        if t.provider == "github" {
            let remote = p.github_list().await?;
            for (s, _) in &synced {
                match remote.get(&s.key.to_uppercase()) {
                    None => found.push((s.key.clone(), "missing")),
                    Some(at) if *at != s.remote_updated_at => found.push((s.key.clone(), "changed")),
                    Some(_) => {}
                }
            }
        } else {
            for (s, v) in &synced {
                let ours = self
                    .secrets
                    .decrypt(keyring, &path, &v.key, (*v).into())
                    .await
                    .map_err(internal)?;
                match p.gitlab_value(&s.key).await? {
                    None => found.push((s.key.clone(), "missing")),
                    Some(theirs) if !bool::from(theirs.as_bytes().ct_eq(ours.as_bytes())) => {
                        found.push((s.key.clone(), "changed"));
                    }
                    Some(_) => {}
                }
            }
        }
        let now = now_ms();
        let before = drift_of(t);
        let mut entries = Vec::new();
        let mut overwrite = Vec::new();
        for (key, reason) in &found {
            let known = before.iter().find(|d| &d.key == key && d.reason == *reason);
            if known.is_none() {
                let what = if t.overwrite_drift { "overwritten" } else { "reported" };
                audit
                    .audit(system_event(
                        "ci_sync.drift",
                        format!("/api/v1/orgs/{org}/ci-sync/{}/keys/{key}", t.id),
                        org.to_owned(),
                        format!("{reason} at {} since coffer's write; {what}", t.provider),
                        Outcome::Allowed,
                    ))
                    .await
                    .map_err(internal)?;
            }
            if t.overwrite_drift
                && let Some(v) = current.iter().find(|v| &v.key == key)
            {
                overwrite.push(CiJobRow {
                    id: Uuid::new_v4(),
                    org_id: t.org_id,
                    target_id: t.id,
                    key: key.clone(),
                    version: v.version,
                    op: "put".to_owned(),
                    attempts: 0,
                    next_at: now,
                    status: "pending".to_owned(),
                    last_error: None,
                    created_at: now,
                    done_at: None,
                });
            }
            entries.push(DriftEntry {
                key: key.clone(),
                reason: (*reason).to_owned(),
                detected_at: known.map_or_else(|| rfc3339(now), |d| d.detected_at.clone()),
                overwritten: t.overwrite_drift,
            });
        }
        self.store
            .ci
            .enqueue_ci_jobs(t.org_id, &overwrite)
            .await
            .map_err(|e| internal(e.into()))?;
        let drift = serde_json::to_string(&entries).unwrap_or_else(|_| "[]".to_owned());
        self.store
            .ci
            .record_ci_reconcile(t.org_id, t.id, &drift, now, t.reconciled_at)
            .await
            .map_err(|e| internal(e.into()))?;
        t.drift = drift;
        Ok(found.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_are_checked() {
        assert_eq!(
            check_api_url("https://api.github.com/").ok().as_deref(),
            Some("https://api.github.com")
        );
        assert!(check_api_url("http://127.0.0.1:8080").is_ok());
        assert!(check_api_url("http://localhost:1/x").is_ok());
        assert!(
            check_api_url("http://github.example").is_err(),
            "plain http off loopback"
        );
        assert!(check_api_url("https://u:p@x.example").is_err());
        assert!(check_api_url("ftp://x.example").is_err());
        assert!(check_api_url("https://x.example/?a=1").is_err());
    }

    #[test]
    fn retry_after_and_rate_limits() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_at(&h, 1_000), None);
        h.insert("retry-after", "3".parse().expect("header"));
        assert_eq!(retry_at(&h, 1_000), Some(4_000));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-ratelimit-remaining", "0".parse().expect("header"));
        h.insert("x-ratelimit-reset", "10".parse().expect("header"));
        assert_eq!(retry_at(&h, 1_000), Some(10_000));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("ratelimit-remaining", "5".parse().expect("header"));
        assert_eq!(retry_at(&h, 1_000), None);
        h.insert("ratelimit-remaining", "0".parse().expect("header"));
        h.insert("ratelimit-reset", "99999999999".parse().expect("header"));
        assert_eq!(retry_at(&h, 1_000), Some(1_000 + MAX_BACKOFF_MS), "capped at an hour");
    }

    #[test]
    fn github_times_parse() {
        assert_eq!(github_time("1970-01-01T00:01:40Z"), Some(100_000));
        assert_eq!(github_time("2016-07-11T22:14:10Z"), Some(1_468_275_250_000));
        assert_eq!(github_time("2016-07-11T22:14:10+01:00"), None);
        assert_eq!(github_time("2016-13-11T22:14:10Z"), None);
        assert_eq!(github_time(""), None);
    }

    #[test]
    fn app_credentials_are_checked_and_never_quoted() {
        let id = |v: &str| Some(json!(v));
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n";
        let e = parse_credential("github", "", id("12").as_ref(), id("34").as_ref(), pem)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not a usable RSA private key") && !e.contains("bm90"), "{e}");
        let e = parse_credential("gitlab", "", id("12").as_ref(), id("34").as_ref(), pem);
        assert!(e.is_err(), "apps are for GitHub");
        let e = parse_credential("github", "tok", id("12").as_ref(), id("34").as_ref(), pem);
        assert!(e.is_err(), "not both");
        let e = parse_credential("github", "", id("x1").as_ref(), id("34").as_ref(), pem);
        assert!(e.is_err_and(|e| e.to_string().contains("app_id")));
        let e = parse_credential(
            "github",
            "",
            id("1").as_ref(),
            id("2").as_ref(),
            "-----BEGIN PRIVATE KEY-----",
        );
        assert!(e.is_err_and(|e| e.to_string().contains("PKCS#8")));
        let ok = parse_credential("github", " tok-1 ", None, None, "").expect("a token");
        assert_eq!((ok.secret.as_str(), ok.auth), ("tok-1", ""));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("group/sub project"), "group%2Fsub%20project");
        assert_eq!(seg("DB_URL"), "DB_URL");
    }

    #[test]
    fn input_debug_hides_the_token() {
        let input: TargetInput = serde_json::from_value(json!({
            "project": "api", "environment": "prod", "provider": "github",
            "owner": "acme", "repo": "api", "token": "ghp_s3cret-token-value"
        }))
        .expect("input");
        assert!(!format!("{input:?}").contains("s3cret"));
        let (provider, scope, url, loc) = parse_input(&input).expect("valid");
        assert_eq!(
            (provider.as_str(), scope.as_str(), url.as_str()),
            ("github", "repository", "https://api.github.com")
        );
        assert_eq!(loc.repo, "api");
    }

    #[test]
    fn sealed_boxes_open_with_the_recipient_key() {
        let sk = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        let sealed = sk
            .public_key()
            .seal(&mut crypto_box::aead::OsRng, b"value")
            .expect("seal");
        assert_eq!(sk.unseal(&sealed).expect("unseal"), b"value");
    }
}
