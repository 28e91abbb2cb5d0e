//! Single sign-on for people (issue 20, docs/sso.md): per organization an
//! OpenID Connect provider; the authorization code flow with PKCE (S256),
//! `state` and `nonce` kept server-side (single use, ten minutes); the ID
//! token validated with the `openidconnect` crate (signature against the
//! provider's JWKS, issuer, audience, expiry, nonce); the person linked —
//! or created just in time — by *verified* email; the groups claim mapped
//! onto the organization's coffer groups at every login.
//!
//! A login made here is an ordinary login session (`auth.rs`) whose family
//! id is `sso:<org id>:<random>`: the tokens of that session (refreshed,
//! derived, or a device login it approved) carry it, and only they satisfy
//! the organization's "SSO required" policy ([`AccessService::sso_gate`]).
//!
//! Invariants: the client secret is stored only encrypted under the org
//! KEK and is never returned; no code, token, nonce or verifier reaches a
//! log, an error or an audit record; a state is spent by its first
//! callback, whatever the outcome.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{AdditionalClaims, ClaimsVerificationError, ClientId, IdToken, IdTokenVerifier, IssuerUrl, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::auth::{Session, hash_password};
use super::{AccessService, IdentityService, PrincipalKind, Result, ServiceError, Unsealed, now_ms, random_bytes};
use crate::storage::access::AccessStore;
use crate::storage::keystore::KeyStore;
use crate::storage::sso::SsoStore;
use crate::storage::sso::{SsoProviderRow, SsoStateRow};
use crate::storage::{GroupRow, UserRow};
use crate::storage::{IdentityStore, TenantStore};

/// How long a started sign-in may take.
const STATE_TTL_MS: i64 = 10 * 60_000;
/// How long a provider's discovery document (and its JWKS) is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);
/// Time limit of every request to a provider.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from a provider.
const MAX_BODY: usize = 1 << 20;
/// The family-id prefix of an SSO login session.
const FAMILY_PREFIX: &str = "sso:";
/// Scopes asked when none are configured.
const DEFAULT_SCOPES: &str = "openid email profile";

/// The ID token's claims beyond the standard ones (the groups claim, whose
/// name is configured per organization).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ExtraClaims {
    #[serde(flatten)]
    rest: HashMap<String, serde_json::Value>,
}

impl AdditionalClaims for ExtraClaims {}

type SsoIdToken = IdToken<ExtraClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

/// Signature algorithms an ID token may use: asymmetric only (an HMAC
/// keyed by the client secret is refused).
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 8] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
];

/// An organization's provider as an administrator sets it.
#[derive(Default, Deserialize)]
#[serde(default)]
pub struct SsoConfigInput {
    /// the name on the "Sign in with …" button (default: the issuer's host)
    pub display_name: Option<String>,
    /// issuer URL (https; http only on a loopback address)
    pub issuer: String,
    /// OAuth client id
    pub client_id: String,
    /// OAuth client secret; omitted on an update: the stored one is kept
    pub client_secret: Option<Zeroizing<String>>,
    /// scopes (default `openid email profile`; `openid` is always added)
    pub scopes: Vec<String>,
    /// email domains a person may have (empty: any)
    pub allowed_domains: Vec<String>,
    /// the ID token claim listing the person's groups (empty: no group sync)
    pub groups_claim: String,
    /// refuse members' password sessions on this organization
    pub sso_required: bool,
    /// emails whose password sessions stay accepted when SSO is required
    pub break_glass: Vec<String>,
}

impl std::fmt::Debug for SsoConfigInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoConfigInput")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// An organization's provider as it is shown (never the client secret).
#[derive(Debug, Serialize)]
pub struct SsoConfigView {
    /// the name on the "Sign in with …" button
    pub display_name: String,
    /// issuer URL
    pub issuer: String,
    /// OAuth client id
    pub client_id: String,
    /// a client secret is stored (it is never returned)
    pub client_secret_set: bool,
    /// scopes asked
    pub scopes: Vec<String>,
    /// allowed email domains (empty: any)
    pub allowed_domains: Vec<String>,
    /// the groups claim ('' = no group sync)
    pub groups_claim: String,
    /// members' password sessions are refused
    pub sso_required: bool,
    /// emails whose password sessions stay accepted
    pub break_glass: Vec<String>,
    /// who changed it last
    pub updated_by: String,
}

/// What started a sign-in, so its callback can be tied to the same client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsoPurpose {
    /// the dashboard (redirect URI on this server, bound to a browser cookie)
    Ui,
    /// the CLI or a Vault client (loopback redirect URI, bound to a client nonce)
    Api,
}

impl SsoPurpose {
    fn as_str(self) -> &'static str {
        match self {
            SsoPurpose::Ui => "ui",
            SsoPurpose::Api => "api",
        }
    }
}

/// A finished SSO login.
#[derive(Debug)]
pub struct SsoLogin {
    /// the new login session
    pub session: Session,
    /// the person's email
    pub email: String,
    /// the person's coffer user id
    pub user_id: Uuid,
    /// the organization signed in to
    pub org: String,
    /// a coffer account was created for the person at this login
    pub created: bool,
    /// the person's coffer groups in the organization after the sync
    pub groups: Vec<String>,
}

/// The organization policy the access checks read.
#[derive(Debug)]
pub(crate) struct SsoPolicy {
    required: bool,
    break_glass: Vec<String>,
}

/// What an ID token says about the person, once verified.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct VerifiedPerson {
    pub(crate) email: String,
    pub(crate) groups: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HttpFailure(String);

/// The stores single sign-on touches.
#[derive(Clone)]
pub(super) struct SsoStores {
    /// providers and pending logins
    pub(super) sso: Arc<dyn SsoStore>,
    /// organizations by slug
    pub(super) tenants: Arc<dyn TenantStore>,
    /// the active KEK version (the client secret is sealed under it)
    pub(super) keys: Arc<dyn KeyStore>,
    /// people found or created at login
    pub(super) identity: Arc<dyn IdentityStore>,
    /// memberships and groups re-synced at login
    pub(super) access: Arc<dyn AccessStore>,
}

impl std::fmt::Debug for SsoStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoStores").finish_non_exhaustive()
    }
}

/// Single sign-on: provider settings, the start and the callback of a login.
#[derive(Debug, Clone)]
pub struct SsoService {
    pub(super) shared: Arc<super::Shared>,
    pub(super) store: SsoStores,
    pub(super) access: AccessService,
    pub(super) identity: IdentityService,
    http: Option<reqwest::Client>,
    discovery: Arc<Mutex<DiscoveryCache>>,
}

/// Discovery documents by issuer, with when they were fetched.
type DiscoveryCache = HashMap<String, (Instant, Arc<CoreProviderMetadata>)>;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

fn fail(msg: impl Into<String>) -> ServiceError {
    ServiceError::SsoFailed(msg.into())
}

/// AAD of an organization's encrypted client secret.
fn secret_aad(org_id: Uuid, kek_version: i64) -> Vec<u8> {
    let mut aad = b"sso-client-secret".to_vec();
    aad.extend_from_slice(org_id.as_bytes());
    aad.extend_from_slice(&kek_version.to_be_bytes());
    aad
}

/// Whether `host` is a loopback name or address.
fn loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An issuer URL: https, or http on a loopback address (a local test IdP).
fn check_issuer(issuer: &str) -> Result<IssuerUrl> {
    let issuer = issuer.trim().trim_end_matches('/');
    let url = IssuerUrl::new(issuer.to_owned())
        .map_err(|_| ServiceError::Invalid(format!("issuer {issuer:?} is not a URL")))?;
    let parsed = url.url();
    let host = parsed.host_str().unwrap_or_default();
    match parsed.scheme() {
        "https" => Ok(url),
        "http" if loopback(host) => Ok(url),
        _ => Err(ServiceError::Invalid(
            "issuer must be an https URL (http only on a loopback address)".into(),
        )),
    }
}

/// A redirect URI a CLI or Vault client may ask for: http on a loopback
/// address (RFC 8252 section 7.3), any port.
fn check_loopback_redirect(uri: &str) -> Result<()> {
    let bad = || {
        ServiceError::Invalid(format!(
            "redirect_uri {uri:?} must be an http URL on a loopback address, like http://127.0.0.1:PORT/oidc/callback"
        ))
    };
    let url = openidconnect::url::Url::parse(uri).map_err(|_| bad())?;
    if url.scheme() != "http" || !url.host_str().is_some_and(loopback) || url.fragment().is_some() {
        return Err(bad());
    }
    Ok(())
}

/// Split and trim a comma- or space-separated list, dropping blanks.
fn list(s: &str) -> Vec<String> {
    s.split([',', ' '])
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn view(row: &SsoProviderRow) -> SsoConfigView {
    SsoConfigView {
        display_name: row.display_name.clone(),
        issuer: row.issuer.clone(),
        client_id: row.client_id.clone(),
        client_secret_set: !row.client_secret.is_empty(),
        scopes: list(&row.scopes),
        allowed_domains: list(&row.allowed_domains),
        groups_claim: row.groups_claim.clone(),
        sso_required: row.sso_required,
        break_glass: list(&row.break_glass),
        updated_by: row.updated_by.clone(),
    }
}

/// The groups an ID token lists under `claim`: an array of strings, or
/// one string; anything else is an error naming the claim.
fn groups_of(extra: &ExtraClaims, claim: &str) -> std::result::Result<Vec<String>, String> {
    if claim.is_empty() {
        return Ok(Vec::new());
    }
    match extra.rest.get(claim) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("the {claim:?} claim of the ID token must list strings"))
            })
            .collect(),
        Some(_) => Err(format!(
            "the {claim:?} claim of the ID token must be a list of group names"
        )),
    }
}

/// Verify an ID token (signature against `jwks`, issuer, audience = the
/// client id, expiry, `nonce`) and read the person from it: a verified
/// email (`email_verified` must be true) and the groups claim.
pub(crate) fn verify_id_token(
    id_token: &str,
    jwks: &CoreJsonWebKeySet,
    issuer: &IssuerUrl,
    client_id: &str,
    nonce: &str,
    groups_claim: &str,
) -> std::result::Result<VerifiedPerson, String> {
    let token: SsoIdToken = id_token
        .parse()
        .map_err(|_| "the ID token is not a well-formed JWT".to_owned())?;
    // A confidential client, but with asymmetric algorithms only: the
    // client secret is never a verification key.
    let verifier: IdTokenVerifier<'_, CoreJsonWebKey> =
        IdTokenVerifier::new_public_client(ClientId::new(client_id.to_owned()), issuer.clone(), jwks.clone())
            .set_allowed_algs(ALLOWED_ALGS);
    let claims = token
        .claims(&verifier, &Nonce::new(nonce.to_owned()))
        .map_err(|e| match e {
            ClaimsVerificationError::Expired(_) => "the ID token has expired".to_owned(),
            ClaimsVerificationError::InvalidAudience(_) => "the ID token was issued to another client".to_owned(),
            ClaimsVerificationError::InvalidIssuer(_) => "the ID token was issued by another issuer".to_owned(),
            ClaimsVerificationError::InvalidNonce(_) => "the ID token's nonce does not match this sign-in".to_owned(),
            ClaimsVerificationError::SignatureVerification(_) => {
                "the ID token's signature does not verify against the provider's keys".to_owned()
            }
            other => format!("the ID token is invalid: {other}"),
        })?;
    let email = claims
        .email()
        .map(|e| e.as_str().trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .ok_or_else(|| "the ID token has no email claim: ask for the email scope".to_owned())?;
    if claims.email_verified() != Some(true) {
        return Err(format!(
            "the identity provider does not say that {email} is verified (email_verified is not true); \
             coffer signs people in by verified email only"
        ));
    }
    let groups = groups_of(claims.additional_claims(), groups_claim)?;
    Ok(VerifiedPerson { email, groups })
}

impl SsoService {
    pub(super) fn new(
        shared: Arc<super::Shared>,
        store: SsoStores,
        access: AccessService,
        identity: IdentityService,
    ) -> SsoService {
        // No redirects: a provider's endpoints answer directly (and a
        // redirect could point the server at an internal address).
        let http = match reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("coffer-sso/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "sso: no HTTP client; single sign-on is unavailable");
                None
            }
        };
        SsoService {
            shared,
            store,
            access,
            identity,
            http,
            discovery: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// One HTTP exchange with a provider, as openidconnect's client trait
    /// wants it, over our reqwest.
    async fn send(
        client: reqwest::Client,
        req: openidconnect::HttpRequest,
    ) -> std::result::Result<openidconnect::HttpResponse, HttpFailure> {
        let req = reqwest::Request::try_from(req).map_err(|e| HttpFailure(format!("bad request: {e}")))?;
        let url = req.url().clone();
        let res = client
            .execute(req)
            .await
            .map_err(|e| HttpFailure(format!("{url}: {}", e.without_url())))?;
        let status = res.status();
        let headers = res.headers().clone();
        let body = res
            .bytes()
            .await
            .map_err(|e| HttpFailure(format!("{url}: {}", e.without_url())))?;
        if body.len() > MAX_BODY {
            return Err(HttpFailure(format!("{url}: answer larger than {MAX_BODY} bytes")));
        }
        let mut out = openidconnect::http::Response::new(body.to_vec());
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }

    fn client(&self) -> Result<reqwest::Client> {
        self.http
            .clone()
            .ok_or_else(|| ServiceError::Internal("no HTTP client for single sign-on".into()))
    }

    /// The provider's discovery document and keys (cached for five minutes;
    /// `fresh` refetches, for a key rotation).
    async fn metadata(&self, issuer: &IssuerUrl, fresh: bool) -> Result<Arc<CoreProviderMetadata>> {
        let key = issuer.as_str().to_owned();
        if !fresh
            && let Ok(map) = self.discovery.lock()
            && let Some((at, md)) = map.get(&key)
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(md.clone());
        }
        let client = self.client()?;
        let http = move |req: openidconnect::HttpRequest| Self::send(client.clone(), req);
        let md = CoreProviderMetadata::discover_async(issuer.clone(), &http)
            .await
            .map_err(|e| fail(format!("discovery of the identity provider {issuer} failed: {e}")))?;
        let md = Arc::new(md);
        if let Ok(mut map) = self.discovery.lock() {
            map.insert(key, (Instant::now(), md.clone()));
        }
        Ok(md)
    }

    /// `GET /api/v1/orgs/{org}/sso` (org admins).
    pub async fn config(&self, who: &Unsealed, org: &str) -> Result<SsoConfigView> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let row = self
            .store
            .sso
            .sso_provider(org_row.id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("single sign-on of organization {org}")))?;
        Ok(view(&row))
    }

    /// `PUT /api/v1/orgs/{org}/sso` (org admins): check the issuer's
    /// discovery, encrypt the client secret under the org KEK, store.
    pub async fn set_config(&self, who: &Unsealed, org: &str, input: SsoConfigInput) -> Result<SsoConfigView> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let issuer = check_issuer(&input.issuer)?;
        let client_id = input.client_id.trim();
        if client_id.is_empty() || client_id.len() > 255 {
            return Err(ServiceError::Invalid(
                "client_id is required (at most 255 characters)".into(),
            ));
        }
        let mut scopes: Vec<String> = input.scopes.iter().flat_map(|s| list(s)).collect();
        if scopes.is_empty() {
            scopes = list(DEFAULT_SCOPES);
        }
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        if let Some(bad) = scopes
            .iter()
            .find(|s| !s.chars().all(|c| c.is_ascii_graphic() && c != '"'))
        {
            return Err(ServiceError::Invalid(format!("scope {bad:?} is not a valid scope")));
        }
        let domains: Vec<String> = input
            .allowed_domains
            .iter()
            .flat_map(|s| list(s))
            .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
            .collect();
        if let Some(bad) = domains
            .iter()
            .find(|d| !d.contains('.') || !d.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        {
            return Err(ServiceError::Invalid(format!(
                "allowed_domains: {bad:?} is not a domain"
            )));
        }
        let groups_claim = input.groups_claim.trim().to_owned();
        if groups_claim.len() > 100 || groups_claim.chars().any(|c| c.is_control()) {
            return Err(ServiceError::Invalid("groups_claim must be a claim name".into()));
        }
        let break_glass: Vec<String> = input
            .break_glass
            .iter()
            .flat_map(|s| list(s))
            .map(|e| e.to_ascii_lowercase())
            .collect();
        if let Some(bad) = break_glass.iter().find(|e| !e.contains('@')) {
            return Err(ServiceError::Invalid(format!(
                "break_glass: {bad:?} is not an email address"
            )));
        }
        let display_name = input
            .display_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| issuer.url().host_str().unwrap_or("SSO").to_owned());
        if display_name.chars().count() > 60 {
            return Err(ServiceError::Invalid("display_name: at most 60 characters".into()));
        }
        let existing = self.store.sso.sso_provider(org_row.id).await?;
        let (client_secret, kek_version) = match (&input.client_secret, &existing) {
            (Some(secret), _) if !secret.trim().is_empty() => {
                let version = self
                    .store
                    .keys
                    .active_kek(org_row.id)
                    .await?
                    .ok_or_else(|| ServiceError::Internal("the organization has no active KEK".into()))?;
                let kek = self.access.shared_kek(who.keyring(), org_row.id, version).await?;
                let blob = crate::crypto::aead::seal(&kek, &secret_aad(org_row.id, version), secret.trim().as_bytes());
                (blob, version)
            }
            (_, Some(old)) => (old.client_secret.clone(), old.kek_version),
            (_, None) => {
                return Err(ServiceError::Invalid(
                    "client_secret is required when single sign-on is first configured".into(),
                ));
            }
        };
        // Fail now, with the provider's own words, rather than at the
        // first person's sign-in.
        self.metadata(&issuer, true).await.map_err(|e| match e {
            ServiceError::SsoFailed(m) => ServiceError::Invalid(m),
            other => other,
        })?;
        let row = SsoProviderRow {
            org_id: org_row.id,
            display_name,
            issuer: issuer.as_str().to_owned(),
            client_id: client_id.to_owned(),
            client_secret,
            kek_version,
            scopes: scopes.join(" "),
            allowed_domains: domains.join(","),
            groups_claim,
            sso_required: input.sso_required,
            break_glass: break_glass.join(","),
            updated_by: who.name.clone(),
            updated_at: now_ms(),
        };
        self.store.sso.put_sso_provider(&row).await?;
        self.shared.principals_changed();
        Ok(view(&row))
    }

    /// Move the organization's client secret, if sealed under an older KEK
    /// version, to the `active` one (`KeyService::rewrap_batch`): same blob
    /// format and AAD scheme, the AAD naming the new version. 1 if moved.
    pub(super) async fn rewrap_secret(
        &self,
        keyring: &crate::keys::Keyring,
        org_id: Uuid,
        active: i64,
    ) -> Result<usize> {
        let Some(p) = self.store.sso.sso_provider(org_id).await? else {
            return Ok(0);
        };
        if p.kek_version >= active {
            return Ok(0);
        }
        let old = self.access.shared_kek(keyring, org_id, p.kek_version).await?;
        let new = self.access.shared_kek(keyring, org_id, active).await?;
        let sealed = crate::keys::reseal(
            &old,
            &secret_aad(org_id, p.kek_version),
            &new,
            &secret_aad(org_id, active),
            &p.client_secret,
        )
        .map_err(|_| ServiceError::Internal("the SSO client secret does not decrypt; set it again".into()))?;
        let moved = self
            .store
            .sso
            .reseal_sso_secret(org_id, &sealed, active, p.kek_version)
            .await?;
        Ok(usize::from(moved))
    }

    /// `DELETE /api/v1/orgs/{org}/sso` (org admins).
    pub async fn delete_config(&self, who: &Unsealed, org: &str) -> Result<()> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        if !self.store.sso.delete_sso_provider(org_row.id).await? {
            return Err(ServiceError::NotFound(format!("single sign-on of organization {org}")));
        }
        self.shared.principals_changed();
        Ok(())
    }

    /// The name on an organization's "Sign in with …" button (None: the
    /// organization does not exist or has no single sign-on).
    pub async fn display_name(&self, org: &str) -> Result<Option<String>> {
        self.shared.require_unsealed()?;
        let Some(org_row) = self.store.tenants.org(org).await? else {
            return Ok(None);
        };
        Ok(self.store.sso.sso_provider(org_row.id).await?.map(|p| p.display_name))
    }

    /// Start a sign-in: the provider's authorization URL (code flow, PKCE
    /// S256, fresh state and nonce kept here for ten minutes). `binding`
    /// is what the callback must present again: the client's nonce, or
    /// the dashboard's browser cookie.
    pub async fn begin(&self, org: &str, redirect_uri: &str, binding: &str, purpose: SsoPurpose) -> Result<String> {
        self.shared.require_unsealed()?;
        if purpose == SsoPurpose::Api {
            check_loopback_redirect(redirect_uri)?;
        }
        if binding.len() < 16 {
            return Err(ServiceError::Invalid(
                "client_nonce is required (at least 16 characters): it ties the callback to this client".into(),
            ));
        }
        let missing = || ServiceError::NotFound(format!("single sign-on of organization {org:?}"));
        let org_row = self.store.tenants.org(org).await?.ok_or_else(missing)?;
        let provider = self.store.sso.sso_provider(org_row.id).await?.ok_or_else(missing)?;
        let issuer = check_issuer(&provider.issuer)?;
        let md = self.metadata(&issuer, false).await?;
        let state = b64(&random_bytes::<32>()?);
        let nonce = b64(&random_bytes::<32>()?);
        let verifier = Zeroizing::new(b64(&random_bytes::<32>()?));
        let challenge = b64(&Sha256::digest(verifier.as_bytes()));
        let now = now_ms();
        self.store
            .sso
            .insert_sso_state(&SsoStateRow {
                state_hash: sha256(&state),
                org_id: org_row.id,
                nonce: nonce.clone(),
                pkce_verifier: verifier.to_string(),
                redirect_uri: redirect_uri.to_owned(),
                binding_hash: sha256(binding),
                purpose: purpose.as_str().to_owned(),
                expires_at: now + STATE_TTL_MS,
                created_at: now,
            })
            .await?;
        let mut url = md.authorization_endpoint().url().clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &provider.scopes)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.to_string())
    }

    /// The callback: spend the state, check the binding, exchange the code
    /// (with the PKCE verifier), verify the ID token, link or create the
    /// person, sync the groups, open an SSO login session.
    pub async fn finish(&self, state: &str, code: &str, binding: &str, purpose: SsoPurpose) -> Result<SsoLogin> {
        let keyring = self.shared.keyring()?;
        if state.is_empty() || code.is_empty() {
            return Err(fail("the callback needs both state and code"));
        }
        let Some(pending) = self.store.sso.take_sso_state(&sha256(state)).await? else {
            return Err(fail(
                "unknown or already used state: this sign-in was not started here, or was finished already; start again",
            ));
        };
        if pending.expires_at <= now_ms() {
            return Err(fail("this sign-in expired (10 minutes); start again"));
        }
        let bound = bool::from(sha256(binding).as_slice().ct_eq(pending.binding_hash.as_slice()));
        if !bound || pending.purpose != purpose.as_str() {
            return Err(fail(
                "this callback does not come from the client that started the sign-in (client nonce or browser cookie differs)",
            ));
        }
        let provider = self
            .store
            .sso
            .sso_provider(pending.org_id)
            .await?
            .ok_or_else(|| fail("single sign-on was removed from this organization"))?;
        let org_slug = self
            .store
            .tenants
            .list_orgs()
            .await?
            .into_iter()
            .find(|o| o.id == pending.org_id)
            .map(|o| o.slug)
            .ok_or_else(|| fail("the organization no longer exists"))?;
        let kek = self
            .access
            .shared_kek(&keyring, pending.org_id, provider.kek_version)
            .await?;
        let secret = crate::crypto::aead::open(
            &kek,
            &secret_aad(pending.org_id, provider.kek_version),
            &provider.client_secret,
        )
        .map_err(|_| ServiceError::Internal("the SSO client secret does not decrypt; set it again".into()))?;
        let secret = Zeroizing::new(
            String::from_utf8(secret.to_vec())
                .map_err(|_| ServiceError::Internal("SSO client secret is not text".into()))?,
        );
        let issuer = check_issuer(&provider.issuer)?;
        let md = self.metadata(&issuer, false).await?;
        let token_url = md
            .token_endpoint()
            .ok_or_else(|| fail("the identity provider's discovery document names no token endpoint"))?
            .url()
            .clone();
        let id_token = self
            .exchange(token_url, &provider.client_id, &secret, code, &pending)
            .await?;
        let verify = |md: &CoreProviderMetadata| {
            verify_id_token(
                &id_token,
                md.jwks(),
                &issuer,
                &provider.client_id,
                &pending.nonce,
                &provider.groups_claim,
            )
        };
        let person = match verify(&md) {
            Ok(p) => p,
            // A signing key the cached JWKS does not have yet: fetch once more.
            Err(m) if m.contains("signature") => verify(&*self.metadata(&issuer, true).await?).map_err(fail)?,
            Err(m) => return Err(fail(m)),
        };
        let domains = list(&provider.allowed_domains);
        let domain = person.email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        if !domains.is_empty() && !domains.iter().any(|d| d == domain) {
            return Err(fail(format!(
                "{} is not in a domain this organization accepts ({})",
                person.email,
                domains.join(", ")
            )));
        }
        let (user, created) = self.link_person(&person.email).await?;
        if self.store.access.membership(pending.org_id, user.id).await?.is_none() {
            self.store
                .access
                .set_membership(pending.org_id, user.id, "member", now_ms())
                .await?;
        }
        let groups = self
            .sync_groups(pending.org_id, user.id, &provider.groups_claim, &person.groups)
            .await?;
        self.shared.principals_changed();
        let family = format!("{FAMILY_PREFIX}{}:{}", pending.org_id, Uuid::new_v4().simple());
        let session = self.identity.new_session(&user, &family, now_ms()).await?;
        tracing::info!(org = %org_slug, user = %user.id, created, groups = groups.len(), "sso login");
        Ok(SsoLogin {
            session,
            user_id: user.id,
            email: user.email,
            org: org_slug,
            created,
            groups,
        })
    }

    /// The code for tokens at the provider's token endpoint
    /// (`client_secret_basic`, the PKCE verifier); the ID token.
    async fn exchange(
        &self,
        token_url: openidconnect::url::Url,
        client_id: &str,
        secret: &str,
        code: &str,
        pending: &SsoStateRow,
    ) -> Result<Zeroizing<String>> {
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: Option<Zeroizing<String>>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let form = |k: &str| openidconnect::url::form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>();
        let body = serde_urlencoded::to_string([
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", pending.redirect_uri.as_str()),
            ("code_verifier", pending.pkce_verifier.as_str()),
        ])
        .map(Zeroizing::new)
        .map_err(|_| ServiceError::Internal("token request does not encode".into()))?;
        let res = self
            .client()?
            .post(token_url.clone())
            .basic_auth(form(client_id), Some(form(secret)))
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                fail(format!(
                    "the identity provider's token endpoint failed: {}",
                    e.without_url()
                ))
            })?;
        let status = res.status();
        let body = res.bytes().await.map_err(|e| {
            fail(format!(
                "the identity provider's token endpoint failed: {}",
                e.without_url()
            ))
        })?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            fail(format!(
                "the identity provider's token endpoint answered {status} without JSON"
            ))
        })?;
        if let Some(err) = answer.error {
            let clean = |s: &str| s.chars().filter(|c| !c.is_control()).take(200).collect::<String>();
            return Err(fail(format!(
                "the identity provider refused the code: {} ({})",
                clean(&err),
                clean(answer.error_description.as_deref().unwrap_or(""))
            )));
        }
        answer.id_token.filter(|_| status.is_success()).ok_or_else(|| {
            fail(format!(
                "the identity provider's token endpoint answered {status} without an ID token"
            ))
        })
    }

    /// The coffer user of a verified email: the existing account (linked),
    /// or a new one without a usable password (created just in time).
    async fn link_person(&self, email: &str) -> Result<(UserRow, bool)> {
        if let Some(user) = self.store.identity.user_by_email(email).await? {
            if user.disabled {
                return Err(ServiceError::AccountDisabled);
            }
            return Ok((user, false));
        }
        // A random password nobody knows: the account signs in by SSO
        // (an administrator may set a password later).
        let random = Zeroizing::new(b64(&random_bytes::<32>()?));
        let user = UserRow {
            id: Uuid::new_v4(),
            email: email.to_owned(),
            password_hash: hash_password(random).await?,
            totp_secret: None,
            totp_enabled: false,
            totp_last_step: 0,
            failed_logins: 0,
            locked_until: 0,
            created_at: now_ms(),
            disabled: false,
        };
        match self.store.identity.create_user(&user).await {
            Ok(()) => Ok((user, true)),
            // Two first logins raced: the other one created it.
            Err(crate::storage::StorageError::Conflict(_)) => self
                .store
                .identity
                .user_by_email(email)
                .await?
                .map(|u| (u, false))
                .ok_or_else(|| ServiceError::Internal("user vanished during its first login".into())),
            Err(e) => Err(e.into()),
        }
    }

    /// Make the person's groups in the organization those of the claim
    /// (only groups that exist in coffer; names compared exactly). Without
    /// a groups claim configured, memberships are left alone.
    async fn sync_groups(&self, org_id: Uuid, user_id: Uuid, claim: &str, wanted: &[String]) -> Result<Vec<String>> {
        let groups: Vec<GroupRow> = self
            .store
            .access
            .groups(org_id)
            .await?
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        let current = self.store.access.user_groups(org_id, user_id).await?;
        if claim.is_empty() {
            return Ok(groups
                .into_iter()
                .filter(|g| current.contains(&g.id))
                .map(|g| g.name)
                .collect());
        }
        let mut now_in = Vec::new();
        for g in groups {
            let want = wanted.contains(&g.name);
            let is = current.contains(&g.id);
            if want && !is {
                self.store.access.add_group_member(org_id, g.id, user_id).await?;
            } else if !want && is {
                self.store.access.remove_group_member(org_id, g.id, user_id).await?;
            }
            if want {
                now_in.push(g.name);
            }
        }
        Ok(now_in)
    }
}

impl SsoService {
    /// An SSO login as Vault's `auth` block shows it.
    pub fn vault_login(&self, login: SsoLogin) -> super::vault::VaultLogin {
        let kind = PrincipalKind::User(login.user_id);
        super::vault::VaultLogin {
            token: login.session.access_token,
            accessor: login.session.accessor,
            policies: super::vault::policies(kind, false),
            lease_duration: login.session.expires_in,
            metadata: [
                ("coffer_kind".to_owned(), kind.as_str().to_owned()),
                ("coffer_name".to_owned(), login.email),
                ("org".to_owned(), login.org),
            ]
            .into(),
            orphan: true,
        }
    }
}

impl AccessService {
    /// The organization's SSO policy, cached like the other access rows.
    async fn sso_policy(&self, org_id: Uuid) -> Result<Option<Arc<SsoPolicy>>> {
        if let Some(p) = self.shared.cache.sso.get(&org_id) {
            return Ok(p);
        }
        let policy = self.shared.store.sso_provider(org_id).await?.map(|p| {
            Arc::new(SsoPolicy {
                required: p.sso_required,
                break_glass: list(&p.break_glass),
            })
        });
        self.shared.cache.sso.put(org_id, policy.clone());
        Ok(policy)
    }

    /// "SSO required": a user's token is accepted on the organization only
    /// when its login session is an SSO login to this organization (its
    /// family id is `sso:<org id>:…`), or the user is one of the policy's
    /// break-glass emails. Root and service accounts are not concerned.
    pub(crate) async fn sso_gate(&self, who: &Unsealed, org_id: Uuid) -> Result<()> {
        let PrincipalKind::User(_) = who.kind else {
            return Ok(());
        };
        let Some(policy) = self.sso_policy(org_id).await? else {
            return Ok(());
        };
        if !policy.required {
            return Ok(());
        }
        let prefix = format!("{FAMILY_PREFIX}{org_id}:");
        if who.family_id.as_deref().is_some_and(|f| f.starts_with(&prefix)) {
            return Ok(());
        }
        if policy.break_glass.iter().any(|e| *e == who.name) {
            tracing::warn!(user = %who.name, org = %org_id, "break-glass password session used on an SSO-required organization");
            return Ok(());
        }
        Err(ServiceError::SsoRequired)
    }

    /// An organization's KEK `version`, from the keyring's cache or
    /// unwrapped now (for the SSO client secret).
    pub(crate) async fn shared_kek(
        &self,
        keyring: &crate::keys::Keyring,
        org_id: Uuid,
        version: i64,
    ) -> Result<Arc<crate::secure_mem::KeyBytes>> {
        if let Some(k) = keyring.cached_kek(org_id, version) {
            return Ok(k);
        }
        let row = self.tenant_store.kek(org_id, version).await?.ok_or_else(|| {
            ServiceError::Internal(format!(
                "KEK version {version} of the organization is missing (destroyed?): set the SSO client secret again"
            ))
        })?;
        keyring
            .load_kek(org_id, version, &row.wrapped_key)
            .map_err(|_| ServiceError::Internal(format!("KEK version {version} of an organization does not decrypt")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn issuers_and_redirects_are_checked() {
        assert!(check_issuer("https://idp.example.com").is_ok());
        assert!(check_issuer("http://127.0.0.1:8080").is_ok());
        assert!(
            check_issuer("http://idp.example.com").is_err(),
            "plain http off loopback"
        );
        assert!(check_issuer("not a url").is_err());
        assert!(check_loopback_redirect("http://127.0.0.1:43123/oidc/callback").is_ok());
        assert!(check_loopback_redirect("http://localhost:8250/oidc/callback").is_ok());
        assert!(check_loopback_redirect("http://[::1]:8250/cb").is_ok());
        assert!(check_loopback_redirect("https://evil.example/cb").is_err());
        assert!(check_loopback_redirect("http://10.0.0.1:8250/cb").is_err());
    }

    /// Test-only RSA keys (PKCS#1 PEM, made with `openssl genrsa
    /// -traditional 2048`): the provider's, and an attacker's.
    const KEY: &str = include_str!("../../tests/oidc/test-rsa-key.pem");
    const OTHER_KEY: &str = include_str!("../../tests/oidc/test-rsa-other-key.pem");
    const ISSUER: &str = "https://idp.example.com";
    const CLIENT: &str = "coffer";
    const NONCE: &str = "the-nonce-of-this-sign-in";

    fn key(pem: &str) -> openidconnect::core::CoreRsaPrivateSigningKey {
        openidconnect::core::CoreRsaPrivateSigningKey::from_pem(
            pem,
            Some(openidconnect::JsonWebKeyId::new("k1".into())),
        )
        .unwrap()
    }

    /// An ID token signed (RS256) by `pem` with these claims over a good base.
    fn token(pem: &str, changes: serde_json::Value) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut claims = serde_json::json!({
            "iss": ISSUER, "aud": [CLIENT], "exp": now + 300, "iat": now - 10, "sub": "alice",
            "nonce": NONCE, "email": "Alice@Acme.test", "email_verified": true, "groups": ["devs", "ops"],
        });
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        let claims: openidconnect::IdTokenClaims<ExtraClaims, CoreGenderClaim> =
            serde_json::from_value(claims).unwrap();
        let t = SsoIdToken::new(
            claims,
            &key(pem),
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            None,
            None,
        )
        .unwrap();
        serde_json::to_value(&t).unwrap().as_str().unwrap().to_owned()
    }

    fn verify(t: &str) -> std::result::Result<VerifiedPerson, String> {
        use openidconnect::PrivateSigningKey;
        let jwks = CoreJsonWebKeySet::new(vec![key(KEY).as_verification_key()]);
        verify_id_token(
            t,
            &jwks,
            &IssuerUrl::new(ISSUER.into()).unwrap(),
            CLIENT,
            NONCE,
            "groups",
        )
    }

    #[test]
    fn a_good_id_token_gives_the_verified_person() {
        let p = verify(&token(KEY, serde_json::json!({}))).unwrap();
        assert_eq!(p.email, "alice@acme.test");
        assert_eq!(p.groups, ["devs", "ops"]);
    }

    #[test]
    fn tampered_expired_foreign_and_wrong_nonce_tokens_are_refused() {
        let good = token(KEY, serde_json::json!({}));
        // Tampered: the payload changed (groups widened), signature kept.
        let parts: Vec<&str> = good.split('.').collect();
        let mut payload: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .unwrap(),
        )
        .unwrap();
        payload["groups"] = serde_json::json!(["admins"]);
        let forged = format!("{}.{}.{}", parts[0], b64(payload.to_string().as_bytes()), parts[2]);
        assert!(verify(&forged).unwrap_err().contains("signature"));
        // Signed by a key the provider does not publish.
        assert!(
            verify(&token(OTHER_KEY, serde_json::json!({})))
                .unwrap_err()
                .contains("signature")
        );
        // Expired.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let expired = token(KEY, serde_json::json!({"exp": now - 120, "iat": now - 600}));
        assert!(verify(&expired).unwrap_err().contains("expired"));
        // Another sign-in's nonce, no nonce, another audience, another issuer.
        assert!(
            verify(&token(KEY, serde_json::json!({"nonce": "other"})))
                .unwrap_err()
                .contains("nonce")
        );
        assert!(
            verify(&token(KEY, serde_json::json!({"nonce": null})))
                .unwrap_err()
                .contains("nonce")
        );
        assert!(
            verify(&token(KEY, serde_json::json!({"aud": ["someone-else"]})))
                .unwrap_err()
                .contains("another client")
        );
        assert!(
            verify(&token(KEY, serde_json::json!({"iss": "https://evil.example"})))
                .unwrap_err()
                .contains("issuer")
        );
        // Not a JWT at all; alg "none".
        assert!(verify("garbage").is_err());
        let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), parts[1]);
        assert!(verify(&none).is_err());
    }

    #[test]
    fn unverified_or_missing_emails_are_refused() {
        let e = verify(&token(KEY, serde_json::json!({"email_verified": false}))).unwrap_err();
        assert!(e.contains("is verified"), "{e}");
        assert!(verify(&token(KEY, serde_json::json!({"email_verified": null}))).is_err());
        assert!(
            verify(&token(KEY, serde_json::json!({"email": null})))
                .unwrap_err()
                .contains("email")
        );
    }

    #[test]
    fn groups_claims_are_read_strictly() {
        let extra: ExtraClaims = serde_json::from_value(serde_json::json!({
            "groups": ["devs", "ops"], "one": "devs", "bad": [1], "num": 3
        }))
        .unwrap();
        assert_eq!(groups_of(&extra, "groups").unwrap(), ["devs", "ops"]);
        assert_eq!(groups_of(&extra, "one").unwrap(), ["devs"]);
        assert!(groups_of(&extra, "missing").unwrap().is_empty());
        assert!(groups_of(&extra, "").unwrap().is_empty());
        assert!(groups_of(&extra, "bad").is_err());
        assert!(groups_of(&extra, "num").is_err());
    }
}
