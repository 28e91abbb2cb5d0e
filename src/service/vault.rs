//! Vault's token and login endpoints over coffer's identities: what
//! `auth/token/*`, `auth/userpass/login/*` and `auth/cert/login` answer.
//! No HTTP types here.
//!
//! A coffer token acts as its principal (same grants). Vault "policies" are
//! shown as `root` for root, `default` + [`GRANTS_POLICY`] for users and
//! service accounts, and `default` alone for a self-only token, which (as
//! Vault's `default` policy) may only look itself up, renew and revoke
//! itself. A child token never carries more than its parent and never
//! outlives it; a policy set coffer cannot express is refused.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use zeroize::Zeroizing;

use super::{ClientCert, IssuedToken, Principal, PrincipalKind, Result, ServiceError, Unsealed, auth, now_ms, rfc3339};
use crate::access::{PermSet, Permission};
use crate::storage::TokenRow;

/// Lifetime of a token handed out by `auth/cert/login`.
const CERT_LOGIN_TTL_S: u64 = 3600;

/// Vault's `auth/token/lookup*` data. Its Debug leaves out `id` (the token).
#[derive(Serialize)]
pub struct TokenInfo {
    /// public accessor
    pub accessor: String,
    /// unix seconds
    pub creation_time: i64,
    /// seconds; 0 = no expiry
    pub creation_ttl: i64,
    /// the token's label
    pub display_name: String,
    /// no identity entities in coffer
    pub entity_id: String,
    /// RFC 3339 or null
    pub expire_time: Option<String>,
    /// 0
    pub explicit_max_ttl: i64,
    /// the token itself on lookup-self (the caller holds it); "" otherwise
    pub id: String,
    /// empty
    pub identity_policies: Vec<String>,
    /// RFC 3339
    pub issue_time: String,
    /// the coffer principal behind the token
    pub meta: std::collections::BTreeMap<String, String>,
    /// 0 = unlimited
    pub num_uses: i64,
    /// not derived from another token (a derived one dies with its parent)
    pub orphan: bool,
    /// the path that made it, as far as coffer records it: see [`token_path`]
    pub path: String,
    /// `root` or `default`
    pub policies: Vec<String>,
    /// coffer tokens keep their expiry
    pub renewable: bool,
    /// seconds left; 0 = no expiry
    pub ttl: i64,
    /// "service"
    #[serde(rename = "type")]
    pub token_type: &'static str,
}

impl std::fmt::Debug for TokenInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenInfo")
            .field("accessor", &self.accessor)
            .field("display_name", &self.display_name)
            .field("policies", &self.policies)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A freshly issued token, as Vault's `auth` block shows it. Its Debug
/// leaves out the token.
pub struct VaultLogin {
    /// the token, once
    pub token: Zeroizing<String>,
    /// public accessor
    pub accessor: String,
    /// `root` or `default`
    pub policies: Vec<String>,
    /// seconds; 0 = no expiry
    pub lease_duration: i64,
    /// the principal behind it
    pub metadata: std::collections::BTreeMap<String, String>,
    /// not derived from another token
    pub orphan: bool,
}

impl std::fmt::Debug for VaultLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultLogin")
            .field("accessor", &self.accessor)
            .field("policies", &self.policies)
            .field("lease_duration", &self.lease_duration)
            .finish_non_exhaustive()
    }
}

/// Vault's name for the policy every token has: look itself up, renew and
/// revoke itself; alone, it is all a token may do.
const DEFAULT_POLICY: &str = "default";
/// The policy name of a user's or service account's own grants.
pub const GRANTS_POLICY: &str = "coffer-grants";

/// The Vault policy names of a token of `kind` (`self_only`: a `default`
/// token).
pub fn policies(kind: PrincipalKind, self_only: bool) -> Vec<String> {
    let names: &[&str] = match (self_only, kind) {
        (true, _) => &[DEFAULT_POLICY],
        (false, PrincipalKind::Root) => &["root"],
        (false, _) => &[DEFAULT_POLICY, GRANTS_POLICY],
    };
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Whether a child asked for with `asked` policies is self-only, or the
/// caller's full token; `Err` for a set coffer cannot express (a name the
/// caller does not hold, or one coffer does not know). An empty set, as in
/// Vault, means the parent's.
fn child_is_self_only(who: &Principal, asked: &[String]) -> Result<bool> {
    let own = policies(who.kind, who.self_only);
    if let Some(p) = asked.iter().find(|p| !own.contains(p) && p.as_str() != DEFAULT_POLICY) {
        return Err(ServiceError::Invalid(format!(
            "policy {p:?} is not one of this token's ({}): a coffer child token carries its parent's grants, \
             or only \"{DEFAULT_POLICY}\" (look itself up, renew, revoke itself)",
            own.join(", ")
        )));
    }
    Ok(!asked.is_empty() && asked.iter().all(|p| p == DEFAULT_POLICY))
}

fn meta(kind: PrincipalKind, name: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("coffer_kind".to_owned(), kind.as_str().to_owned()),
        ("coffer_name".to_owned(), name.to_owned()),
    ]
    .into()
}

fn ttl_left(expires_at: Option<i64>) -> i64 {
    expires_at.map_or(0, |t| ((t - now_ms()) / 1000).max(0))
}

/// The path Vault would show as a token's origin, from what coffer records:
/// `auth/token/create` for a token derived from another, `auth/token/root`
/// for a root token (init or generate-root), `auth/userpass/login/<email>`
/// for a login session's own token, `auth/cert/login` for a caller known by
/// its certificate alone (no stored token), else `auth/token/create` (coffer
/// does not record whether an underived service-account token came from
/// `auth/cert/login` or an admin).
fn token_path(row: Option<&TokenRow>, kind: PrincipalKind) -> String {
    match row {
        None => "auth/cert/login".to_owned(),
        Some(r) if r.parent_accessor.is_some() => "auth/token/create".to_owned(),
        Some(_) if kind == PrincipalKind::Root => "auth/token/root".to_owned(),
        Some(r) if matches!(kind, PrincipalKind::User(_)) && r.family_id.is_some() => {
            format!("auth/userpass/login/{}", r.display_name)
        }
        Some(_) => "auth/token/create".to_owned(),
    }
}

fn info(row: Option<&TokenRow>, who_kind: PrincipalKind, who: &Principal, id: String) -> TokenInfo {
    let created = row.map_or(0, |r| r.created_at);
    let expires = row.map_or(who.expires_at, |r| r.expires_at);
    TokenInfo {
        accessor: row.map_or_else(|| who.accessor.clone(), |r| r.accessor.clone()),
        creation_time: created / 1000,
        creation_ttl: expires.map_or(0, |e| ((e - created) / 1000).max(0)),
        display_name: row.map_or_else(|| who.name.clone(), |r| r.display_name.clone()),
        entity_id: String::new(),
        expire_time: expires.map(rfc3339),
        explicit_max_ttl: 0,
        id,
        identity_policies: Vec::new(),
        issue_time: rfc3339(created),
        meta: meta(who_kind, &who.name),
        num_uses: 0,
        orphan: row.is_none_or(|r| r.parent_accessor.is_none()),
        path: token_path(row, who_kind),
        policies: policies(who_kind, who.self_only),
        renewable: false,
        ttl: ttl_left(expires),
        token_type: "service",
    }
}

/// Parse a Vault TTL: whole seconds, or a Go-style duration such as
/// `90s`, `15m`, `1h`, `1h30m`, `7d`.
pub fn parse_ttl(s: &str) -> Result<u64> {
    let bad = || {
        ServiceError::Invalid(format!(
            "ttl {s:?} is not a duration such as 3600, 90s, 15m, 1h or 1h30m"
        ))
    };
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let (mut total, mut num) = (0u64, String::new());
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = total
            .checked_add(n.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || s.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// The principal a stored token stands for, as its owner (`name`: the
/// token's label).
fn owner(row: &TokenRow) -> Result<Principal> {
    let (policy, self_only) = auth::split_policy(&row.policy);
    let kind = match (policy, row.principal_id, row.org_id) {
        ("root", _, _) => PrincipalKind::Root,
        ("service_account", Some(id), Some(org_id)) => PrincipalKind::ServiceAccount { id, org_id },
        ("user", Some(id), _) => PrincipalKind::User(id),
        _ => {
            return Err(ServiceError::Internal(format!(
                "token {} has an unknown kind",
                row.accessor
            )));
        }
    };
    Ok(Principal {
        accessor: row.accessor.clone(),
        kind,
        name: row.display_name.clone(),
        expires_at: row.expires_at,
        family_id: row.family_id.clone(),
        bound_spki: row.bound_spki.clone(),
        certificate_only: false,
        authenticated_at: row.auth_at,
        self_only,
    })
}

/// Lookup data of a stored token; `id` is the token when the caller sent it.
fn token_info(row: &TokenRow, id: String) -> Result<TokenInfo> {
    let owner = owner(row)?;
    Ok(info(Some(row), owner.kind, &owner, id))
}

/// A renewal's `auth` block: what is left of the token's life.
fn renewal(row: &TokenRow, token: Zeroizing<String>) -> Result<VaultLogin> {
    let owner = owner(row)?;
    Ok(VaultLogin {
        token,
        accessor: row.accessor.clone(),
        policies: policies(owner.kind, owner.self_only),
        lease_duration: ttl_left(row.expires_at),
        metadata: meta(owner.kind, &owner.name),
        orphan: row.parent_accessor.is_none(),
    })
}

/// Vault's answer to an accessor that is unknown (or not the caller's).
fn bad_accessor(accessor: &str) -> ServiceError {
    ServiceError::Invalid(format!("accessor {accessor:?} is invalid or not yours"))
}

/// Vault's token and auth wire over coffer's identities.
#[derive(Debug, Clone)]
pub struct VaultService {
    pub(super) shared: Arc<super::Shared>,
    pub(super) identity_store: Arc<dyn crate::storage::IdentityStore>,
    pub(super) identity: crate::service::IdentityService,
    pub(super) access: crate::service::AccessService,
}

impl VaultService {
    /// `auth/token/lookup-self`; `token` is the caller's own token, echoed
    /// as `id` as Vault does.
    pub async fn vault_lookup_self(&self, who: &Unsealed, token: &str) -> Result<TokenInfo> {
        let row = self.identity_store.token_by_accessor(&who.accessor).await?;
        Ok(info(row.as_ref(), who.kind, who, token.to_owned()))
    }

    /// `auth/token/lookup` `{token}`: a token the caller may manage
    /// ([`IdentityService::may_manage_token`]), with `id` = the token. Any other
    /// (unknown, expired, someone else's) is 403, as Vault answers an unknown
    /// token: no existence oracle.
    pub async fn vault_lookup_token(&self, who: &Unsealed, token: &str) -> Result<TokenInfo> {
        let row = self.identity.token_row(token).await?;
        let row = self.managed(who, row).await?.ok_or(ServiceError::PermissionDenied)?;
        token_info(&row, token.to_owned())
    }

    /// `auth/token/lookup-accessor`: the same by accessor; any other
    /// accessor is 400, as Vault answers an unknown one.
    pub async fn vault_lookup_accessor(&self, who: &Unsealed, accessor: &str) -> Result<TokenInfo> {
        let row = self.identity_store.token_by_accessor(accessor).await?;
        let row = self.managed(who, row).await?.ok_or_else(|| bad_accessor(accessor))?;
        token_info(&row, String::new())
    }

    /// `auth/token/renew` `{token}`: what is left of the token's life (coffer
    /// tokens keep their expiry); any other token is Vault's 400 `token not
    /// found`.
    pub async fn vault_renew_token(&self, who: &Unsealed, token: &str) -> Result<VaultLogin> {
        if token.is_empty() {
            return Err(ServiceError::Invalid("missing token ID".into()));
        }
        let row = self.identity.token_row(token).await?;
        let row = self
            .managed(who, row)
            .await?
            .ok_or_else(|| ServiceError::Invalid("token not found".into()))?;
        renewal(&row, Zeroizing::new(token.to_owned()))
    }

    /// `auth/token/renew-accessor`: the same by accessor, with an empty
    /// `client_token` as Vault answers.
    pub async fn vault_renew_accessor(&self, who: &Unsealed, accessor: &str) -> Result<VaultLogin> {
        let row = self.identity_store.token_by_accessor(accessor).await?;
        let row = self.managed(who, row).await?.ok_or_else(|| bad_accessor(accessor))?;
        renewal(&row, Zeroizing::new(String::new()))
    }

    /// `auth/token/revoke` `{token}`: revokes the token and every token
    /// derived from it ([`IdentityService::revoke_token`]'s rules). `false` when
    /// there was no token the caller may revoke (unknown, or someone
    /// else's: the same answer).
    pub async fn vault_revoke_token(&self, who: &Unsealed, token: &str) -> Result<bool> {
        if token.is_empty() {
            return Err(ServiceError::Invalid("missing token ID".into()));
        }
        match self.identity.token_row(token).await? {
            Some(row) => self.vault_revoke_accessor(who, &row.accessor).await,
            None => Ok(false),
        }
    }

    /// `auth/token/revoke-accessor`: the same by accessor.
    pub async fn vault_revoke_accessor(&self, who: &Unsealed, accessor: &str) -> Result<bool> {
        if accessor.is_empty() {
            return Err(ServiceError::Invalid("missing accessor".into()));
        }
        match self.identity.revoke_token(who, accessor).await {
            Ok(()) => Ok(true),
            Err(ServiceError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `row` if it is alive and `who` may manage it.
    async fn managed(&self, who: &Unsealed, row: Option<TokenRow>) -> Result<Option<TokenRow>> {
        match row {
            Some(r) if r.expires_at.is_none_or(|t| t > now_ms()) && self.identity.may_manage_token(who, &r).await? => {
                Ok(Some(r))
            }
            _ => Ok(None),
        }
    }

    /// `auth/token/create`: a child acting as the caller (its grants, no
    /// more), expiring no later than the caller's token. `policies` may
    /// name the caller's own policies (or none: the same), or `default`
    /// alone for a self-only token; anything else is refused.
    pub async fn vault_create_token(
        &self,
        who: &Unsealed,
        display_name: &str,
        ttl: Option<&str>,
        asked_policies: &[String],
    ) -> Result<VaultLogin> {
        let self_only = who.self_only || child_is_self_only(who, asked_policies)?;
        let parent = who.with_principal(Principal {
            self_only,
            ..(**who).clone()
        });
        let ttl = ttl
            .filter(|t| !t.is_empty())
            .map(parse_ttl)
            .transpose()?
            .filter(|t| *t > 0);
        let name = if display_name.is_empty() { "token" } else { display_name };
        let issued: IssuedToken = self.identity.create_token(&parent, name, ttl, None, false).await?;
        let row = self.identity_store.token_by_accessor(&issued.accessor).await?;
        Ok(VaultLogin {
            token: issued.token,
            accessor: issued.accessor,
            policies: policies(who.kind, self_only),
            lease_duration: ttl_left(row.as_ref().and_then(|r| r.expires_at)),
            metadata: meta(who.kind, &who.name),
            orphan: row.is_none_or(|r| r.parent_accessor.is_none()),
        })
    }

    /// `auth/token/renew-self`: coffer tokens keep their expiry; this
    /// answers what is left of it.
    pub async fn vault_renew_self(&self, who: &Unsealed, token: &str) -> Result<VaultLogin> {
        let row = self.identity_store.token_by_accessor(&who.accessor).await?;
        Ok(VaultLogin {
            token: Zeroizing::new(token.to_owned()),
            accessor: who.accessor.clone(),
            policies: policies(who.kind, who.self_only),
            lease_duration: ttl_left(who.expires_at),
            metadata: meta(who.kind, &who.name),
            orphan: row.is_none_or(|r| r.parent_accessor.is_none()),
        })
    }

    /// `auth/userpass/login/<user>`: a coffer user login; TOTP from Vault's
    /// MFA header or the `totp` field.
    pub async fn vault_userpass_login(
        &self,
        source: Option<IpAddr>,
        user: &str,
        password: Zeroizing<String>,
        totp: Option<&str>,
    ) -> Result<VaultLogin> {
        let session = self
            .identity
            .login(source, user, password, totp, None)
            .await
            .map_err(|e| match e {
                ServiceError::TotpRequired => ServiceError::Invalid(
                    "this account requires a TOTP code: send it in the X-Vault-MFA header (\"totp:123456\") \
                 or as the \"totp\" field of the login body"
                        .into(),
                ),
                other => other,
            })?;
        let row = self.identity_store.token_by_accessor(&session.accessor).await?;
        let (kind, name) = match row.as_ref().and_then(|r| r.principal_id) {
            Some(id) => (PrincipalKind::User(id), user.trim().to_ascii_lowercase()),
            None => return Err(ServiceError::Internal("login token without a user".into())),
        };
        Ok(VaultLogin {
            token: session.access_token,
            accessor: session.accessor,
            policies: policies(kind, false),
            lease_duration: session.expires_in,
            metadata: meta(kind, &name),
            orphan: true,
        })
    }

    /// `auth/cert/login`: the service account the client certificate maps
    /// to gets a token bound to that certificate, for one hour.
    pub async fn vault_cert_login(&self, source: Option<IpAddr>, cert: Option<&ClientCert>) -> Result<VaultLogin> {
        let cert = cert.ok_or_else(|| {
            ServiceError::Invalid("auth/cert/login needs a client certificate on a mutual-TLS connection".into())
        })?;
        let caller = auth::Caller {
            token: None,
            source,
            cert: Some(cert),
            org_hint: None,
        };
        let who = self.identity.authenticate(&caller).await?;
        if !matches!(who.kind, PrincipalKind::ServiceAccount { .. }) {
            return Err(ServiceError::PermissionDenied);
        }
        let expires = now_ms() + (CERT_LOGIN_TTL_S as i64) * 1000;
        let issued = auth::issue_token(
            &*self.identity_store,
            who.kind,
            &who.name,
            Some(expires),
            Some(cert.spki_sha256.clone()),
            auth::Lineage::default(),
            false,
        )
        .await?;
        Ok(VaultLogin {
            token: issued.token,
            accessor: issued.accessor,
            policies: policies(who.kind, false),
            lease_duration: CERT_LOGIN_TTL_S as i64,
            metadata: meta(who.kind, &who.name),
            orphan: true,
        })
    }
}

/// The capability `sys/capabilities-self` answers for a path the caller
/// may do nothing on.
const DENY: &str = "deny";

/// Most paths one `sys/capabilities-self` call may ask about.
const MAX_CAPABILITY_PATHS: usize = 100;

/// What every token may do on its own token paths (Vault's `default`
/// policy), and what a token with grants may do on the other token and
/// mount-table paths coffer serves to any token.
fn fixed_capabilities(path: &str, self_only: bool) -> Option<&'static [&'static str]> {
    let caps: &[&str] = match path {
        "auth/token/lookup-self" => &["read", "update"],
        "auth/token/renew-self" | "auth/token/revoke-self" | "sys/capabilities-self" => &["update"],
        _ if self_only => return None,
        "auth/token/create"
        | "auth/token/lookup"
        | "auth/token/lookup-accessor"
        | "auth/token/renew"
        | "auth/token/renew-accessor"
        | "auth/token/revoke"
        | "auth/token/revoke-accessor" => &["update"],
        "sys/mounts" | "sys/auth" | "secret/config" => &["read"],
        p if p.starts_with("sys/internal/ui/mounts/")
            || p == "sys/mounts/secret"
            || p.starts_with("sys/mounts/secret/") =>
        {
            &["read"]
        }
        _ => return None,
    };
    Some(caps)
}

/// The Vault capabilities a set of coffer permissions gives on one
/// operation of the `secret/` mount (`op`: data, metadata, subkeys,
/// delete, undelete, destroy) for a key.
fn kv_key_capabilities(op: &str, perms: PermSet) -> Vec<&'static str> {
    let has = |p: Permission| perms.has(p);
    let mut caps = Vec::new();
    match op {
        "data" => {
            if has(Permission::Reveal) {
                caps.push("read");
            }
            if has(Permission::Create) {
                caps.push("create");
            }
            if has(Permission::Update) {
                caps.push("update");
            }
            if has(Permission::Reveal) && has(Permission::Update) {
                caps.push("patch");
            }
            if has(Permission::Delete) {
                caps.push("delete");
            }
        }
        "metadata" => {
            if has(Permission::Read) {
                caps.push("read");
            }
            if has(Permission::Create) {
                caps.push("create");
            }
            if has(Permission::Update) {
                caps.extend(["update", "patch"]);
            }
            if has(Permission::Delete) {
                caps.push("delete");
            }
        }
        "subkeys" if has(Permission::Reveal) => caps.push("read"),
        "delete" | "undelete" | "destroy" if has(Permission::Delete) => caps.push("update"),
        _ => {}
    }
    caps
}

/// coffer's audit log as `sys/audit` describes it.
#[derive(Debug)]
pub struct AuditDevices {
    /// false only with `[audit] enabled = false` (benchmarks): nothing recorded
    pub enabled: bool,
    /// the JSON-lines copy, when configured
    pub file: Option<String>,
    /// the syslog socket, when configured
    pub syslog: Option<String>,
}

/// `sys/key-status`, as far as coffer records it.
#[derive(Debug)]
pub struct KeyStatus {
    /// unix ms of initialization (the keyring's creation)
    pub installed_at: i64,
}

impl VaultService {
    /// `sys/capabilities-self`: per path, the Vault capabilities the caller
    /// has there, sorted as Vault sorts them; `["root"]` for root, `["deny"]`
    /// where it may do nothing. KV paths are answered from the caller's
    /// permissions on the environment ([`kv_key_capabilities`]).
    pub async fn vault_capabilities(
        &self,
        who: &Unsealed,
        paths: &[String],
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
        if paths.len() > MAX_CAPABILITY_PATHS {
            return Err(ServiceError::Invalid(format!(
                "at most {MAX_CAPABILITY_PATHS} paths per call"
            )));
        }
        let mut out = std::collections::BTreeMap::new();
        for path in paths {
            let mut caps = self.capabilities_on(who, path.trim_start_matches('/')).await?;
            caps.sort_unstable();
            caps.dedup();
            if caps.is_empty() {
                caps.push(DENY);
            }
            out.insert(path.clone(), caps.into_iter().map(str::to_owned).collect());
        }
        Ok(out)
    }

    async fn capabilities_on(&self, who: &Unsealed, path: &str) -> Result<Vec<&'static str>> {
        if who.kind == PrincipalKind::Root && !who.self_only {
            return Ok(vec!["root"]);
        }
        if let Some(caps) = fixed_capabilities(path, who.self_only) {
            return Ok(caps.to_vec());
        }
        let Some(rest) = path.strip_prefix("secret/").filter(|_| !who.self_only) else {
            return Ok(Vec::new());
        };
        let (op, below) = rest.split_once('/').unwrap_or((rest, ""));
        let parts: Vec<&str> = below.split('/').collect();
        let found = |r: Result<Vec<&'static str>>| match r {
            Err(ServiceError::NotFound(_) | ServiceError::Invalid(_)) => Ok(Vec::new()),
            other => other,
        };
        match (op, parts.as_slice()) {
            // folders: list what the caller may see
            ("data" | "metadata", [""]) => Ok(vec!["list"]),
            ("data" | "metadata", [o] | [o, ""] | [o, _] | [o, _, ""]) => {
                found(self.access.org_access(who, o).await.map(|_| vec!["list"]))
            }
            ("data" | "metadata", [o, p, e] | [o, p, e, ""]) => {
                found(self.access.env_access(who, (o, p, e)).await.map(|(path, a)| {
                    match a.perms(path.project_id, path.env_id).has(Permission::Read) {
                        true => vec!["list"],
                        false => Vec::new(),
                    }
                }))
            }
            (op, [o, p, e, k]) if !k.is_empty() => found(
                self.access
                    .env_access(who, (o, p, e))
                    .await
                    .map(|(path, a)| kv_key_capabilities(op, a.perms(path.project_id, path.env_id))),
            ),
            _ => Ok(Vec::new()),
        }
    }

    /// `sys/audit` (root): coffer's own audit log and its secondary sinks.
    pub fn vault_audit_devices(&self, who: &Unsealed) -> Result<AuditDevices> {
        who.require_root()?;
        let settings = self.shared.auditor.settings();
        let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
        Ok(AuditDevices {
            enabled: settings.enabled,
            file: path(&settings.sinks.file),
            syslog: path(&settings.sinks.syslog),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_never_shows_the_token() {
        let l = super::VaultLogin {
            token: zeroize::Zeroizing::new("cfr_secret_token".to_owned()),
            accessor: "acc".into(),
            policies: vec!["default".into()],
            lease_duration: 1,
            metadata: Default::default(),
            orphan: true,
        };
        assert!(!format!("{l:?}").contains("cfr_secret_token"));
    }

    #[test]
    fn kv_capabilities_follow_the_permissions() {
        use crate::access::{PermSet, Permission};
        let caps = |op: &str, role: &str| super::kv_key_capabilities(op, PermSet::role(role).unwrap_or_default());
        assert_eq!(caps("data", "viewer"), Vec::<&str>::new());
        assert_eq!(caps("metadata", "viewer"), ["read"]);
        assert_eq!(caps("data", "developer"), ["read", "create", "update", "patch"]);
        assert_eq!(caps("destroy", "developer"), Vec::<&str>::new());
        assert_eq!(caps("destroy", "admin"), ["update"]);
        assert_eq!(caps("subkeys", "viewer"), Vec::<&str>::new());
        let reveal: PermSet = [Permission::Reveal].into_iter().collect();
        assert_eq!(super::kv_key_capabilities("subkeys", reveal), ["read"]);
        assert_eq!(super::kv_key_capabilities("nope", PermSet::ALL), Vec::<&str>::new());
    }

    #[test]
    fn ttls() {
        assert_eq!(super::parse_ttl("3600").ok(), Some(3600));
        assert_eq!(super::parse_ttl("1h30m").ok(), Some(5400));
        assert_eq!(super::parse_ttl("7d").ok(), Some(604_800));
        assert!(super::parse_ttl("1y").is_err());
        assert!(super::parse_ttl("10").is_ok() && super::parse_ttl("h").is_err() && super::parse_ttl("5m3").is_err());
    }
}
