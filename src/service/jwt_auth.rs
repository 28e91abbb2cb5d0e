//! JWT/OIDC workload-identity login (issue 19, docs/jwt-auth.md).
//!
//! A CI job (GitHub Actions, GitLab CI, any OIDC issuer) trades the ID
//! token its platform gives it for a short-lived coffer token of a service
//! account, with no stored credential. Per organization, admins register
//! trusted **issuers** (where their public keys are: an OIDC discovery
//! document, a JWKS URL or a static JWKS) and **roles**: which tokens of an
//! issuer (required audience, bound claims, exact or `*` glob) may act as
//! which service account, for how long (default 15 min).
//!
//! Verification ([`JwtAuthService::login`]): the header's `alg` must be one
//! of RS256/384/512 or ES256/384 — never `none`, never HMAC — and agree
//! with the key its `kid` names (kty, curve, and the key's own `alg`);
//! the signature is checked with `jsonwebtoken` (ring), then every claim
//! here, strictly typed: `iss` equal to the issuer, `aud` holding the
//! role's audience, `exp`/`nbf`/`iat` with 60 s leeway, a `sub`, and the
//! role's bound claims. Keys are cached per issuer for 10 min; an unknown
//! `kid` refetches the set at most once per 2 s per issuer, so a rotation
//! at the issuer is followed without letting junk tokens hammer it.
//! Failed logins count against the source's login limit. Nothing here
//! logs, stores or returns the token.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::limits::Kind;
use super::orgs::check_slug;
use super::secrets::author_of;
use super::{PrincipalKind, Result, ServiceError, Shared, Unsealed, auth, now_ms, rfc3339};
use crate::storage::jwt_auth::{JwtAuthStore, JwtIssuerRow, JwtRoleRow};
use crate::storage::{AccessStore, IdentityStore, TenantStore};

/// Lifetime of an issued token when the role names none (15 min).
pub const DEFAULT_MAX_TTL_S: u64 = 900;
/// The longest lifetime a role may give.
const MAX_TTL_CAP_S: u64 = 12 * 3600;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_S: i64 = 60;
/// Timeout of one discovery or JWKS request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a fetched key set is used before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(600);
/// An unknown `kid` refetches the set at most this often per issuer.
pub const REFETCH_MIN: Duration = Duration::from_secs(2);
/// Largest discovery document or JWKS read.
const MAX_DOC_BYTES: usize = 256 * 1024;
/// Largest JWT accepted.
const MAX_JWT_BYTES: usize = 16 * 1024;
/// Keys kept of one set.
const MAX_KEYS: usize = 100;
/// Issuers per organization.
const MAX_ISSUERS: usize = 20;
/// Roles per organization.
const MAX_ROLES: usize = 200;
/// Bound claims per role, and patterns per claim.
const MAX_BOUND: usize = 32;

/// GitHub Actions' issuer.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// GitLab.com's issuer (self-managed: the instance URL).
pub const GITLAB_ISSUER: &str = "https://gitlab.com";

/// Claims of GitHub Actions ID tokens a role may bind.
const GITHUB_CLAIMS: &[&str] = &[
    "sub",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "repository_visibility",
    "ref",
    "ref_type",
    "ref_protected",
    "environment",
    "workflow",
    "workflow_ref",
    "job_workflow_ref",
    "event_name",
    "actor",
    "actor_id",
    "base_ref",
    "head_ref",
    "runner_environment",
    "enterprise",
    "enterprise_id",
];
/// GitHub claims that pin the repository or its owner: a role must bind one.
const GITHUB_IDENTITY: &[&str] = &[
    "sub",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "workflow_ref",
    "job_workflow_ref",
];
/// Claims of GitLab CI ID tokens a role may bind.
const GITLAB_CLAIMS: &[&str] = &[
    "sub",
    "project_path",
    "project_id",
    "namespace_path",
    "namespace_id",
    "ref",
    "ref_type",
    "ref_protected",
    "ref_path",
    "environment",
    "environment_protected",
    "environment_action",
    "deployment_tier",
    "pipeline_source",
    "user_login",
    "user_id",
    "user_email",
    "runner_id",
    "runner_environment",
    "ci_config_ref_uri",
    "ci_config_sha",
    "project_visibility",
];
/// GitLab claims that pin the project or its namespace: a role must bind one.
const GITLAB_IDENTITY: &[&str] = &[
    "sub",
    "project_path",
    "project_id",
    "namespace_path",
    "namespace_id",
    "ci_config_ref_uri",
];

/// Signature algorithms accepted (asymmetric only).
const ALLOWED_ALGS: &str = "RS256, RS384, RS512, ES256, ES384";

/// A refusal of the token: 401 with what is wrong.
fn refused(msg: impl Into<String>) -> ServiceError {
    ServiceError::JwtRefused(msg.into())
}

/// The issuer cannot be reached or answers nonsense.
fn unavailable(msg: String) -> ServiceError {
    ServiceError::Unprocessable("jwt_issuer_unavailable", msg)
}

/// A value quoted in an error, cut to 200 characters.
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(200).collect();
    format!("{cut:?}")
}

/// `POST /api/v1/orgs/{org}/jwt/issuers` body.
#[derive(Debug, Deserialize)]
pub struct IssuerInput {
    /// slug
    pub name: String,
    /// github | gitlab (fills the issuer and checks role claims)
    #[serde(default)]
    pub preset: Option<String>,
    /// the tokens' `iss` (default from the preset)
    #[serde(default)]
    pub issuer: Option<String>,
    /// OIDC discovery URL (default: `<issuer>/.well-known/openid-configuration`)
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// a JWKS URL instead of discovery
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// a static JWKS instead of fetching one
    #[serde(default)]
    pub jwks: Option<Value>,
}

/// An issuer as listed.
#[derive(Debug, Serialize)]
pub struct IssuerView {
    /// slug
    pub name: String,
    /// the tokens' `iss`
    pub issuer: String,
    /// github | gitlab | generic
    pub preset: String,
    /// discovery | jwks_url | static
    pub source: &'static str,
    /// discovery URL
    pub discovery_url: Option<String>,
    /// JWKS URL
    pub jwks_url: Option<String>,
    /// key ids of a static set
    pub static_kids: Vec<String>,
    /// who created it
    pub created_by: String,
    /// RFC 3339
    pub created_at: String,
    /// RFC 3339: when this server last fetched the issuer's keys (None:
    /// static set, or not fetched since this server started)
    pub last_key_fetch: Option<String>,
}

/// Patterns of one bound claim: one or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Patterns {
    /// one pattern
    One(String),
    /// any of these
    Many(Vec<String>),
}

/// A TTL: seconds or a duration string (`15m`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TtlInput {
    /// seconds
    Seconds(u64),
    /// `90s`, `15m`, `1h`
    Text(String),
}

/// `POST /api/v1/orgs/{org}/jwt/roles` body.
#[derive(Debug, Deserialize)]
pub struct RoleInput {
    /// slug
    pub name: String,
    /// issuer name
    pub issuer: String,
    /// required `aud`
    pub audience: String,
    /// claim → pattern(s), exact or with `*`
    #[serde(default)]
    pub bound_claims: BTreeMap<String, Patterns>,
    /// service account name
    pub service_account: String,
    /// lifetime of an issued token (default 15 min, at most 12 h)
    #[serde(default)]
    pub max_ttl: Option<TtlInput>,
}

/// A role as listed.
#[derive(Debug, Serialize)]
pub struct RoleView {
    /// slug
    pub name: String,
    /// issuer name
    pub issuer: String,
    /// required `aud`
    pub audience: String,
    /// claim → patterns
    pub bound_claims: BTreeMap<String, Vec<String>>,
    /// service account name
    pub service_account: String,
    /// seconds
    pub max_ttl: i64,
    /// who created it
    pub created_by: String,
    /// RFC 3339
    pub created_at: String,
}

/// What a login attempt established, for its audit record (filled as far
/// as it got): never the token; `sub` only once the signature verified.
#[derive(Debug, Default, Clone)]
pub struct JwtAttempt {
    /// organization slug
    pub org: Option<String>,
    /// role name asked for
    pub role: String,
    /// the role's issuer (`iss`)
    pub issuer: Option<String>,
    /// the verified token's `sub`
    pub sub: Option<String>,
}

impl JwtAttempt {
    /// The audit actor name: `jwt role=… iss=… sub=…`.
    pub fn describe(&self) -> String {
        let mut s = format!("jwt role={}", self.role);
        if let Some(i) = &self.issuer {
            s.push_str(&format!(" iss={i}"));
        }
        if let Some(sub) = &self.sub {
            s.push_str(&format!(" sub={sub}"));
        }
        s
    }
}

/// A successful login: a token of the role's service account.
#[derive(Serialize)]
pub struct JwtSession {
    /// bearer token
    pub access_token: Zeroizing<String>,
    /// "bearer"
    pub token_type: &'static str,
    /// seconds
    pub expires_in: i64,
    /// accessor of the token
    pub accessor: String,
    /// organization slug
    pub org: String,
    /// role used
    pub role: String,
    /// the service account the token acts as
    pub service_account: String,
    /// the principal (for Vault's policies)
    #[serde(skip)]
    pub kind: PrincipalKind,
}

impl std::fmt::Debug for JwtSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSession")
            .field("accessor", &self.accessor)
            .field("org", &self.org)
            .field("role", &self.role)
            .field("service_account", &self.service_account)
            .finish_non_exhaustive()
    }
}

/// One issuer's cached key set.
#[derive(Debug, Default)]
struct Slot {
    keys: Vec<Jwk>,
    /// when `keys` were fetched
    fetched: Option<Instant>,
    /// the last fetch attempt (success or not)
    tried: Option<Instant>,
    /// wall-clock time of the last successful fetch (unix ms), for the list
    fetched_at: Option<i64>,
}

/// Issuers, roles and JWT login.
#[derive(Clone)]
pub struct JwtAuthService {
    pub(super) shared: Arc<Shared>,
    pub(super) store: Arc<dyn JwtAuthStore>,
    pub(super) tenant_store: Arc<dyn TenantStore>,
    pub(super) access_store: Arc<dyn AccessStore>,
    pub(super) identity_store: Arc<dyn IdentityStore>,
    pub(super) access: super::AccessService,
    http: Option<reqwest::Client>,
    cache: Arc<Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<Slot>>>>>,
    /// key fetches made (discovery + JWKS round trips), for tests and metrics
    fetches: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for JwtAuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthService").finish_non_exhaustive()
    }
}

/// `http` for a loopback host only, else `https`; no credentials in it.
fn check_url(field: &str, url: &str) -> Result<String> {
    let url = url.trim();
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ServiceError::Invalid(format!("{field} {} is not a valid URL: {e}", shown(url))))?;
    let host = parsed.host_str().unwrap_or("");
    if host.is_empty() {
        return Err(ServiceError::Invalid(format!("{field} has no host")));
    }
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        other => {
            return Err(ServiceError::Invalid(format!(
                "{field} must be https (http only for a loopback host), not {other:?}"
            )));
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ServiceError::Invalid(format!("{field} must not hold credentials")));
    }
    Ok(parsed.to_string())
}

/// The usable signing keys of a JWKS document: RSA and EC P-256/P-384
/// keys with `use` absent or `sig`; others are skipped, not fatal.
fn parse_jwks(doc: &Value) -> Result<Vec<Jwk>> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| ServiceError::Invalid("a JWKS must be an object with a \"keys\" array".into()))?;
    let mut out = Vec::new();
    for k in keys.iter().take(MAX_KEYS) {
        if k.get("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
            continue;
        };
        let usable = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => true,
            AlgorithmParameters::EllipticCurve(p) => matches!(p.curve, EllipticCurve::P256 | EllipticCurve::P384),
            _ => false,
        };
        if usable && DecodingKey::from_jwk(&jwk).is_ok() {
            out.push(jwk);
        }
    }
    Ok(out)
}

/// The signature algorithm a token's header names, if allowed.
fn allowed_alg(alg: &str) -> Result<Algorithm> {
    match alg {
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "none" | "None" | "NONE" | "" => Err(refused(
            "alg \"none\" (an unsigned token) is never accepted; the token must be signed by the issuer",
        )),
        a if a.to_ascii_uppercase().starts_with("HS") => Err(refused(format!(
            "alg {} (a shared-secret MAC) is never accepted; tokens must be signed with the issuer's \
             private key ({ALLOWED_ALGS})",
            shown(a)
        ))),
        a => Err(refused(format!(
            "alg {} is not accepted; allowed: {ALLOWED_ALGS}",
            shown(a)
        ))),
    }
}

/// The key type decides: `alg` must fit the key's kty (and curve), and
/// the key's own `alg` when it names one.
fn check_alg_fits_key(alg: Algorithm, jwk: &Jwk, kid: &str) -> Result<()> {
    let fits = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => matches!(alg, Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512),
        AlgorithmParameters::EllipticCurve(p) => matches!(
            (alg, &p.curve),
            (Algorithm::ES256, EllipticCurve::P256) | (Algorithm::ES384, EllipticCurve::P384)
        ),
        _ => false,
    };
    let kty = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => "RSA",
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => "EC P-384",
        AlgorithmParameters::EllipticCurve(_) => "EC P-256",
        _ => "other",
    };
    if !fits {
        return Err(refused(format!(
            "alg {alg:?} does not match key {} (a {kty} key)",
            shown(kid)
        )));
    }
    if let Some(key_alg) = jwk.common.key_algorithm
        && key_alg.to_string() != format!("{alg:?}")
    {
        return Err(refused(format!(
            "alg {alg:?} differs from the alg {key_alg} of key {}",
            shown(kid)
        )));
    }
    Ok(())
}

/// A NumericDate claim: absent, or a finite number (seconds).
fn numeric(claims: &Value, name: &str) -> Result<Option<i64>> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64().filter(|f| f.is_finite()) {
            Some(f) => Ok(Some(f.floor() as i64)),
            None => Err(refused(format!("claim `{name}` must be a number (seconds since 1970)"))),
        },
    }
}

/// Check the registered claims of verified `claims` at `now_s`; returns `sub`.
fn check_claims(claims: &Value, issuer: &str, audience: &str, now_s: i64) -> Result<String> {
    if !claims.is_object() {
        return Err(refused("the token's payload is not a JSON object"));
    }
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == issuer => {}
        Some(iss) => {
            return Err(refused(format!(
                "wrong issuer: the token's iss is {}, the issuer is configured for {}",
                shown(iss),
                shown(issuer)
            )));
        }
        None => return Err(refused("the token has no `iss` claim (a string is required)")),
    }
    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(refused("claim `aud` must be a string or an array of strings")),
        None => return Err(refused("the token has no `aud` claim (an audience is required)")),
    };
    if !auds.contains(&audience) {
        let got: Vec<String> = auds.iter().take(5).map(|a| shown(a)).collect();
        return Err(refused(format!(
            "wrong audience: the token is for [{}], the role requires {}",
            got.join(", "),
            shown(audience)
        )));
    }
    let exp = numeric(claims, "exp")?.ok_or_else(|| refused("the token has no `exp` claim (required)"))?;
    if now_s > exp.saturating_add(LEEWAY_S) {
        return Err(refused(format!(
            "the token expired at {} ({LEEWAY_S} s leeway)",
            rfc3339(exp.saturating_mul(1000))
        )));
    }
    if let Some(nbf) = numeric(claims, "nbf")?
        && now_s.saturating_add(LEEWAY_S) < nbf
    {
        return Err(refused(format!(
            "the token is not valid before {} (nbf; {LEEWAY_S} s leeway)",
            rfc3339(nbf.saturating_mul(1000))
        )));
    }
    if let Some(iat) = numeric(claims, "iat")?
        && iat > now_s.saturating_add(LEEWAY_S)
    {
        return Err(refused(format!(
            "the token was issued in the future (iat {}; {LEEWAY_S} s leeway)",
            rfc3339(iat.saturating_mul(1000))
        )));
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() => Ok(sub.to_owned()),
        _ => Err(refused("the token has no `sub` claim (a non-empty string is required)")),
    }
}

/// `*` matches any run of characters (including none); the rest is exact.
fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if value.len() < first.len() + last.len() || !value.starts_with(first) || !value.ends_with(last) {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// A claim's value as bound claims compare it: strings as they are,
/// numbers and booleans in their JSON spelling.
fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Check the role's bound claims against verified `claims`.
fn check_bound(claims: &Value, bound: &BTreeMap<String, Vec<String>>) -> Result<()> {
    for (name, patterns) in bound {
        let list = patterns.iter().map(|p| shown(p)).collect::<Vec<_>>().join(", ");
        let Some(v) = claims.get(name).filter(|v| !v.is_null()) else {
            return Err(refused(format!(
                "claim `{name}` is missing; the role requires one of [{list}]"
            )));
        };
        let Some(text) = claim_text(v) else {
            return Err(refused(format!("claim `{name}` must be a string, number or boolean")));
        };
        if !patterns.iter().any(|p| glob(p, &text)) {
            return Err(refused(format!(
                "claim `{name}` mismatched: {} is not one of [{list}]",
                shown(&text)
            )));
        }
    }
    Ok(())
}

/// The base64url JSON segment `i` of a compact JWS.
fn segment(token: &str, i: usize, what: &str) -> Result<Value> {
    let part = token.split('.').nth(i).unwrap_or("");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| refused(format!("malformed JWT: the {what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|_| refused(format!("malformed JWT: the {what} is not JSON")))
}

fn parse_bound(text: &str) -> BTreeMap<String, Vec<String>> {
    serde_json::from_str(text).unwrap_or_default()
}

fn issuer_view(i: &JwtIssuerRow) -> IssuerView {
    let static_kids = i
        .jwks
        .as_deref()
        .and_then(|j| serde_json::from_str::<Value>(j).ok())
        .and_then(|v| parse_jwks(&v).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|k| k.common.key_id.unwrap_or_default())
        .collect();
    IssuerView {
        name: i.name.clone(),
        issuer: i.issuer.clone(),
        preset: if i.preset.is_empty() {
            "generic".to_owned()
        } else {
            i.preset.clone()
        },
        source: if i.jwks.is_some() {
            "static"
        } else if i.jwks_url.is_some() {
            "jwks_url"
        } else {
            "discovery"
        },
        discovery_url: i.discovery_url.clone(),
        jwks_url: i.jwks_url.clone(),
        static_kids,
        created_by: i.created_by.clone(),
        created_at: rfc3339(i.created_at),
        last_key_fetch: None,
    }
}

impl JwtAuthService {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        shared: Arc<Shared>,
        store: Arc<dyn JwtAuthStore>,
        tenant_store: Arc<dyn TenantStore>,
        access_store: Arc<dyn AccessStore>,
        identity_store: Arc<dyn IdentityStore>,
        access: super::AccessService,
    ) -> JwtAuthService {
        let http = match reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("coffer-jwt-auth/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "jwt auth: no HTTP client; only static key sets work");
                None
            }
        };
        JwtAuthService {
            shared,
            store,
            tenant_store,
            access_store,
            identity_store,
            access,
            http,
            cache: Arc::default(),
            fetches: Arc::default(),
        }
    }

    /// Key-set fetches this server made (each discovery or JWKS request).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Register an issuer (org admins). Fetched keys are checked now, so a
    /// wrong URL fails here rather than at the first CI login.
    pub async fn add_issuer(&self, who: &Unsealed, org: &str, input: IssuerInput) -> Result<IssuerView> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let name = input.name.trim();
        check_slug("name", name)?;
        let preset = match input.preset.as_deref().map(str::trim) {
            None | Some("") | Some("generic") => "",
            Some("github") => "github",
            Some("gitlab") => "gitlab",
            Some(other) => {
                return Err(ServiceError::Invalid(format!(
                    "preset {} is unknown; use github, gitlab or none",
                    shown(other)
                )));
            }
        };
        let issuer = match (input.issuer.as_deref().map(str::trim).filter(|s| !s.is_empty()), preset) {
            (Some(i), _) => i.to_owned(),
            (None, "github") => GITHUB_ISSUER.to_owned(),
            (None, "gitlab") => GITLAB_ISSUER.to_owned(),
            (None, _) => {
                return Err(ServiceError::Invalid(
                    "issuer is required (the exact `iss` of the tokens), or a preset (github, gitlab)".into(),
                ));
            }
        };
        check_url("issuer", &issuer)?;
        if issuer.len() > 500 {
            return Err(ServiceError::Invalid("issuer must be at most 500 characters".into()));
        }
        let given = [
            input.discovery_url.is_some(),
            input.jwks_url.is_some(),
            input.jwks.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(ServiceError::Invalid(
                "give at most one of discovery_url, jwks_url and jwks".into(),
            ));
        }
        let jwks = match &input.jwks {
            Some(doc) => {
                let keys = parse_jwks(doc)?;
                if keys.is_empty() {
                    return Err(ServiceError::Invalid(
                        "the static JWKS has no usable signing key (RSA, or EC P-256/P-384, with use \"sig\" or no use)"
                            .into(),
                    ));
                }
                Some(doc.to_string())
            }
            None => None,
        };
        let jwks_url = input
            .jwks_url
            .as_deref()
            .map(|u| check_url("jwks_url", u))
            .transpose()?;
        let discovery_url = match (&jwks, &jwks_url, input.discovery_url.as_deref()) {
            (None, None, Some(u)) => Some(check_url("discovery_url", u)?),
            (None, None, None) => Some(check_url(
                "discovery_url",
                &format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')),
            )?),
            _ => None,
        };
        if self.store.jwt_issuers(org_row.id).await?.len() >= MAX_ISSUERS {
            return Err(ServiceError::Invalid(format!(
                "an organization has at most {MAX_ISSUERS} JWT issuers"
            )));
        }
        let row = JwtIssuerRow {
            id: Uuid::new_v4(),
            org_id: org_row.id,
            name: name.to_owned(),
            issuer,
            preset: preset.to_owned(),
            discovery_url,
            jwks_url,
            jwks,
            created_by: author_of(who),
            created_at: now_ms(),
        };
        if row.jwks.is_none() {
            let keys = self.fetch_keys(&row).await?;
            if keys.is_empty() {
                return Err(unavailable(format!(
                    "the key set of issuer {} has no usable signing key",
                    shown(&row.issuer)
                )));
            }
            let slot = self.slot(row.id);
            let mut s = slot.lock().await;
            s.keys = keys;
            s.fetched = Some(Instant::now());
            s.tried = s.fetched;
            s.fetched_at = Some(now_ms());
        }
        self.store.insert_jwt_issuer(&row).await?;
        let mut view = issuer_view(&row);
        view.last_key_fetch = self.last_fetch(row.id).await;
        Ok(view)
    }

    /// An organization's issuers (org admins).
    pub async fn list_issuers(&self, who: &Unsealed, org: &str) -> Result<Vec<IssuerView>> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let mut out = Vec::new();
        for row in self.store.jwt_issuers(org_row.id).await? {
            let mut view = issuer_view(&row);
            if row.jwks.is_none() {
                view.last_key_fetch = self.last_fetch(row.id).await;
            }
            out.push(view);
        }
        Ok(out)
    }

    /// When this server last fetched the keys of issuer `id` (RFC 3339).
    async fn last_fetch(&self, id: Uuid) -> Option<String> {
        let slot = match self.cache.lock() {
            Ok(c) => c.get(&id).cloned(),
            Err(p) => p.into_inner().get(&id).cloned(),
        }?;
        let at = slot.lock().await.fetched_at;
        at.map(rfc3339)
    }

    /// Remove an issuer no role uses (org admins).
    pub async fn remove_issuer(&self, who: &Unsealed, org: &str, name: &str) -> Result<()> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let issuer = self
            .store
            .jwt_issuers(org_row.id)
            .await?
            .into_iter()
            .find(|i| i.name == name)
            .ok_or_else(|| ServiceError::NotFound(format!("JWT issuer {name}")))?;
        if !self.store.delete_jwt_issuer(org_row.id, issuer.id).await? {
            return Err(ServiceError::NotFound(format!("JWT issuer {name}")));
        }
        if let Ok(mut c) = self.cache.lock() {
            c.remove(&issuer.id);
        }
        Ok(())
    }

    /// Add a role (org admins).
    pub async fn add_role(&self, who: &Unsealed, org: &str, input: RoleInput) -> Result<RoleView> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let name = input.name.trim();
        check_slug("name", name)?;
        let issuer = self
            .store
            .jwt_issuers(org_row.id)
            .await?
            .into_iter()
            .find(|i| i.name == input.issuer.trim())
            .ok_or_else(|| ServiceError::NotFound(format!("JWT issuer {}", input.issuer.trim())))?;
        let audience = input.audience.trim();
        if audience.is_empty() || audience.len() > 500 {
            return Err(ServiceError::Invalid(
                "audience is required (the `aud` the tokens must carry), at most 500 characters".into(),
            ));
        }
        let mut bound: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (claim, p) in input.bound_claims {
            let claim = claim.trim().to_owned();
            let patterns = match p {
                Patterns::One(s) => vec![s],
                Patterns::Many(v) => v,
            };
            if claim.is_empty() || claim.len() > 100 {
                return Err(ServiceError::Invalid(
                    "a bound claim name must be 1-100 characters".into(),
                ));
            }
            if patterns.is_empty()
                || patterns.len() > MAX_BOUND
                || patterns.iter().any(|p| p.is_empty() || p.len() > 500)
            {
                return Err(ServiceError::Invalid(format!(
                    "bound claim `{claim}` needs 1-{MAX_BOUND} non-empty patterns of at most 500 characters"
                )));
            }
            if ["iss", "aud", "exp", "nbf", "iat"].contains(&claim.as_str()) {
                return Err(ServiceError::Invalid(format!(
                    "`{claim}` is checked by coffer itself; bind the issuer and the audience instead"
                )));
            }
            bound.insert(claim, patterns);
        }
        if bound.is_empty() || bound.len() > MAX_BOUND {
            return Err(ServiceError::Invalid(format!(
                "a role needs 1-{MAX_BOUND} bound claims (e.g. repository=acme/api): without one, every \
                 token of the issuer would log in"
            )));
        }
        let (known, identity) = match issuer.preset.as_str() {
            "github" => (GITHUB_CLAIMS, GITHUB_IDENTITY),
            "gitlab" => (GITLAB_CLAIMS, GITLAB_IDENTITY),
            _ => (&[][..], &[][..]),
        };
        if !known.is_empty() {
            if let Some(unknown) = bound.keys().find(|c| !known.contains(&c.as_str())) {
                return Err(ServiceError::Invalid(format!(
                    "claim `{unknown}` is not a {} claim; use one of {}",
                    issuer.preset,
                    known.join(", ")
                )));
            }
            // Every repository of the platform gets tokens from the same
            // issuer: the role must pin whose tokens it accepts.
            let pinned = bound
                .iter()
                .any(|(c, ps)| identity.contains(&c.as_str()) && ps.iter().all(|p| !p.starts_with('*')));
            if !pinned {
                return Err(ServiceError::Invalid(format!(
                    "a {} role must bind one of {} to a value not starting with `*`: otherwise any \
                     project on the platform could log in",
                    issuer.preset,
                    identity.join(", ")
                )));
            }
        }
        let max_ttl = match &input.max_ttl {
            None => DEFAULT_MAX_TTL_S,
            Some(TtlInput::Seconds(n)) => *n,
            Some(TtlInput::Text(t)) => super::vault::parse_ttl(t)?,
        };
        if max_ttl == 0 || max_ttl > MAX_TTL_CAP_S {
            return Err(ServiceError::Invalid(format!(
                "max_ttl must be between 1 s and {} h",
                MAX_TTL_CAP_S / 3600
            )));
        }
        let sa = self
            .access_store
            .service_accounts(org_row.id)
            .await?
            .into_iter()
            .find(|s| s.name == input.service_account.trim())
            .ok_or_else(|| ServiceError::NotFound(format!("service account {}", input.service_account.trim())))?;
        if self.store.jwt_roles(org_row.id).await?.len() >= MAX_ROLES {
            return Err(ServiceError::Invalid(format!(
                "an organization has at most {MAX_ROLES} JWT roles"
            )));
        }
        let row = JwtRoleRow {
            id: Uuid::new_v4(),
            org_id: org_row.id,
            name: name.to_owned(),
            issuer_id: issuer.id,
            audience: audience.to_owned(),
            bound_claims: serde_json::to_string(&bound).map_err(|e| ServiceError::Internal(e.to_string()))?,
            sa_id: sa.id,
            max_ttl_s: max_ttl as i64,
            created_by: author_of(who),
            created_at: now_ms(),
        };
        self.store.insert_jwt_role(&row).await?;
        Ok(RoleView {
            name: row.name,
            issuer: issuer.name,
            audience: row.audience,
            bound_claims: bound,
            service_account: sa.name,
            max_ttl: row.max_ttl_s,
            created_by: row.created_by,
            created_at: rfc3339(row.created_at),
        })
    }

    /// An organization's roles (org admins).
    pub async fn list_roles(&self, who: &Unsealed, org: &str) -> Result<Vec<RoleView>> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let issuers = self.store.jwt_issuers(org_row.id).await?;
        let sas = self.access_store.service_accounts(org_row.id).await?;
        Ok(self
            .store
            .jwt_roles(org_row.id)
            .await?
            .into_iter()
            .map(|r| RoleView {
                issuer: issuers
                    .iter()
                    .find(|i| i.id == r.issuer_id)
                    .map_or_else(String::new, |i| i.name.clone()),
                service_account: sas
                    .iter()
                    .find(|s| s.id == r.sa_id)
                    .map_or_else(|| "(deleted)".to_owned(), |s| s.name.clone()),
                bound_claims: parse_bound(&r.bound_claims),
                name: r.name,
                audience: r.audience,
                max_ttl: r.max_ttl_s,
                created_by: r.created_by,
                created_at: rfc3339(r.created_at),
            })
            .collect())
    }

    /// Remove a role (org admins). Tokens it issued live out their TTL.
    pub async fn remove_role(&self, who: &Unsealed, org: &str, name: &str) -> Result<()> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        if self.store.delete_jwt_role(org_row.id, name).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("JWT role {name}")))
        }
    }

    /// `POST /auth/jwt/login` (native and Vault): trade a verified ID token
    /// for a token of the role's service account, valid for the role's
    /// max TTL. `org` may be omitted when the role name is unique.
    /// `attempt` gets what the audit record may show.
    pub async fn login(
        &self,
        source: Option<IpAddr>,
        org: Option<&str>,
        role: &str,
        jwt: &str,
        attempt: &mut JwtAttempt,
    ) -> Result<JwtSession> {
        self.shared.require_unsealed()?;
        if let Some(retry_after_s) = self.shared.limits.blocked(Kind::Login, source) {
            return Err(ServiceError::RateLimited { retry_after_s });
        }
        let role = role.trim();
        attempt.role = if role.len() <= 63 && check_slug("role", role).is_ok() {
            role.to_owned()
        } else {
            format!("invalid ({} chars)", role.chars().count())
        };
        let res = self.login_inner(org.map(str::trim), role, jwt.trim(), attempt).await;
        if let Err(e) = &res
            && matches!(
                e,
                ServiceError::JwtRefused(_) | ServiceError::NotFound(_) | ServiceError::Invalid(_)
            )
        {
            self.shared.limits.fail(Kind::Login, source);
        }
        res
    }

    async fn login_inner(
        &self,
        org: Option<&str>,
        role: &str,
        jwt: &str,
        attempt: &mut JwtAttempt,
    ) -> Result<JwtSession> {
        if role.is_empty() {
            return Err(ServiceError::Invalid("role is required".into()));
        }
        if jwt.is_empty() {
            return Err(ServiceError::Invalid("jwt is required (the CI job's ID token)".into()));
        }
        let missing = || ServiceError::NotFound(format!("JWT role {}", shown(role)));
        let (org_row, role_row) = match org.filter(|o| !o.is_empty()) {
            Some(slug) => {
                let org_row = self.tenant_store.org(slug).await?.ok_or_else(missing)?;
                let r = self
                    .store
                    .jwt_roles(org_row.id)
                    .await?
                    .into_iter()
                    .find(|r| r.name == role)
                    .ok_or_else(missing)?;
                (org_row, r)
            }
            None => {
                let mut found = self.store.jwt_roles_named(role).await?;
                if found.len() > 1 {
                    return Err(ServiceError::Invalid(format!(
                        "JWT role {} exists in several organizations; name the organization (--org, the \
                         \"org\" field, or the X-Vault-Namespace header)",
                        shown(role)
                    )));
                }
                let r = found.pop().ok_or_else(missing)?;
                let org_row = self
                    .tenant_store
                    .list_orgs()
                    .await?
                    .into_iter()
                    .find(|o| o.id == r.org_id)
                    .ok_or_else(missing)?;
                (org_row, r)
            }
        };
        attempt.org = Some(org_row.slug.clone());
        let issuer = self
            .store
            .jwt_issuer(org_row.id, role_row.issuer_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("the issuer of JWT role {}", shown(role))))?;
        attempt.issuer = Some(issuer.issuer.clone());
        let claims = self.verify(jwt, &issuer).await?;
        // The signature verified: the issuer vouches for this `sub`.
        attempt.sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .map(|s| s.chars().filter(|c| !c.is_control()).take(200).collect());
        check_claims(&claims, &issuer.issuer, &role_row.audience, now_ms() / 1000)?;
        check_bound(&claims, &parse_bound(&role_row.bound_claims))?;
        let sa = self
            .access_store
            .service_account(org_row.id, role_row.sa_id)
            .await?
            .ok_or_else(|| {
                ServiceError::Unprocessable(
                    "jwt_role_broken",
                    format!(
                        "the service account of JWT role {} no longer exists; an admin must recreate the role",
                        shown(role)
                    ),
                )
            })?;
        let kind = PrincipalKind::ServiceAccount {
            id: sa.id,
            org_id: org_row.id,
        };
        let ttl_s = role_row.max_ttl_s.clamp(1, MAX_TTL_CAP_S as i64);
        let issued = auth::issue_token(
            &*self.identity_store,
            kind,
            &format!("jwt:{}", role_row.name),
            Some(now_ms() + ttl_s * 1000),
            None,
            auth::Lineage::default(),
            false,
        )
        .await?;
        Ok(JwtSession {
            access_token: issued.token,
            token_type: "bearer",
            expires_in: ttl_s,
            accessor: issued.accessor,
            org: org_row.slug,
            role: role_row.name,
            service_account: sa.name,
            kind,
        })
    }

    /// Check the token's header and signature against the issuer's keys;
    /// returns the (signed, not yet checked) claims.
    async fn verify(&self, jwt: &str, issuer: &JwtIssuerRow) -> Result<Value> {
        if jwt.len() > MAX_JWT_BYTES {
            return Err(refused(format!("the JWT is larger than {} KiB", MAX_JWT_BYTES / 1024)));
        }
        if jwt.split('.').count() != 3 {
            return Err(refused(
                "malformed JWT: expected three base64url parts (header.payload.signature)",
            ));
        }
        let header = segment(jwt, 0, "header")?;
        let alg = match header.get("alg") {
            Some(Value::String(a)) => allowed_alg(a)?,
            _ => return Err(refused("the JWT header has no `alg`")),
        };
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(refused("the JWT header's `kid` must be a string")),
        };
        let jwk = self.key_for(issuer, kid).await?;
        let kid_shown = kid.unwrap_or("(none)");
        check_alg_fits_key(alg, &jwk, kid_shown)?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|_| refused(format!("key {} of the issuer is not usable", shown(kid_shown))))?;
        // The signature and alg only: every claim is checked (strictly
        // typed, with precise errors) by `check_claims`.
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<Value>(jwt, &key, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => refused(format!(
                    "the signature does not verify with key {} of issuer {}",
                    shown(kid_shown),
                    shown(&issuer.issuer)
                )),
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    refused(format!("alg {alg:?} does not match key {}", shown(kid_shown)))
                }
                _ => refused("malformed JWT: the payload or signature cannot be decoded"),
            })
    }

    fn slot(&self, id: Uuid) -> Arc<tokio::sync::Mutex<Slot>> {
        match self.cache.lock() {
            Ok(mut c) => c.entry(id).or_default().clone(),
            Err(p) => p.into_inner().entry(id).or_default().clone(),
        }
    }

    /// The key `kid` names (no kid: the only key), from the static set or
    /// the cache; a stale cache or an unknown kid fetches the set again,
    /// an unknown kid at most once per [`REFETCH_MIN`].
    async fn key_for(&self, issuer: &JwtIssuerRow, kid: Option<&str>) -> Result<Jwk> {
        let find = |keys: &[Jwk]| -> Option<Jwk> {
            match kid {
                Some(k) => keys.iter().find(|j| j.common.key_id.as_deref() == Some(k)).cloned(),
                None if keys.len() == 1 => keys.first().cloned(),
                None => None,
            }
        };
        let unknown = |refetched: &str| match kid {
            Some(k) => refused(format!(
                "unknown key id (kid) {} for issuer {}{refetched}",
                shown(k),
                shown(&issuer.issuer)
            )),
            None => refused("the JWT header has no `kid` and the issuer has several keys"),
        };
        if let Some(doc) = &issuer.jwks {
            let doc: Value = serde_json::from_str(doc).map_err(|e| ServiceError::Internal(e.to_string()))?;
            return find(&parse_jwks(&doc)?).ok_or_else(|| unknown(" (static key set)"));
        }
        let slot = self.slot(issuer.id);
        let mut s = slot.lock().await;
        let fresh = s.fetched.is_some_and(|t| t.elapsed() < JWKS_TTL);
        if fresh && let Some(k) = find(&s.keys) {
            return Ok(k);
        }
        let may_fetch = !fresh || s.tried.is_none_or(|t| t.elapsed() >= REFETCH_MIN);
        if !may_fetch {
            return Err(unknown(&format!(
                " (its key set was fetched less than {} s ago)",
                REFETCH_MIN.as_secs()
            )));
        }
        s.tried = Some(Instant::now());
        match self.fetch_keys(issuer).await {
            Ok(keys) => {
                s.keys = keys;
                s.fetched = s.tried;
                s.fetched_at = Some(now_ms());
            }
            // A stale set still serves while the issuer is down.
            Err(e) if !s.keys.is_empty() => {
                tracing::warn!(issuer = %issuer.issuer, error = %e, "jwt auth: key set refresh failed; using the cached set");
            }
            Err(e) => return Err(e),
        }
        find(&s.keys).ok_or_else(|| unknown(" (its key set was just fetched)"))
    }

    /// Fetch the issuer's keys: discovery → `jwks_uri` → JWKS, or the JWKS URL.
    async fn fetch_keys(&self, issuer: &JwtIssuerRow) -> Result<Vec<Jwk>> {
        let jwks_url = match (&issuer.jwks_url, &issuer.discovery_url) {
            (Some(u), _) => u.clone(),
            (None, Some(d)) => {
                let doc = self.get_json(d, "discovery document").await?;
                match doc.get("issuer").and_then(Value::as_str) {
                    Some(i) if i == issuer.issuer => {}
                    other => {
                        return Err(unavailable(format!(
                            "the discovery document at {d} names issuer {}, not {}",
                            shown(other.unwrap_or("(none)")),
                            shown(&issuer.issuer)
                        )));
                    }
                }
                let uri = doc
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| unavailable(format!("the discovery document at {d} has no jwks_uri")))?;
                check_url("jwks_uri", uri).map_err(|e| unavailable(format!("the discovery document at {d}: {e}")))?
            }
            (None, None) => return Err(ServiceError::Internal("JWT issuer without a key source".into())),
        };
        let doc = self.get_json(&jwks_url, "JWKS").await?;
        parse_jwks(&doc).map_err(|e| unavailable(format!("the JWKS at {jwks_url}: {e}")))
    }

    /// GET a JSON document of at most [`MAX_DOC_BYTES`], 5 s timeout.
    async fn get_json(&self, url: &str, what: &str) -> Result<Value> {
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| unavailable("this server has no HTTP client".into()))?;
        self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("coffer_jwt_key_fetches_total").increment(1);
        let fail = |why: String| unavailable(format!("cannot fetch the {what} at {url}: {why}"));
        let mut resp = http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                fail(if e.is_timeout() {
                    format!("timed out after {} s", FETCH_TIMEOUT.as_secs())
                } else if e.is_connect() {
                    "cannot connect".to_owned()
                } else {
                    "request failed".to_owned()
                })
            })?;
        if !resp.status().is_success() {
            return Err(fail(format!("it answered {}", resp.status())));
        }
        if resp.content_length().is_some_and(|n| n > MAX_DOC_BYTES as u64) {
            return Err(fail(format!("larger than {} KiB", MAX_DOC_BYTES / 1024)));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|_| fail("the body was cut".to_owned()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOC_BYTES {
                return Err(fail(format!("larger than {} KiB", MAX_DOC_BYTES / 1024)));
            }
        }
        serde_json::from_slice(&body).map_err(|_| fail("not JSON".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob("refs/heads/main", "refs/heads/main"));
        assert!(!glob("refs/heads/main", "refs/heads/main2"));
        assert!(glob("refs/tags/v*", "refs/tags/v1.2"));
        assert!(!glob("refs/tags/v*", "refs/heads/v1"));
        assert!(glob("*", ""));
        assert!(glob("acme/*-api", "acme/x-api"));
        assert!(!glob("acme/*-api", "acme/x-apix"));
        assert!(glob("a*b*c", "abc"));
        assert!(!glob("a*b*c", "acb"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn algorithms() {
        assert!(allowed_alg("RS256").is_ok());
        assert!(allowed_alg("ES384").is_ok());
        for bad in ["none", "HS256", "hs512", "PS256", "EdDSA", "ES512"] {
            assert!(matches!(allowed_alg(bad), Err(ServiceError::JwtRefused(_))), "{bad}");
        }
    }

    #[test]
    fn claims_are_strict() {
        let now = 1_800_000_000;
        let ok = json!({"iss": "https://i", "aud": ["x", "coffer"], "exp": now + 300, "iat": now, "sub": "s"});
        assert_eq!(check_claims(&ok, "https://i", "coffer", now).expect("valid"), "s");
        let with = |k: &str, v: Value| {
            let mut c = ok.clone();
            c[k] = v;
            check_claims(&c, "https://i", "coffer", now).expect_err(k).to_string()
        };
        assert!(with("aud", json!("other")).contains("wrong audience"));
        assert!(with("aud", json!(7)).contains("`aud`"));
        assert!(with("iss", json!("https://j")).contains("wrong issuer"));
        assert!(with("exp", json!(now - 61)).contains("expired"));
        assert!(with("exp", json!("never")).contains("`exp` must be a number"));
        assert!(with("nbf", json!(now + 61)).contains("not valid before"));
        assert!(with("nbf", json!("later")).contains("`nbf` must be a number"));
        assert!(with("iat", json!(now + 3600)).contains("future"));
        assert!(with("sub", json!("")).contains("`sub`"));
        // within the leeway
        let mut c = ok.clone();
        c["exp"] = json!(now - 59);
        c["nbf"] = json!(now + 59);
        assert!(check_claims(&c, "https://i", "coffer", now).is_ok());
    }

    #[test]
    fn bound_claims() {
        let claims = json!({"repository": "acme/api", "ref": "refs/heads/dev", "run": 7, "x": {"y": 1}});
        let b = |pairs: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect()
        };
        assert!(check_bound(&claims, &b(&[("repository", &["acme/*"]), ("run", &["7"])])).is_ok());
        let e = check_bound(&claims, &b(&[("ref", &["refs/heads/main"])])).expect_err("mismatch");
        assert!(e.to_string().contains("claim `ref` mismatched"), "{e}");
        assert!(check_bound(&claims, &b(&[("environment", &["prod"])])).is_err());
        assert!(check_bound(&claims, &b(&[("x", &["*"])])).is_err());
    }

    #[test]
    fn urls() {
        assert!(check_url("u", "https://token.actions.githubusercontent.com").is_ok());
        assert!(check_url("u", "http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("u", "http://[::1]:8080/x").is_ok());
        assert!(check_url("u", "http://issuer.example/x").is_err());
        assert!(check_url("u", "https://a:b@issuer.example/").is_err());
        assert!(check_url("u", "file:///etc/passwd").is_err());
    }

    #[test]
    fn jwks_skips_unusable_keys() {
        let doc = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"},
            {"kty": "weird"}
        ]});
        assert!(parse_jwks(&doc).expect("parsed").is_empty());
        assert!(parse_jwks(&json!({"nokeys": []})).is_err());
    }
}
