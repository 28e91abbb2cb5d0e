//! Authentication: tokens (and the certificates they may be bound to),
//! client-certificate identities, users with passwords and TOTP, login
//! sessions with rotating refresh tokens (the RFC 8628 device flow is in
//! `device.rs`).
//!
//! Invariants: a token or password never reaches storage or a log, only
//! its SHA-256 or argon2id hash; a revoked token is refused by every server
//! within a second (the token cache lives 1 s); an unknown email costs the
//! same argon2id verification as a known one.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};
use base64::Engine;
use ipnet::IpNet;
use serde::Serialize;
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::hash_gate;
use super::limits::Kind;
use super::{Principal, PrincipalKind, Result, ServiceError, Unsealed, now_ms, random_bytes, rfc3339, token_hash};
use crate::keys;
use crate::storage::{RefreshRow, RefreshUse, ServiceAccountRow, TokenRow, UserRow};

/// Lifetime of a login's access token.
const ACCESS_TTL_MS: i64 = 3_600_000;
/// Lifetime of a refresh token.
const REFRESH_TTL_MS: i64 = 30 * 24 * 3_600_000;
/// Longest life of a token derived by a caller authenticated by its client
/// certificate alone (no token whose expiry could bound it).
const CERT_CHILD_TTL_MS: i64 = 3_600_000;
/// A login this recent may approve a device login without the password.
pub(super) const RECENT_LOGIN_MS: i64 = 5 * 60_000;
/// Consecutive failures that lock an account.
const LOCK_AFTER: i64 = 5;
/// First lock; doubles per further failure up to [`LOCK_MAX_MS`].
const LOCK_BASE_MS: i64 = 60_000;
const LOCK_MAX_MS: i64 = 15 * 60_000;

/// A client certificate presented on the connection, as the TLS layer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// hex SHA-256 of the DER SubjectPublicKeyInfo
    pub spki_sha256: String,
    /// subject common name
    pub subject_cn: Option<String>,
    /// DNS subject alternative names
    pub dns_sans: Vec<String>,
}

/// What the transport knows about a request. Its Debug never shows the
/// token.
#[derive(Default, Clone, Copy)]
pub struct Caller<'a> {
    /// bearer token
    pub token: Option<&'a str>,
    /// TCP peer address
    pub source: Option<IpAddr>,
    /// verified client certificate
    pub cert: Option<&'a ClientCert>,
    /// organization slug of the request path (certificate-only login)
    pub org_hint: Option<&'a str>,
}

impl std::fmt::Debug for Caller<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("token", &self.token.map(|_| "<redacted>"))
            .field("source", &self.source)
            .field("cert", &self.cert)
            .field("org_hint", &self.org_hint)
            .finish()
    }
}

/// A cached authentication result.
#[derive(Debug)]
pub(crate) struct AuthEntry {
    principal: Principal,
    bound_spki: Option<String>,
    cidrs: Vec<IpNet>,
}

/// A new login session.
#[derive(Serialize)]
pub struct Session {
    /// bearer token, 1 h
    pub access_token: Zeroizing<String>,
    /// spend once at `/auth/refresh`
    pub refresh_token: Zeroizing<String>,
    /// "bearer"
    pub token_type: &'static str,
    /// seconds
    pub expires_in: i64,
    /// accessor of the access token
    pub accessor: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("accessor", &self.accessor)
            .finish_non_exhaustive()
    }
}

/// A newly created token, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    /// the secret
    #[schema(value_type = String)]
    pub token: Zeroizing<String>,
    /// public id
    pub accessor: String,
    /// label
    pub name: String,
    /// RFC 3339 or null
    pub expires_at: Option<String>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("accessor", &self.accessor)
            .finish_non_exhaustive()
    }
}

/// Where a new token stands among the others: the login session it belongs
/// to, the token it was derived from, the login behind it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Lineage {
    /// login session (refresh family)
    pub(crate) family_id: Option<String>,
    /// accessor of the token it was derived from
    pub(crate) parent_accessor: Option<String>,
    /// unix ms of the password login behind it
    pub(crate) auth_at: Option<i64>,
}

/// A token as listings show it (never the secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    /// public id
    pub accessor: String,
    /// label
    pub name: String,
    /// root | user | service_account (`default:<kind>`: a self-only token)
    pub kind: String,
    /// RFC 3339
    pub created_at: String,
    /// RFC 3339 or null
    pub expires_at: Option<String>,
    /// bound to a client certificate
    pub certificate_bound: bool,
}

/// The caller, as `whoami` shows it.
#[derive(Debug, Serialize)]
pub struct WhoAmI {
    /// root | user | service_account
    pub kind: &'static str,
    /// user or account id (null for root)
    pub id: Option<String>,
    /// email, account name or "root"
    pub name: String,
    /// organization slug of a service account
    pub org: Option<String>,
    /// token accessor
    pub accessor: String,
    /// RFC 3339 or null
    pub expires_at: Option<String>,
    /// bound to a client certificate
    pub certificate_bound: bool,
}

/// TOTP enrolment data, shown once.
#[derive(Serialize)]
pub struct TotpEnrollment {
    /// base32 seed
    pub secret: Zeroizing<String>,
    /// `otpauth://` URI for authenticator apps
    pub otpauth_uri: Zeroizing<String>,
}

impl std::fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrollment")
    }
}

/// A fresh random token string: `cfr_` + 32 random bytes base64url.
pub(super) fn new_secret() -> Result<Zeroizing<String>> {
    let bytes = Zeroizing::new(random_bytes::<32>()?);
    Ok(Zeroizing::new(format!(
        "cfr_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..])
    )))
}

/// Prefix of `tokens.policy` for a self-only token (Vault's `default`
/// policy): `default:<kind>` acts as nobody but itself.
const SELF_ONLY_PREFIX: &str = "default:";

/// `tokens.policy` → (principal kind name, self-only?).
pub(crate) fn split_policy(policy: &str) -> (&str, bool) {
    match policy.strip_prefix(SELF_ONLY_PREFIX) {
        Some(kind) => (kind, true),
        None => (policy, false),
    }
}

/// A fresh token for `kind` and the row that stores it (by hash): no expiry,
/// unbound, outside any login session until the caller says otherwise.
pub(crate) fn new_token(kind: PrincipalKind, name: &str) -> Result<(Zeroizing<String>, TokenRow)> {
    let token = new_secret()?;
    let (principal_id, org_id) = match kind {
        PrincipalKind::Root => (None, None),
        PrincipalKind::User(id) => (Some(id), None),
        PrincipalKind::ServiceAccount { id, org_id } => (Some(id), Some(org_id)),
    };
    let row = TokenRow {
        accessor: hex::encode(random_bytes::<12>()?),
        token_hash: token_hash(&token),
        policy: kind.as_str().to_owned(),
        display_name: name.to_owned(),
        created_at: now_ms(),
        expires_at: None,
        principal_id,
        org_id,
        bound_spki: None,
        family_id: None,
        parent_accessor: None,
        auth_at: None,
    };
    Ok((token, row))
}

fn argon2() -> Argon2<'static> {
    // argon2id v19, m = 19 MiB, t = 2, p = 1 (OWASP's recommendation).
    Argon2::default()
}

/// argon2id hash of a password (blocking work off the async threads,
/// through the hashing gate: `Busy` when too many run).
pub(super) async fn hash_password(password: Zeroizing<String>) -> Result<String> {
    hash_gate::gate()
        .run(move || {
            // A fresh random salt from the OS for every hash.
            let hash: Result<PasswordHash> = argon2()
                .hash_password(password.as_bytes())
                .map_err(|_| ServiceError::Internal("password hashing failed".into()));
            hash.map(|h| h.to_string())
        })
        .await?
}

/// A hash that no password matches, verified for unknown emails so that
/// they cost the same time as known ones.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let hash: Option<PasswordHash> = argon2()
            .hash_password_with_salt(b"coffer: no such user", b"coffer-dummy-salt")
            .ok();
        hash.map(|h| h.to_string()).unwrap_or_default()
    })
}

/// Verify a password against a PHC string (blocking work off the async
/// threads, through the hashing gate: `Busy` when too many run).
async fn verify_password(password: Zeroizing<String>, phc: String) -> Result<bool> {
    hash_gate::gate().run(move || verify_now(&password, &phc)).await
}

/// The same work as [`verify_password`] against [`dummy_hash`] (an unknown
/// email), the dummy made on first use inside the gate, not on an async thread.
async fn verify_dummy(password: Zeroizing<String>) -> Result<bool> {
    hash_gate::gate().run(move || verify_now(&password, dummy_hash())).await
}

fn verify_now(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

fn check_email(email: &str) -> Result<String> {
    let email = email.trim().to_ascii_lowercase();
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        });
    if ok {
        Ok(email)
    } else {
        Err(ServiceError::Invalid("email must look like name@domain".into()))
    }
}

pub(super) fn check_password(password: &str) -> Result<()> {
    match password.chars().count() {
        12..=1024 => Ok(()),
        _ => Err(ServiceError::Invalid("password must be 12 to 1024 characters".into())),
    }
}

/// Parse a comma-separated CIDR list (empty = anywhere).
pub(crate) fn parse_cidrs(list: &str) -> Result<Vec<IpNet>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ServiceError::Invalid(format!("cidrs: {s:?} is not an address or a network like 10.0.0.0/8"))
                })
        })
        .collect()
}

fn totp(secret: &[u8]) -> Result<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_secret(secret)
        .build()
        .map_err(|_| ServiceError::Internal("TOTP seed rejected".into()))
}

fn recovery_hash(code: &str) -> Vec<u8> {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    token_hash(&norm)
}

pub(super) fn token_view(t: TokenRow) -> TokenView {
    TokenView {
        accessor: t.accessor,
        name: t.display_name,
        kind: t.policy,
        created_at: rfc3339(t.created_at),
        expires_at: t.expires_at.map(rfc3339),
        certificate_bound: t.bound_spki.is_some(),
    }
}

/// Which service account, if any, a client certificate stands for: its
/// SPKI hash is the identity (unique server-wide, so a certificate maps to
/// at most one account), and a configured CN or SAN must match too. A
/// mapping without an SPKI hash (made before they were required) matches
/// nothing: CNs and SANs are chosen by whoever runs the CA and any org
/// admin could claim them.
fn cert_matches(sa: &ServiceAccountRow, cert: &ClientCert) -> bool {
    let Some(want) = sa.cert_spki_sha256.as_deref() else {
        return false;
    };
    let spki = bool::from(want.to_ascii_lowercase().as_bytes().ct_eq(cert.spki_sha256.as_bytes()));
    let cn = sa
        .cert_subject_cn
        .as_deref()
        .map(|want| cert.subject_cn.as_deref() == Some(want));
    let san = sa
        .cert_dns_san
        .as_deref()
        .map(|want| cert.dns_sans.iter().any(|s| s.eq_ignore_ascii_case(want)));
    spki && cn.unwrap_or(true) && san.unwrap_or(true)
}

/// Authentication, tokens, logins, the device flow and (in `users.rs`) user accounts.
#[derive(Debug, Clone)]
pub struct IdentityService {
    pub(super) shared: Arc<super::Shared>,
    pub(super) identity_store: Arc<dyn crate::storage::IdentityStore>,
    pub(super) tenant_store: Arc<dyn crate::storage::TenantStore>,
    pub(super) access_store: Arc<dyn crate::storage::AccessStore>,
    pub(super) access: crate::service::AccessService,
}

impl IdentityService {
    /// Authenticate a request: its token (checked against the certificate it
    /// may be bound to and the account's source networks), or, without a
    /// token, its client certificate. Sealed servers refuse before looking.
    /// A self-only token (Vault's `default` policy) is refused here: only
    /// [`IdentityService::authenticate_self`] accepts it.
    pub async fn authenticate(&self, c: &Caller<'_>) -> Result<Unsealed> {
        let who = self.authenticate_self(c).await?;
        if who.self_only {
            return Err(ServiceError::PermissionDenied);
        }
        Ok(who)
    }

    /// [`IdentityService::authenticate`] that also accepts a self-only token: for the
    /// routes where a token looks itself up, renews or revokes itself.
    pub async fn authenticate_self(&self, c: &Caller<'_>) -> Result<Unsealed> {
        let keyring = self.shared.keyring()?;
        let entry = match (c.token.filter(|t| !t.is_empty()), c.cert, c.org_hint) {
            (Some(token), _, _) => self.token_entry(token, c.source).await?,
            (None, Some(cert), org) => self.cert_entry(org, cert).await?,
            _ => return Err(ServiceError::Unauthenticated),
        };
        if entry.principal.expires_at.is_some_and(|t| t <= now_ms()) {
            if c.token.is_some_and(|t| !t.is_empty()) {
                self.forget_expired(&entry.principal.accessor).await;
            }
            return Err(ServiceError::Unauthenticated);
        }
        if let Some(spki) = &entry.bound_spki {
            let presented = c
                .cert
                .is_some_and(|cert| bool::from(cert.spki_sha256.as_bytes().ct_eq(spki.as_bytes())));
            if !presented {
                return Err(ServiceError::CertificateRequired);
            }
        }
        if !entry.cidrs.is_empty() && !c.source.is_some_and(|ip| entry.cidrs.iter().any(|n| n.contains(&ip))) {
            return Err(ServiceError::SourceNotAllowed);
        }
        Ok(Unsealed {
            principal: entry.principal.clone(),
            keyring,
        })
    }

    /// A token seen past its expiry is deleted at once (with what was
    /// derived from it, which cannot outlive it), not merely refused: else a
    /// wall clock stepped back later (NTP correcting a clock that ran ahead,
    /// an operator's mistake) would make it valid again. docs/reliability.md,
    /// "Clock steps". A failure to delete is logged; the refusal stands.
    async fn forget_expired(&self, accessor: &str) {
        match self.identity_store.delete_token_tree(accessor).await {
            Ok(_) => tracing::info!(accessor, "expired token deleted on use"),
            Err(e) => tracing::warn!(accessor, error = %e, "expired token refused; deleting it failed"),
        }
        // The 1-s cache holds the entry with its (now past) expiry: a clock
        // stepped back within that second must not revive it either.
        self.shared.cache.tokens.clear();
    }

    async fn token_entry(&self, token: &str, source: Option<IpAddr>) -> Result<Arc<AuthEntry>> {
        // No per-source block before the lookup: junk tokens from a shared
        // address must not lock out the valid tokens behind it.
        let hash = token_hash(token);
        if let Some(e) = self.shared.cache.tokens.get_by(hash.as_slice()) {
            return Ok(e);
        }
        let row = match self.identity_store.token_by_hash(&hash).await? {
            // The lookup was by hash; compare again in constant time so no
            // storage-side collation or truncation can let a near-miss through.
            Some(row) if bool::from(row.token_hash.as_slice().ct_eq(hash.as_slice())) => row,
            _ => {
                return Err(self
                    .shared
                    .limits
                    .failure(Kind::Token, source, ServiceError::Unauthenticated));
            }
        };
        // The token's own name is a label; the principal is named by its account.
        let (policy, self_only) = split_policy(&row.policy);
        let (kind, name, cidrs) = match (policy, row.principal_id, row.org_id) {
            ("root", _, _) => (PrincipalKind::Root, "root".to_owned(), Vec::new()),
            ("user", Some(id), _) => {
                let user = self
                    .identity_store
                    .user(id)
                    .await?
                    .ok_or(ServiceError::Unauthenticated)?;
                if user.disabled {
                    return Err(ServiceError::Unauthenticated);
                }
                (PrincipalKind::User(id), user.email, Vec::new())
            }
            ("service_account", Some(id), Some(org_id)) => {
                let sa = self
                    .access_store
                    .service_account(org_id, id)
                    .await?
                    .ok_or(ServiceError::Unauthenticated)?;
                (
                    PrincipalKind::ServiceAccount { id, org_id },
                    sa.name,
                    parse_cidrs(&sa.cidrs)?,
                )
            }
            _ => {
                tracing::error!(accessor = %row.accessor, "token row has an unknown kind; refused");
                return Err(ServiceError::Unauthenticated);
            }
        };
        let entry = Arc::new(AuthEntry {
            principal: Principal {
                accessor: row.accessor,
                kind,
                name,
                expires_at: row.expires_at,
                family_id: row.family_id,
                bound_spki: row.bound_spki.clone(),
                certificate_only: false,
                authenticated_at: row.auth_at,
                self_only,
            },
            bound_spki: row.bound_spki,
            cidrs,
        });
        // Revocation and expiry are re-read on every miss; an entry lives 1 s.
        self.shared.cache.tokens.put(hash, entry.clone());
        Ok(entry)
    }

    /// The service account a client certificate maps to: in the org of the
    /// request path, else the one account of any org that maps it (an SPKI
    /// hash is mapped at most once server-wide: migration 0009).
    async fn cert_entry(&self, org: Option<&str>, cert: &ClientCert) -> Result<Arc<AuthEntry>> {
        let orgs = match org {
            Some(slug) => vec![
                self.tenant_store
                    .org(slug)
                    .await?
                    .ok_or(ServiceError::Unauthenticated)?,
            ],
            None => self.tenant_store.list_orgs().await?,
        };
        let key = (
            if orgs.len() == 1 { orgs[0].id } else { Uuid::nil() },
            cert.spki_sha256.clone(),
        );
        if let Some(e) = self.shared.cache.certs.get(&key) {
            return Ok(e);
        }
        // At most one account maps a certificate's SPKI (a unique index), so
        // another org cannot claim it; more than one match is corruption.
        let mut found = Vec::new();
        for org in &orgs {
            found.extend(
                self.access_store
                    .service_accounts(org.id)
                    .await?
                    .into_iter()
                    .filter(|sa| cert_matches(sa, cert)),
            );
        }
        let sa = match <[ServiceAccountRow; 1]>::try_from(found) {
            Ok([sa]) => sa,
            Err(_) => return Err(ServiceError::Unauthenticated),
        };
        let entry = Arc::new(AuthEntry {
            principal: Principal {
                accessor: format!("cert:{}", cert.spki_sha256.get(..16).unwrap_or_default()),
                kind: PrincipalKind::ServiceAccount {
                    id: sa.id,
                    org_id: sa.org_id,
                },
                name: sa.name,
                expires_at: None,
                family_id: None,
                bound_spki: Some(cert.spki_sha256.clone()),
                certificate_only: true,
                authenticated_at: None,
                self_only: false,
            },
            bound_spki: None,
            cidrs: parse_cidrs(&sa.cidrs)?,
        });
        self.shared.cache.certs.put(key, entry.clone());
        Ok(entry)
    }

    /// `POST /tokens` (and Vault's `auth/token/create`): a token acting as
    /// the caller, which inherits the caller's limits: bound to the
    /// caller's certificate when the caller is, in the caller's login
    /// session, expiring no later than the caller's token (a
    /// certificate-only caller's child: within [`CERT_CHILD_TTL_MS`]), and
    /// recorded as the caller's child so revoking the caller revokes it.
    pub async fn create_token(
        &self,
        who: &Unsealed,
        name: &str,
        ttl_seconds: Option<u64>,
        bind_to: Option<&ClientCert>,
        bind_requested: bool,
    ) -> Result<IssuedToken> {
        if name.len() > 100 {
            return Err(ServiceError::Invalid("name must be at most 100 characters".into()));
        }
        let bound = match (&who.bound_spki, bind_requested, bind_to) {
            // A bound caller presented its certificate (authentication
            // checked it): the child is bound to the same one.
            (Some(spki), _, _) => Some(spki.clone()),
            (None, false, _) => None,
            (None, true, Some(cert)) => Some(cert.spki_sha256.clone()),
            (None, true, None) => {
                return Err(ServiceError::Invalid(
                    "bind_certificate needs a client certificate on this connection".into(),
                ));
            }
        };
        let now = now_ms();
        let expires_at = ttl_ms(ttl_seconds)?.map(|ttl| now + ttl);
        // A child never outlives its parent; a certificate has no expiry
        // coffer could follow, so its children live an hour at most.
        let parent_expiry = if who.certificate_only {
            Some(now + CERT_CHILD_TTL_MS)
        } else {
            who.expires_at
        };
        let expires_at = match (expires_at, parent_expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let lineage = Lineage {
            family_id: who.family_id.clone(),
            parent_accessor: (!who.certificate_only).then(|| who.accessor.clone()),
            auth_at: who.authenticated_at,
        };
        let name = if name.is_empty() { who.name.as_str() } else { name };
        issue_token(
            &*self.identity_store,
            who.kind,
            name,
            expires_at,
            bound,
            lineage,
            who.self_only,
        )
        .await
    }

    /// `GET /tokens`: the caller's tokens (root: every token).
    pub async fn list_tokens(&self, who: &Unsealed) -> Result<Vec<TokenView>> {
        let filter = match who.kind {
            PrincipalKind::Root => None,
            _ => Some(who.id()),
        };
        Ok(self
            .identity_store
            .list_tokens(filter)
            .await?
            .into_iter()
            .map(token_view)
            .collect())
    }

    /// `DELETE /tokens/{accessor}`: own tokens, or root, or an admin of the
    /// token's organization. Anything else looks like a missing token.
    pub async fn revoke_token(&self, who: &Unsealed, accessor: &str) -> Result<()> {
        let missing = || ServiceError::NotFound(format!("token {accessor}"));
        let row = self
            .identity_store
            .token_by_accessor(accessor)
            .await?
            .ok_or_else(missing)?;
        if !self.may_manage_token(who, &row).await? {
            return Err(missing());
        }
        self.revoke_lineage(&row).await
    }

    /// Whether `who` may see, renew and revoke another token: its own
    /// principal's, any for root, and a service account's for an admin of
    /// the account's organization. Callers answer every other token like a
    /// missing one.
    pub(super) async fn may_manage_token(&self, who: &Unsealed, row: &TokenRow) -> Result<bool> {
        Ok(match who.kind {
            PrincipalKind::Root => true,
            _ if row.principal_id == Some(who.id()) => true,
            _ => match row.org_id {
                Some(org_id) => self.access.access(who, org_id).await?.is_some_and(|a| a.admin),
                None => false,
            },
        })
    }

    /// The stored row of a token secret, compared again in constant time
    /// after the lookup by hash (as authentication does).
    pub(super) async fn token_row(&self, token: &str) -> Result<Option<TokenRow>> {
        let hash = token_hash(token);
        Ok(self
            .identity_store
            .token_by_hash(&hash)
            .await?
            .filter(|row| bool::from(row.token_hash.as_slice().ct_eq(hash.as_slice()))))
    }

    /// Revoke a token and everything descended from it: every token derived
    /// from it (transitively) and, for a login's own token (one not derived
    /// from another), its whole login session with the refresh tokens.
    async fn revoke_lineage(&self, row: &TokenRow) -> Result<()> {
        self.identity_store.delete_token_tree(&row.accessor).await?;
        if row.parent_accessor.is_none()
            && let Some(family) = &row.family_id
        {
            self.identity_store.revoke_family(family).await?;
        }
        self.shared.principals_changed();
        Ok(())
    }

    /// `GET /auth/whoami`.
    pub async fn whoami(&self, who: &Unsealed) -> Result<WhoAmI> {
        let (id, org) = match who.kind {
            PrincipalKind::Root => (None, None),
            PrincipalKind::User(id) => (Some(id.to_string()), None),
            PrincipalKind::ServiceAccount { id, org_id } => {
                let org = self
                    .tenant_store
                    .list_orgs()
                    .await?
                    .into_iter()
                    .find(|o| o.id == org_id)
                    .map(|o| o.slug);
                (Some(id.to_string()), org)
            }
        };
        Ok(WhoAmI {
            kind: who.kind.as_str(),
            id,
            name: who.name.clone(),
            org,
            accessor: who.accessor.clone(),
            expires_at: who.expires_at.map(rfc3339),
            certificate_bound: who.bound_spki.is_some(),
        })
    }

    /// `POST /users` (root).
    pub async fn create_user(
        &self,
        who: &Unsealed,
        email: &str,
        password: Zeroizing<String>,
    ) -> Result<(Uuid, String)> {
        who.require_root()?;
        let email = check_email(email)?;
        check_password(&password)?;
        self.shared.refuse_breached_password(&password).await?;
        let user = UserRow {
            id: Uuid::new_v4(),
            email,
            password_hash: hash_password(password).await?,
            totp_secret: None,
            totp_enabled: false,
            totp_last_step: 0,
            failed_logins: 0,
            locked_until: 0,
            created_at: now_ms(),
            disabled: false,
        };
        self.identity_store.create_user(&user).await?;
        Ok((user.id, user.email))
    }

    /// `POST /auth/login`.
    pub async fn login(
        &self,
        source: Option<IpAddr>,
        email: &str,
        password: Zeroizing<String>,
        totp_code: Option<&str>,
        recovery_code: Option<&str>,
    ) -> Result<Session> {
        let keyring = self.shared.keyring()?;
        if let Some(retry_after_s) = self.shared.limits.blocked(Kind::Login, source) {
            return Err(ServiceError::RateLimited { retry_after_s });
        }
        let email = email.trim().to_ascii_lowercase();
        let Some(user) = self.identity_store.user_by_email(&email).await? else {
            verify_dummy(password).await?;
            self.shared.limits.fail(Kind::Login, source);
            return Err(ServiceError::InvalidCredentials);
        };
        let now = now_ms();
        if user.locked_until > now {
            self.shared.limits.fail(Kind::Login, source);
            return Err(ServiceError::RateLimited {
                retry_after_s: ((user.locked_until - now) as u64).div_ceil(1000),
            });
        }
        if !verify_password(password, user.password_hash.clone()).await? {
            self.login_failed(&user, source).await?;
            return Err(ServiceError::InvalidCredentials);
        }
        if user.totp_enabled {
            let ok = match (totp_code, recovery_code) {
                (_, Some(code)) => {
                    self.identity_store
                        .use_recovery_code(user.id, &recovery_hash(code))
                        .await?
                }
                (Some(code), None) => self.totp_step_ok(&keyring, &user, code).await?,
                (None, None) => return Err(ServiceError::TotpRequired),
            };
            if !ok {
                self.login_failed(&user, source).await?;
                return Err(ServiceError::InvalidTotp);
            }
        }
        if user.failed_logins != 0 {
            self.identity_store.set_login_state(user.id, 0, 0).await?;
        }
        self.new_session(&user, &Uuid::new_v4().simple().to_string(), now_ms())
            .await
    }

    /// Count a failed login: per source, and on the account (lock after
    /// [`LOCK_AFTER`], doubling up to 15 min).
    async fn login_failed(&self, user: &UserRow, source: Option<IpAddr>) -> Result<()> {
        self.shared.limits.fail(Kind::Login, source);
        // Counted in the database, atomically: parallel guesses each count.
        let failed = self.identity_store.count_login_failure(user.id).await?;
        if failed >= LOCK_AFTER {
            let shift = (failed - LOCK_AFTER).min(8) as u32;
            let lock = LOCK_BASE_MS.saturating_mul(1 << shift).min(LOCK_MAX_MS);
            tracing::warn!(user = %user.id, failures = failed, lock_s = lock / 1000, "account locked after failed logins");
            self.identity_store.lock_user_until(user.id, now_ms() + lock).await?;
        }
        Ok(())
    }

    /// Check a TOTP code and spend its time step (a code works once).
    async fn totp_step_ok(&self, keyring: &keys::Keyring, user: &UserRow, code: &str) -> Result<bool> {
        let Some(blob) = &user.totp_secret else {
            return Ok(false);
        };
        let seed = keyring
            .open_account_secret(&keys::totp_aad(&user.id), blob)
            .map_err(|_| ServiceError::Internal(format!("TOTP seed of user {} does not decrypt", user.id)))?;
        let now_s = (now_ms() / 1000) as u64;
        let Some(step) = totp(&seed)?.check(code.trim(), now_s) else {
            return Ok(false);
        };
        Ok(self.identity_store.use_totp_step(user.id, step as i64).await?)
    }

    /// A new access token and refresh token in login session `family_id`,
    /// whose password login was at `auth_at` (unix ms).
    pub(super) async fn new_session(&self, user: &UserRow, family_id: &str, auth_at: i64) -> Result<Session> {
        if user.disabled {
            return Err(ServiceError::AccountDisabled);
        }
        let now = now_ms();
        let access = issue_token(
            &*self.identity_store,
            PrincipalKind::User(user.id),
            &user.email,
            Some(now + ACCESS_TTL_MS),
            None,
            Lineage {
                family_id: Some(family_id.to_owned()),
                parent_accessor: None,
                auth_at: Some(auth_at),
            },
            false,
        )
        .await?;
        let refresh = new_secret()?;
        self.identity_store
            .create_refresh(&RefreshRow {
                token_hash: token_hash(&refresh),
                family_id: family_id.to_owned(),
                user_id: user.id,
                expires_at: now + REFRESH_TTL_MS,
                created_at: now,
                auth_at,
            })
            .await?;
        Ok(Session {
            access_token: access.token,
            refresh_token: refresh,
            token_type: "bearer",
            expires_in: ACCESS_TTL_MS / 1000,
            accessor: access.accessor,
        })
    }

    /// `POST /auth/refresh`: spend a refresh token for a new pair. A spent
    /// token presented again revokes its whole family.
    pub async fn refresh(&self, source: Option<IpAddr>, refresh_token: &str) -> Result<Session> {
        self.shared.require_unsealed()?;
        match self.identity_store.spend_refresh(&token_hash(refresh_token)).await? {
            RefreshUse::Unknown => Err(self
                .shared
                .limits
                .failure(Kind::Token, source, ServiceError::Unauthenticated)),
            RefreshUse::Reused(row) => {
                tracing::warn!(user = %row.user_id, "a spent refresh token was presented again; revoking its session");
                self.identity_store.revoke_family(&row.family_id).await?;
                self.shared.principals_changed();
                Err(ServiceError::Unauthenticated)
            }
            RefreshUse::Fresh(row) => {
                if row.expires_at <= now_ms() {
                    return Err(ServiceError::Unauthenticated);
                }
                let user = self
                    .identity_store
                    .user(row.user_id)
                    .await?
                    .ok_or(ServiceError::Unauthenticated)?;
                self.new_session(&user, &row.family_id, row.auth_at).await
            }
        }
    }

    /// Vault's `auth/token/revoke-self`: the caller's token and what was
    /// derived from it; the login session too only when the token is the
    /// login's own (a child revoking itself leaves its parent alive).
    pub async fn revoke_self(&self, who: &Unsealed) -> Result<()> {
        match self.identity_store.token_by_accessor(&who.accessor).await? {
            Some(row) => self.revoke_lineage(&row).await,
            None => Ok(()),
        }
    }

    /// `POST /auth/logout`: revoke the calling token and its session.
    pub async fn logout(&self, who: &Unsealed) -> Result<()> {
        self.identity_store.delete_token_tree(&who.accessor).await?;
        if let Some(family) = &who.family_id {
            self.identity_store.revoke_family(family).await?;
        }
        self.shared.principals_changed();
        Ok(())
    }

    fn require_user(who: &Unsealed) -> Result<Uuid> {
        match who.kind {
            PrincipalKind::User(id) => Ok(id),
            _ => Err(ServiceError::Invalid("only a user account has TOTP".into())),
        }
    }

    /// `POST /auth/totp/enroll`: a new seed, active once verified. Needs
    /// the password: a token alone must not set the second factor.
    pub async fn totp_enroll(
        &self,
        who: &Unsealed,
        source: Option<IpAddr>,
        password: Option<Zeroizing<String>>,
    ) -> Result<TotpEnrollment> {
        let keyring = who.keyring();
        let id = Self::require_user(who)?;
        let password = password.ok_or(ServiceError::PasswordRequired("enrolling TOTP needs your password"))?;
        let user = self.prove_person(id, source, password, None, false).await?;
        if user.totp_enabled {
            return Err(ServiceError::Conflict("TOTP is enabled already".into()));
        }
        let seed = Zeroizing::new(random_bytes::<20>()?);
        let blob = keyring.seal_account_secret(&keys::totp_aad(&id), seed.as_ref());
        self.identity_store.set_totp(id, Some(&blob), false).await?;
        let secret = Zeroizing::new(totp_rs::Secret::from(seed.as_slice()).to_base32());
        let account = user.email.replace('@', "%40");
        let otpauth_uri = Zeroizing::new(format!(
            "otpauth://totp/coffer:{account}?secret={}&issuer=coffer&algorithm=SHA1&digits=6&period=30",
            secret.as_str()
        ));
        Ok(TotpEnrollment { secret, otpauth_uri })
    }

    /// Whether the caller (a user) has TOTP on; None for root and service
    /// accounts, which have no second factor.
    pub async fn totp_enabled(&self, who: &Unsealed) -> Result<Option<bool>> {
        let PrincipalKind::User(id) = who.kind else {
            return Ok(None);
        };
        let user = self
            .identity_store
            .user(id)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        Ok(Some(user.totp_enabled))
    }

    /// `POST /auth/totp/verify`: turn TOTP on; returns ten one-time recovery codes.
    pub async fn totp_verify(&self, who: &Unsealed, code: &str) -> Result<Vec<Zeroizing<String>>> {
        let keyring = who.keyring();
        let id = Self::require_user(who)?;
        let user = self
            .identity_store
            .user(id)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        if user.totp_enabled {
            return Err(ServiceError::Conflict("TOTP is enabled already".into()));
        }
        if user.totp_secret.is_none() {
            return Err(ServiceError::Invalid(
                "enroll first: POST /api/v1/auth/totp/enroll".into(),
            ));
        }
        if !self.totp_step_ok(keyring, &user, code).await? {
            return Err(ServiceError::InvalidTotp);
        }
        self.identity_store
            .set_totp(id, user.totp_secret.as_deref(), true)
            .await?;
        let mut codes = Vec::with_capacity(10);
        let mut hashes = Vec::with_capacity(10);
        for _ in 0..10 {
            let raw = base32_lower(&random_bytes::<8>()?);
            let code = Zeroizing::new(format!("{}-{}-{}", &raw[0..4], &raw[4..8], &raw[8..12]));
            hashes.push(recovery_hash(&code));
            codes.push(code);
        }
        self.identity_store.set_recovery_codes(id, &hashes).await?;
        Ok(codes)
    }

    /// Make a user prove themself again (password, plus TOTP when enrolled
    /// and `with_totp`), counted like a login: failures lock the account.
    pub(super) async fn prove_person(
        &self,
        user_id: Uuid,
        source: Option<IpAddr>,
        password: Zeroizing<String>,
        totp_code: Option<&str>,
        with_totp: bool,
    ) -> Result<UserRow> {
        let keyring = self.shared.keyring()?;
        if let Some(retry_after_s) = self.shared.limits.blocked(Kind::Login, source) {
            return Err(ServiceError::RateLimited { retry_after_s });
        }
        let user = self
            .identity_store
            .user(user_id)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        let now = now_ms();
        if user.locked_until > now {
            return Err(ServiceError::RateLimited {
                retry_after_s: ((user.locked_until - now) as u64).div_ceil(1000),
            });
        }
        if !verify_password(password, user.password_hash.clone()).await? {
            self.login_failed(&user, source).await?;
            return Err(ServiceError::InvalidCredentials);
        }
        if with_totp && user.totp_enabled {
            let Some(code) = totp_code else {
                return Err(ServiceError::TotpRequired);
            };
            if !self.totp_step_ok(&keyring, &user, code).await? {
                self.login_failed(&user, source).await?;
                return Err(ServiceError::InvalidTotp);
            }
        }
        Ok(user)
    }
}

/// A TTL in seconds as milliseconds; at most ten years.
pub(crate) fn ttl_ms(ttl_seconds: Option<u64>) -> Result<Option<i64>> {
    match ttl_seconds {
        None => Ok(None),
        Some(s) if (1..=10 * 365 * 86_400).contains(&s) => Ok(Some(s as i64 * 1000)),
        Some(_) => Err(ServiceError::Invalid(
            "ttl_seconds must be between 1 and 315360000".into(),
        )),
    }
}

/// RFC 4648 base32, lower case, no padding.
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buf, mut bits) = (0u32, 0u32);
    for b in bytes {
        buf = (buf << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Store a new token for `kind`; returns it once.
pub(super) async fn issue_token(
    store: &dyn crate::storage::IdentityStore,
    kind: PrincipalKind,
    name: &str,
    expires_at: Option<i64>,
    bound_spki: Option<String>,
    lineage: Lineage,
    self_only: bool,
) -> Result<IssuedToken> {
    let (token, mut row) = new_token(kind, name)?;
    if self_only {
        row.policy = format!("{SELF_ONLY_PREFIX}{}", row.policy);
    }
    row.expires_at = expires_at;
    row.bound_spki = bound_spki;
    row.family_id = lineage.family_id;
    row.parent_accessor = lineage.parent_accessor;
    row.auth_at = lineage.auth_at;
    store.create_token(&row).await?;
    Ok(IssuedToken {
        token,
        accessor: row.accessor,
        name: row.display_name,
        expires_at: expires_at.map(rfc3339),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_debug_never_shows_the_token() {
        let c = Caller {
            token: Some("cfr_caller_secret_token"),
            ..Caller::default()
        };
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("cfr_caller_secret_token") && dbg.contains("redacted"),
            "{dbg}"
        );
    }

    fn sa(spki: Option<&str>, cn: Option<&str>, san: Option<&str>) -> ServiceAccountRow {
        ServiceAccountRow {
            id: Uuid::nil(),
            org_id: Uuid::nil(),
            name: "ci".into(),
            cidrs: String::new(),
            cert_spki_sha256: spki.map(Into::into),
            cert_subject_cn: cn.map(Into::into),
            cert_dns_san: san.map(Into::into),
            created_at: 0,
        }
    }

    #[test]
    fn certificates_match_their_spki_and_every_configured_field() {
        let cert = ClientCert {
            spki_sha256: "ab".repeat(32),
            subject_cn: Some("ci-runner".into()),
            dns_sans: vec!["ci.example.com".into()],
        };
        assert!(cert_matches(&sa(Some(&"AB".repeat(32)), None, None), &cert));
        assert!(cert_matches(
            &sa(Some(&"ab".repeat(32)), Some("ci-runner"), Some("CI.example.com")),
            &cert
        ));
        assert!(
            !cert_matches(&sa(None, Some("ci-runner"), Some("CI.example.com")), &cert),
            "a mapping without the SPKI hash is anyone's to claim: it matches nothing"
        );
        assert!(!cert_matches(
            &sa(Some(&"ab".repeat(32)), Some("ci-runner"), Some("other.example.com")),
            &cert
        ));
        assert!(!cert_matches(
            &sa(Some(&"cd".repeat(32)), Some("ci-runner"), None),
            &cert
        ));
        assert!(!cert_matches(&sa(None, Some("other"), None), &cert));
        assert!(
            !cert_matches(&sa(None, None, None), &cert),
            "an account without a certificate never matches"
        );
    }

    #[test]
    fn inputs_are_checked() {
        assert_eq!(
            check_email(" Ann@Example.COM ").ok().as_deref(),
            Some("ann@example.com")
        );
        for bad in ["", "ann", "@x", "a@", "a b@c"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_password("short").is_err());
        assert!(check_password("twelve chars").is_ok());
        assert!(parse_cidrs("10.0.0.0/8, 127.0.0.1,::1/128").is_ok_and(|v| v.len() == 3));
        assert!(parse_cidrs("").is_ok_and(|v| v.is_empty()));
        assert!(parse_cidrs("10.0.0.0/33").is_err());
        assert!(ttl_ms(Some(0)).is_err());
        assert_eq!(ttl_ms(Some(2)).ok().flatten(), Some(2000));
    }

    #[test]
    fn recovery_codes_normalize_and_base32_encodes() {
        assert_eq!(recovery_hash("ABCD-efgh-2345"), recovery_hash("abcdefgh2345"));
        assert_eq!(base32_lower(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32_lower(&[0u8; 8]).len(), 13);
    }

    #[tokio::test]
    async fn passwords_verify_and_unknown_emails_cost_a_verification() {
        let phc = hash_password(Zeroizing::new("correct horse battery".into()))
            .await
            .expect("hash");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(
            verify_password(Zeroizing::new("correct horse battery".into()), phc.clone())
                .await
                .expect("verified")
        );
        assert!(
            !verify_password(Zeroizing::new("wrong horse battery".into()), phc)
                .await
                .expect("verified")
        );
        assert!(
            dummy_hash().starts_with("$argon2id$"),
            "the dummy hash must be a real argon2id hash"
        );
        assert!(
            !verify_dummy(Zeroizing::new("coffer: no such user!".into()))
                .await
                .expect("verified")
        );
    }
}
