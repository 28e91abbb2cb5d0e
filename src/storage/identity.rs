//! Rows of the identity and access tables: users, login sessions, device
//! codes, memberships, groups, service accounts, grants. Hashes and
//! encrypted blobs only; nothing here is a usable secret.

use uuid::Uuid;

/// A user account.
#[derive(Clone)]
pub struct UserRow {
    /// id
    pub id: Uuid,
    /// lower-cased email
    pub email: String,
    /// argon2id PHC string
    pub password_hash: String,
    /// TOTP secret encrypted under the root key
    pub totp_secret: Option<Vec<u8>>,
    /// TOTP required at login
    pub totp_enabled: bool,
    /// last accepted TOTP time step (a code works once)
    pub totp_last_step: i64,
    /// consecutive failed logins
    pub failed_logins: i64,
    /// unix ms until which logins are refused
    pub locked_until: i64,
    /// unix ms
    pub created_at: i64,
    /// disabled by an administrator: no login, no token
    pub disabled: bool,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("totp_enabled", &self.totp_enabled)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A refresh token of a login session (stored by hash).
#[derive(Debug, Clone)]
pub struct RefreshRow {
    /// SHA-256 of the token
    pub token_hash: Vec<u8>,
    /// the login session
    pub family_id: String,
    /// owner
    pub user_id: Uuid,
    /// unix ms
    pub expires_at: i64,
    /// unix ms
    pub created_at: i64,
    /// unix ms of the password login that started the session
    pub auth_at: i64,
}

/// What presenting a refresh token found.
#[derive(Debug)]
pub enum RefreshUse {
    /// no such token
    Unknown,
    /// a live token, now spent
    Fresh(RefreshRow),
    /// a token spent before: stolen; its family must be revoked
    Reused(RefreshRow),
}

/// An RFC 8628 device authorization.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    /// SHA-256 of the device code
    pub device_hash: Vec<u8>,
    /// the code a user types
    pub user_code: String,
    /// the approving user
    pub user_id: Option<Uuid>,
    /// pending | approved | denied | done
    pub status: String,
    /// seconds between polls
    pub interval_s: i64,
    /// unix ms of the last poll
    pub last_poll: i64,
    /// unix ms
    pub expires_at: i64,
    /// the approver's login session, which the device's session joins
    pub family_id: Option<String>,
    /// unix ms of the approver's last proof of password
    pub auth_at: Option<i64>,
}

/// A group of users in an organization.
#[derive(Debug, Clone)]
pub struct GroupRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// slug
    pub name: String,
    /// unix ms
    pub created_at: i64,
}

/// A service account (CI identity) of an organization.
#[derive(Debug, Clone)]
pub struct ServiceAccountRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// slug
    pub name: String,
    /// allowed source networks, comma-separated; empty = anywhere
    pub cidrs: String,
    /// client certificate SPKI SHA-256 (hex) that authenticates as this account
    pub cert_spki_sha256: Option<String>,
    /// client certificate subject common name
    pub cert_subject_cn: Option<String>,
    /// client certificate DNS subject alternative name
    pub cert_dns_san: Option<String>,
    /// unix ms
    pub created_at: i64,
}

/// A grant of permissions to a subject on environments.
#[derive(Debug, Clone)]
pub struct GrantRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// user | service_account | group
    pub subject_kind: String,
    /// the subject's id
    pub subject_id: Uuid,
    /// None = every project
    pub project_id: Option<Uuid>,
    /// None = every environment of the project (or of the org)
    pub env_id: Option<Uuid>,
    /// permission bits (`access::PermSet`)
    pub permissions: i64,
    /// unix ms
    pub created_at: i64,
}
