//! The logic of coffer: seal operations, authentication and authorization
//! (`auth.rs`, `access.rs`), user accounts (`users.rs`), organizations and secrets. No HTTP types here; handlers call one method each and map
//! [`ServiceError`] once.
//!
//! Every method that touches tenant data takes an [`Unsealed`] handle —
//! the caller and the keyring — which only authentication makes, and only
//! on an unsealed server: an operation on a sealed server cannot be
//! written. The few operations without a caller yet (login, refresh, the
//! device flow, background jobs) ask the seal for the keyring themselves.

mod access;
mod allowed_vars;
pub mod approvals;
pub mod audit;
mod auth;
pub mod backup;
pub mod breach;
mod cache;
pub mod ci_sync; // GitHub Actions / GitLab CI sync targets (issue 19)
mod cluster;
mod compare;
pub mod dbcreds; // database credentials (issue 21)
mod device;
pub mod formats;
pub mod generate_root;
mod hash_gate;
pub mod idempotency;
pub mod jobs;
pub mod jwt_auth; // JWT/OIDC workload-identity login (issue 19)
pub mod keys;
pub mod kv;
mod lifecycle;
mod limits;
mod operator;
mod orgs;
mod references;
pub mod rekey;
mod secrets;
pub mod shares;
pub mod sso; // single sign-on with OIDC (issue 20)
mod sync;
pub mod ui_session;
mod users;
pub mod values;
pub mod vault;
pub mod webhooks;
mod write_queue;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::keys::Keyring;
use crate::seal::{Seal, SealError};
use crate::storage::{Backend, StorageError};

pub use access::AccessService;
pub(crate) use access::grant_subject;
pub use access::{
    CertMatch, GrantInput, GrantView, GroupView, MemberView, OrgStanding, ServiceAccountInput, ServiceAccountView,
};
pub use allowed_vars::AllowedVarView;
pub use approvals::ApprovalService;
pub use audit::AuditService;
pub use auth::IdentityService;
pub use auth::{Caller, ClientCert, IssuedToken, Session, TokenView, TotpEnrollment, WhoAmI};
pub use compare::{CopyAction, CopyItem, CopyRequest, CopyView, DiffEntry, DiffStatus, DiffView};
pub use device::{DeviceCode, DeviceRequest};
pub use keys::KeyService;
pub use kv::KvService;
pub use lifecycle::{DeletedView, PurgedView, RestoredView};
pub use operator::OperatorService;
pub use orgs::TenantService;
pub use orgs::{BreachPolicyView, DEFAULT_MAX_ORGS_PER_USER, EnvChange, EnvView, OrgView, ProjectView};
pub use secrets::SecretService;
pub use secrets::{SecretInput, SecretView, VersionView};
pub use shares::ShareService;
pub use sync::{
    FileDiffItem, FileDiffStatus, FileDiffView, PullView, PushAction, PushItem, PushRequest, PushView, SyncInput,
};
pub use vault::VaultService;

/// Errors of the service layer. The HTTP layer maps each variant once.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The server holds no keys.
    #[error("coffer is sealed")]
    Sealed,
    /// No init ran yet.
    #[error("coffer is not initialized")]
    NotInitialized,
    /// Init ran already.
    #[error("coffer is already initialized")]
    AlreadyInitialized,
    /// No token, or an unknown or expired one.
    #[error("missing or invalid token")]
    Unauthenticated,
    /// Wrong email or password (the same answer for an unknown email).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// A JWT login's token was refused; the text names what is wrong
    /// (never the token).
    #[error("JWT refused: {0}")]
    JwtRefused(String),
    /// The password was right; the account needs a TOTP code.
    #[error("a TOTP code is required for this account")]
    TotpRequired,
    /// The TOTP or recovery code is wrong or was used already.
    #[error("invalid or already used TOTP code")]
    InvalidTotp,
    /// The organization requires single sign-on and this token's login
    /// session was no SSO login to it (`sso.rs`).
    #[error(
        "this organization requires single sign-on: sign in with `coffer login --sso --org <org>` or the dashboard's \"Sign in with\" button"
    )]
    SsoRequired,
    /// A single sign-on was refused; the message says why.
    #[error("single sign-on failed: {0}")]
    SsoFailed(String),
    /// The operation needs the person to prove themself again: the
    /// password (plus a TOTP code when enrolled), or a recent login.
    #[error("{0}")]
    PasswordRequired(&'static str),
    /// The account was disabled by an administrator.
    #[error("this account is disabled")]
    AccountDisabled,
    /// Too many failures from this source or on this account.
    #[error("too many failed attempts; retry in {retry_after_s} s")]
    RateLimited {
        /// seconds until the next attempt is considered
        retry_after_s: u64,
    },
    /// Too much expensive work at once (password hashing): nothing was
    /// checked or counted; retry shortly.
    #[error("the server is busy; retry in {retry_after_s} s")]
    Busy {
        /// seconds to wait before retrying
        retry_after_s: u64,
    },
    /// The token is bound to a client certificate this connection lacks.
    #[error("this token is bound to a client certificate; present it")]
    CertificateRequired,
    /// The service account may not be used from this address.
    #[error("the service account is not allowed from this source address")]
    SourceNotAllowed,
    /// An RFC 8628 device-flow state: `authorization_pending`, `slow_down`,
    /// `expired_token`, `access_denied`.
    #[error("{0}")]
    DeviceFlow(&'static str),
    /// The token may not do this.
    #[error("permission denied")]
    PermissionDenied,
    /// A protected environment's approval policy withholds this
    /// permission until a second person approves (`approvals.rs`).
    #[error(
        "{0} on this protected environment needs approval: ask with `coffer approvals request`, or break glass with a reason"
    )]
    ApprovalRequired(&'static str),
    /// The change was not made: a request for approval was created instead.
    #[error("approval required: change request {0} is pending; follow it with `coffer approvals show {0}`")]
    ApprovalPending(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A field of the request is invalid; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// A configured quota is used up; the message names it and its key.
    #[error("{0}")]
    LimitExceeded(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Well-formed, but refused for what it asks (422): an idempotency key
    /// reused for another request, a password found in a breach corpus.
    /// The code is machine-readable, the message names the reason.
    #[error("{1}")]
    Unprocessable(&'static str, String),
    /// An unseal share was rejected (malformed, duplicate, or the set was wrong).
    #[error("{0}")]
    Unseal(String),
    /// A stored ciphertext or wrapped key did not authenticate.
    #[error("decryption failed for secret {key} version {version}")]
    Decryption {
        /// secret key
        key: String,
        /// version number
        version: i64,
    },
    /// The audit record of a request could not be committed, so the
    /// request was not served (fail closed).
    #[error("{0}")]
    AuditUnavailable(String),
    /// Storage failed; details go to the log, not to the client.
    #[error("storage error")]
    Storage(#[source] StorageError),
    /// Anything else internal (memory locking, corrupt keyring).
    #[error("internal error")]
    Internal(String),
}

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Conflict(what) => ServiceError::Conflict(what.to_owned()),
            StorageError::AlreadyInitialized => ServiceError::AlreadyInitialized,
            other => ServiceError::Storage(other),
        }
    }
}

impl From<SealError> for ServiceError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::NotInitialized => ServiceError::NotInitialized,
            SealError::AlreadyInitialized => ServiceError::AlreadyInitialized,
            SealError::Sealed => ServiceError::Sealed,
            SealError::BadShare(_) | SealError::WrongShares => ServiceError::Unseal(e.to_string()),
            SealError::InvalidConfig(msg) | SealError::Refused(msg) => ServiceError::Invalid(msg),
            SealError::Hsm(_) => ServiceError::Internal(e.to_string()),
            SealError::Memory(m) => ServiceError::Internal(m.to_string()),
            SealError::Storage(s) => s.into(),
        }
    }
}

/// Result alias of this layer.
pub type Result<T> = std::result::Result<T, ServiceError>;

/// What kind of principal is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// the root token (and tokens root created): may do everything
    Root,
    /// a user account
    User(Uuid),
    /// a service account of one organization
    ServiceAccount {
        /// account id
        id: Uuid,
        /// its organization
        org_id: Uuid,
    },
}

impl PrincipalKind {
    /// Wire name, also stored in `tokens.policy`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PrincipalKind::Root => "root",
            PrincipalKind::User(_) => "user",
            PrincipalKind::ServiceAccount { .. } => "service_account",
        }
    }
}

/// Who is calling, after authentication.
#[derive(Debug, Clone)]
pub struct Principal {
    /// public token accessor (goes into `created_by` and logs)
    pub accessor: String,
    /// root, user or service account
    pub kind: PrincipalKind,
    /// email, service-account name or "root"
    pub name: String,
    /// unix ms; None = no expiry
    pub expires_at: Option<i64>,
    /// login session of a user's access token
    pub family_id: Option<String>,
    /// hex SHA-256 of the SPKI of the client certificate the caller is
    /// bound to (a bound token, or a certificate-only login)
    pub bound_spki: Option<String>,
    /// authenticated by its client certificate alone (no token)
    pub certificate_only: bool,
    /// unix ms of the password login behind the token (None: no login)
    pub authenticated_at: Option<i64>,
    /// a Vault `default`-policy token: it may only look itself up, renew
    /// and revoke itself ([`Coffer::authenticate`] refuses it everywhere else)
    pub self_only: bool,
}

impl Principal {
    fn require_root(&self) -> Result<()> {
        if self.kind == PrincipalKind::Root {
            Ok(())
        } else {
            Err(ServiceError::PermissionDenied)
        }
    }

    /// Id of the user or service account (nil for root): the key of the
    /// per-principal caches.
    fn id(&self) -> Uuid {
        match self.kind {
            PrincipalKind::Root => Uuid::nil(),
            PrincipalKind::User(id) | PrincipalKind::ServiceAccount { id, .. } => id,
        }
    }
}

/// An authenticated caller on an unsealed server: the principal and the
/// keyring authentication found. Every tenant operation takes one, and only
/// [`Coffer::authenticate`] (which refuses on a sealed server) makes one, so
/// an operation that touches tenant data on a sealed server cannot be
/// written. It derefs to the [`Principal`]. A request holds the keyring for
/// its own duration only; sealing drops the server's reference at once.
#[derive(Clone)]
pub struct Unsealed {
    principal: Principal,
    keyring: Arc<Keyring>,
}

impl Unsealed {
    /// The same caller acting with a different principal (a derived token's
    /// narrower policy).
    fn with_principal(&self, principal: Principal) -> Unsealed {
        Unsealed {
            principal,
            keyring: self.keyring.clone(),
        }
    }

    /// The keys this request works with.
    fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }
}

impl std::ops::Deref for Unsealed {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl std::fmt::Debug for Unsealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsealed")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// What init returns, once.
pub struct InitResult {
    /// shares, hex-encoded (Vault's `keys`)
    pub keys_hex: Vec<Zeroizing<String>>,
    /// shares, base64-encoded (Vault's `keys_base64`)
    pub keys_base64: Vec<Zeroizing<String>>,
    /// the root token
    pub root_token: Zeroizing<String>,
}

impl std::fmt::Debug for InitResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitResult")
            .field("shares", &self.keys_hex.len())
            .finish_non_exhaustive()
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// RFC 3339 of a unix-millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| ServiceError::Internal("OS random number generator failed".into()))?;
    Ok(b)
}

/// The `[orgs]` settings the services apply.
#[derive(Debug, Clone, Copy)]
pub struct OrgSettings {
    /// organizations one user may create (root is exempt)
    pub max_per_user: u64,
    /// how long a deleted organization, project or environment stays
    /// restorable before the purge job erases it
    pub deletion_window: std::time::Duration,
}

impl Default for OrgSettings {
    fn default() -> Self {
        OrgSettings {
            max_per_user: DEFAULT_MAX_ORGS_PER_USER,
            deletion_window: crate::config::DEFAULT_DELETION_WINDOW,
        }
    }
}

/// The server's runtime state every service shares: the seal, the hot
/// caches, the abuse limits, the audit writer, the write turns, and the
/// store for what is no aggregate's (cluster messages, cache drops).
#[derive(Debug)]
pub(crate) struct Shared {
    seal: Arc<Seal>,
    cache: cache::HotCache,
    limits: limits::Limits,
    auditor: Arc<audit::Auditor>,
    /// writers of one secret take turns (`write_queue.rs`)
    writes: write_queue::WriteQueue,
    /// organizations one user may create (`[orgs] max_per_user`; root is exempt)
    max_orgs_per_user: u64,
    /// how long a deleted tenant node stays restorable (`[orgs] deletion_window_s`)
    deletion_window_ms: i64,
    /// the leaked-password check (`[breach_check]`; off until configured)
    breach: std::sync::RwLock<Arc<breach::BreachChecker>>,
    /// environment writes, for the CI sync queue (`ci_sync.rs`)
    ci_sync_writes: ci_sync::WriteSignal,
    store: Arc<dyn Backend>,
}

impl Shared {
    /// The keyring, for operations that have no [`Unsealed`] handle yet
    /// (authentication itself, login, refresh, the device flow, jobs).
    fn keyring(&self) -> Result<Arc<Keyring>> {
        Ok(self.seal.keyring()?)
    }

    /// `Sealed` / `NotInitialized` unless the server holds its keys.
    fn require_unsealed(&self) -> Result<()> {
        self.keyring().map(drop)
    }

    fn drop_caches(&self) {
        self.cache.clear();
        self.store.drop_caches();
    }

    /// Refuse a new user password found in the breach corpus (fails open:
    /// an unanswered check accepts it, see `breach.rs`).
    async fn refuse_breached_password(&self, password: &str) -> Result<()> {
        match self.breach().check(password).await {
            breach::Verdict::Breached(n) => Err(ServiceError::Unprocessable(
                "breached_password",
                format!(
                    "this password appears in a public breach corpus (Have I Been Pwned: seen {n} times); \
                     choose another one"
                ),
            )),
            breach::Verdict::Clean | breach::Verdict::Unchecked => Ok(()),
        }
    }

    /// The leaked-password checker in force.
    fn breach(&self) -> Arc<breach::BreachChecker> {
        self.breach
            .read()
            .map(|b| b.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

/// The services, held by the HTTP layer's state and by `--dev`. Each
/// service holds the store traits it uses (one backend, seen through the
/// aggregate it touches) and the services it calls, with no cycle: access
/// is called by tenants, identity, secrets, kv, audit and vault; kv calls
/// secrets and tenants; vault calls identity.
#[derive(Debug, Clone)]
pub struct Coffer {
    /// init, unseal, seal, rekey, generate-root, backup
    pub operator: OperatorService,
    /// authentication, tokens, logins, the device flow, user accounts
    pub identity: IdentityService,
    /// organizations, projects, environments
    pub tenants: TenantService,
    /// who may do what: members, groups, service accounts, grants
    pub access: AccessService,
    /// secrets, versions, inject
    pub secrets: SecretService,
    /// protected environments: approval policies, requests, break-glass
    pub approvals: ApprovalService,
    /// signed webhooks of approval steps and their delivery queue
    pub webhooks: webhooks::WebhookService,
    /// JWT/OIDC workload-identity login (issue 19)
    pub jwt: jwt_auth::JwtAuthService,
    /// CI sync targets (GitHub Actions, GitLab CI/CD) and their job queue
    pub ci_sync: ci_sync::CiSyncService,
    /// Vault's KV v2 engine
    pub kv: KvService,
    /// organization KEKs: rotate, rewrap, destroy
    pub keys: KeyService,
    /// the audit trail: query, verify, export
    pub audit: AuditService,
    /// Vault's token and auth wire
    pub vault: VaultService,
    /// the dashboard's browser sessions (in this process)
    pub ui_sessions: ui_session::UiSessions,
    /// one-time share links (client-side encrypted)
    pub shares: ShareService,
    /// `Idempotency-Key` claims and first answers of the native API
    pub idempotency: idempotency::IdempotencyService,
    /// database credentials: connections, dynamic leases, static rotation
    pub dbcreds: dbcreds::DbCredsService,
    /// single sign-on with OIDC
    pub sso: sso::SsoService,
    shared: Arc<Shared>,
}

impl Coffer {
    /// Boot: load the seal state from storage.
    pub async fn load(store: Arc<dyn Backend>) -> Result<Coffer> {
        Self::load_with_seal(store, None, audit::AuditSettings::default(), OrgSettings::default()).await
    }

    /// Boot with a `seal "pkcs11"` wrapper (the HSM), if configured, and
    /// start the audit writer; `orgs` is the `[orgs]` section.
    pub async fn load_with_seal(
        store: Arc<dyn Backend>,
        wrapper: Option<Arc<dyn crate::seal::RootWrapper>>,
        audit_settings: audit::AuditSettings,
        orgs: OrgSettings,
    ) -> Result<Coffer> {
        let seal = Arc::new(Seal::load(store.clone(), wrapper).await?);
        let auditor = audit::Auditor::start(store.clone(), store.kind(), audit_settings);
        let shared = Arc::new(Shared {
            seal,
            cache: cache::HotCache::new(),
            limits: limits::Limits::default(),
            auditor,
            writes: write_queue::WriteQueue::new(),
            max_orgs_per_user: orgs.max_per_user,
            deletion_window_ms: i64::try_from(orgs.deletion_window.as_millis()).unwrap_or(i64::MAX),
            breach: std::sync::RwLock::new(Arc::new(breach::BreachChecker::default())),
            ci_sync_writes: ci_sync::WriteSignal::default(),
            store: store.clone(),
        });
        let access = AccessService {
            shared: shared.clone(),
            access_store: store.clone(),
            tenant_store: store.clone(),
            identity_store: store.clone(),
            env_var_store: store.clone(),
            approval_store: store.clone(),
        };
        let tenants = TenantService {
            shared: shared.clone(),
            tenant_store: store.clone(),
            access_store: store.clone(),
            breach_store: store.clone(),
            access: access.clone(),
        };
        let identity = IdentityService {
            shared: shared.clone(),
            identity_store: store.clone(),
            tenant_store: store.clone(),
            access_store: store.clone(),
            access: access.clone(),
        };
        let webhooks = webhooks::WebhookService::new(
            (store.clone(), store.clone(), store.clone()),
            access.clone(),
            shared.clone(),
        );
        webhooks.listen_for_signals(&shared.auditor);
        let jwt = jwt_auth::JwtAuthService::new(
            shared.clone(),
            store.clone(),
            store.clone(),
            store.clone(),
            store.clone(),
            access.clone(),
        );
        let secrets = SecretService {
            shared: shared.clone(),
            webhooks: webhooks.clone(),
            secret_store: store.clone(),
            tenant_store: store.clone(),
            breach_store: store.clone(),
            access: access.clone(),
            approval_store: store.clone(),
        };
        let approvals = ApprovalService {
            shared: shared.clone(),
            store: store.clone(),
            tenant_store: store.clone(),
            access_store: store.clone(),
            secret_store: store.clone(),
            access: access.clone(),
            secrets: secrets.clone(),
        };
        let ci_stores = ci_sync::CiSyncStores {
            ci: store.clone(),
            secrets: store.clone(),
            tenants: store.clone(),
        };
        let ci_sync = ci_sync::CiSyncService::new(shared.clone(), ci_stores, access.clone(), secrets.clone());
        let kv = KvService {
            shared: shared.clone(),
            kv_store: store.clone(),
            secret_store: store.clone(),
            access: access.clone(),
            secrets: secrets.clone(),
            tenants: tenants.clone(),
        };
        let audit = AuditService {
            shared: shared.clone(),
            audit_store: store.clone(),
            access: access.clone(),
        };
        let vault = VaultService {
            shared: shared.clone(),
            identity_store: store.clone(),
            identity: identity.clone(),
            access: access.clone(),
        };
        let shares = ShareService {
            shared: shared.clone(),
            share_store: store.clone(),
            tenant_store: store.clone(),
            access: access.clone(),
        };
        let idempotency = idempotency::IdempotencyService { store: store.clone() };
        let dbcreds = dbcreds::DbCredsService {
            shared: shared.clone(),
            store: store.clone(),
            access: access.clone(),
            secrets: secrets.clone(),
            audit: audit.clone(),
        };
        let sso_stores = sso::SsoStores {
            sso: store.clone(),
            tenants: store.clone(),
            keys: store.clone(),
            identity: store.clone(),
            access: store.clone(),
        };
        let sso = sso::SsoService::new(shared.clone(), sso_stores, access.clone(), identity.clone());
        let keys = KeyService {
            shared: shared.clone(),
            key_store: store.clone(),
            tenant_store: store.clone(),
            webhooks: webhooks.clone(),
            ci_sync: ci_sync.clone(),
            sso: sso.clone(),
            dbcreds: dbcreds.clone(),
        };
        let operator = OperatorService {
            shared: shared.clone(),
            store,
        };
        Ok(Coffer {
            operator,
            identity,
            tenants,
            access,
            secrets,
            approvals,
            webhooks,
            jwt,
            ci_sync,
            kv,
            keys,
            audit,
            vault,
            ui_sessions: ui_session::UiSessions::default(),
            shares,
            idempotency,
            dbcreds,
            sso,
            shared,
        })
    }

    /// Turn on (or change) the leaked-password check (`[breach_check]`).
    pub fn configure_breach_check(&self, settings: breach::BreachSettings) {
        let checker = Arc::new(breach::BreachChecker::new(settings));
        match self.shared.breach.write() {
            Ok(mut b) => *b = checker,
            Err(p) => *p.into_inner() = checker,
        }
    }

    /// PostgreSQL: listen for other servers' cluster messages (nothing on SQLite).
    pub fn spawn_cluster_listener(&self) {
        self.shared.spawn_cluster_listener();
    }
}
