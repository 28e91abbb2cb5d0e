//! Database credentials (issue 21, docs/database-credentials.md).
//!
//! An organization admin registers **connections** to target PostgreSQL
//! databases: the admin URL (with its password) is verified on save
//! (connect + `SELECT 1`), sealed under the organization's KEK and never
//! returned. Each connection is bound to one environment: whoever may
//! `reveal` there may take credentials from its roles.
//!
//! - **Dynamic roles** hold a creation and a revocation SQL template with
//!   `{{name}}`, `{{password}}` and `{{expiration}}`, substituted already
//!   quoted (identifier, literal, literal). Taking credentials writes a
//!   durable lease row first, then creates a PostgreSQL role with a random
//!   name and password valid for the lease TTL. Leases renew up to the
//!   role's max TTL; the `database_credentials` job (one server of a
//!   cluster) revokes expired ones: `NOLOGIN`, `pg_terminate_backend` of its
//!   sessions, then the revocation template (`REASSIGN OWNED`, `DROP
//!   OWNED`, `DROP ROLE`). A failed revocation stays active and is retried
//!   at every run.
//! - **Static roles** rotate an existing user's password on a schedule and
//!   on demand, two-phase: `ALTER ROLE … PASSWORD new`, a login with the new
//!   password (`SELECT 1`), then a new version of the role's secret (type
//!   `password`). A failed verification or commit restores the previous
//!   password from the secret's current version.
//!
//! Target connections are opened per operation with a timeout; no pool is
//! kept per connection. Passwords never reach a log, an error or an audit
//! record (database error texts are scrubbed of the password they might
//! quote).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::audit::{Actor, AuditEvent, Outcome};
use super::secrets::{SecretInput, author_of, check_key};
use super::{Principal, PrincipalKind, Result, ServiceError, Unsealed, now_ms, rfc3339};
use crate::access::Permission;
use crate::crypto::aead;
use crate::keys::Keyring;
use crate::storage::dbcreds::{DbConnectionRow, DbCredsStore, DbLeaseRow, DbRoleRow};
use crate::storage::{EnvPath, StorageError};

/// Default lease TTL of a dynamic role.
pub const DEFAULT_TTL_S: i64 = 3600;
/// Default max TTL (renewals stop there) of a dynamic role.
pub const DEFAULT_MAX_TTL_S: i64 = 24 * 3600;
/// Connecting to a target database.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One operation on a target database (connect included).
const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// Leases a listing returns at most.
const LIST_LIMIT: i64 = 500;

/// Creation template of the `read-only` default.
pub const READ_ONLY_CREATION: &str = "CREATE ROLE {{name}} WITH LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}};\n\
     GRANT SELECT ON ALL TABLES IN SCHEMA public TO {{name}};";
/// Creation template of the `read-write` default.
pub const READ_WRITE_CREATION: &str = "CREATE ROLE {{name}} WITH LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}};\n\
     GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {{name}};\n\
     GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {{name}};";
/// Default revocation template (after `NOLOGIN` and the session kill).
pub const DEFAULT_REVOCATION: &str = "REASSIGN OWNED BY {{name}} TO CURRENT_USER;\n\
     DROP OWNED BY {{name}};\n\
     DROP ROLE IF EXISTS {{name}};";

/// Metric names (described in `ops.rs`).
pub const METRIC_ACTIVE_LEASES: &str = "coffer_db_leases_active";
/// Leases created.
pub const METRIC_LEASES: &str = "coffer_db_leases_created_total";
/// Static rotations committed.
pub const METRIC_ROTATIONS: &str = "coffer_db_rotations_total";
/// Static rotations that failed (rolled back).
pub const METRIC_ROTATION_FAILURES: &str = "coffer_db_rotation_failures_total";
/// Revocations that failed (retried).
pub const METRIC_REVOCATION_FAILURES: &str = "coffer_db_revocation_failures_total";

// ---- SQL quoting and templates ----

/// A PostgreSQL identifier, double-quoted.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A PostgreSQL string literal (escape-string form when it holds a backslash).
pub fn quote_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

const PLACEHOLDERS: [&str; 3] = ["{{name}}", "{{password}}", "{{expiration}}"];

/// Check a template: known placeholders only, none inside quotes (they are
/// substituted quoted already), and `required` present.
fn check_template(what: &str, sql: &str, required: &[&str]) -> Result<()> {
    if sql.trim().is_empty() {
        return Err(ServiceError::Invalid(format!("{what} is empty")));
    }
    if sql.len() > 16 * 1024 {
        return Err(ServiceError::Invalid(format!("{what} is longer than 16 KiB")));
    }
    let mut rest = sql;
    while let Some(i) = rest.find("{{") {
        let tail = &rest[i..];
        match PLACEHOLDERS.iter().find(|p| tail.starts_with(*p)) {
            Some(p) => rest = &tail[p.len()..],
            None => {
                let end = tail.find("}}").map_or(tail.len().min(20), |e| e + 2);
                return Err(ServiceError::Invalid(format!(
                    "{what}: unknown placeholder {:?}; use {{{{name}}}}, {{{{password}}}} or {{{{expiration}}}}",
                    &tail[..end]
                )));
            }
        }
    }
    for p in PLACEHOLDERS {
        for q in ['"', '\''] {
            if sql.contains(&format!("{q}{p}")) || sql.contains(&format!("{p}{q}")) {
                return Err(ServiceError::Invalid(format!(
                    "{what}: remove the quotes around {p}; coffer substitutes it already quoted"
                )));
            }
        }
    }
    for p in required {
        if !sql.contains(p) {
            return Err(ServiceError::Invalid(format!("{what} must use {p}")));
        }
    }
    Ok(())
}

/// A template with its placeholders substituted, quoted.
fn render(sql: &str, name: &str, password: &str, expiration: &str) -> Zeroizing<String> {
    Zeroizing::new(
        sql.replace("{{name}}", &quote_ident(name))
            .replace("{{password}}", &quote_literal(password))
            .replace("{{expiration}}", &quote_literal(expiration)),
    )
}

/// `n` characters of `alphabet` from the OS RNG (rejection sampling, no bias).
fn random_string(alphabet: &[u8], n: usize) -> Result<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::with_capacity(n));
    let limit = 256 - 256 % alphabet.len();
    while out.len() < n {
        let bytes = super::random_bytes::<64>()?;
        for b in bytes {
            if usize::from(b) < limit && out.len() < n {
                out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
            }
        }
    }
    Ok(out)
}

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const MIXED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A fresh password: 32 characters of `[A-Za-z0-9]` (190 bits).
fn new_password() -> Result<Zeroizing<String>> {
    random_string(MIXED, 32)
}

/// A fresh role name `v_<role>_<16 random>` (at most 63 bytes).
fn new_username(role: &str) -> Result<String> {
    let tag: String = role
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    Ok(format!("v_{tag}_{}", random_string(LOWER, 16)?.as_str()))
}

fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "{what} {name:?} is invalid: use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )))
    }
}

// ---- target database access ----

/// Why a target operation failed, with no password in it.
fn target_error(e: &sqlx::Error, secrets: &[&str]) -> String {
    let text = match e {
        sqlx::Error::Database(db) => format!("the database answered: {}", db.message()),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => "cannot reach the database".to_owned(),
        sqlx::Error::PoolTimedOut => "timed out".to_owned(),
        sqlx::Error::Configuration(_) => "the connection URL is not usable".to_owned(),
        sqlx::Error::Protocol(_) => "protocol error talking to the database".to_owned(),
        _ => "the database operation failed".to_owned(),
    };
    let mut text = text;
    for s in secrets {
        if !s.is_empty() {
            text = text.replace(s, "<redacted>");
        }
    }
    text
}

fn timed_out() -> String {
    format!("the database did not answer within {} s", OP_TIMEOUT.as_secs())
}

/// Parse a PostgreSQL URL (no secret in the error).
fn pg_options(url: &str) -> std::result::Result<PgConnectOptions, String> {
    PgConnectOptions::from_str(url)
        .map(|o| {
            o.application_name("coffer-dbcreds")
                .options([("statement_timeout", "10000")])
        })
        .map_err(|_| "the connection URL is not a valid PostgreSQL URL".to_owned())
}

async fn connect(opts: &PgConnectOptions, secrets: &[&str]) -> std::result::Result<PgConnection, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(opts)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(target_error(&e, secrets)),
        Err(_) => Err(format!("cannot connect within {} s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// The work of one target operation, on its connection.
type TargetFuture<'c, T> = std::pin::Pin<Box<dyn Future<Output = std::result::Result<T, sqlx::Error>> + Send + 'c>>;

/// Run `f` on a fresh connection of `opts`, all within [`OP_TIMEOUT`].
async fn with_target<T, F>(opts: &PgConnectOptions, secrets: &[&str], f: F) -> std::result::Result<T, String>
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> TargetFuture<'c, T>,
{
    let work = async {
        let mut conn = connect(opts, secrets).await?;
        let out = f(&mut conn).await.map_err(|e| target_error(&e, secrets));
        let _ = conn.close().await;
        out
    };
    tokio::time::timeout(OP_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

async fn select_one(conn: &mut PgConnection) -> std::result::Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(&mut *conn).await.map(drop)
}

// ---- views and inputs ----

/// `POST /api/v1/orgs/{org}/database/connections` body.
#[derive(Deserialize)]
pub struct ConnectionInput {
    /// name, unique in the organization
    pub name: String,
    /// `postgres://user:password@host:port/db` (the admin credential)
    pub url: Zeroizing<String>,
    /// overrides the URL's user
    pub username: Option<String>,
    /// overrides the URL's password
    pub password: Option<Zeroizing<String>>,
    /// project of the environment whose `reveal` grants credentials
    pub project: String,
    /// that environment
    pub environment: String,
}

impl std::fmt::Debug for ConnectionInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionInput")
            .field("name", &self.name)
            .field("project", &self.project)
            .field("environment", &self.environment)
            .finish_non_exhaustive()
    }
}

/// A connection as listed: never the password or the sealed URL.
#[derive(Debug, Serialize)]
pub struct ConnectionView {
    /// name
    pub name: String,
    /// `postgres://user@host:port/db`
    pub url: String,
    /// project
    pub project: String,
    /// environment
    pub environment: String,
    /// who created it
    pub created_by: String,
    /// RFC 3339
    pub created_at: String,
}

fn connection_view(c: &DbConnectionRow) -> ConnectionView {
    ConnectionView {
        name: c.name.clone(),
        url: c.display.clone(),
        project: c.project.clone(),
        environment: c.environment.clone(),
        created_by: c.created_by.clone(),
        created_at: rfc3339(c.created_at),
    }
}

/// `POST /api/v1/orgs/{org}/database/roles` body.
#[derive(Debug, Deserialize)]
pub struct RoleInput {
    /// name, unique in the organization
    pub name: String,
    /// the connection's name
    pub connection: String,
    /// dynamic (default) | static
    pub kind: Option<String>,
    /// dynamic: `read-only` (default) or `read-write` picks the default templates
    pub defaults: Option<String>,
    /// dynamic: creation SQL (overrides `defaults`)
    pub creation_sql: Option<String>,
    /// dynamic: revocation SQL
    pub revocation_sql: Option<String>,
    /// dynamic: default lease TTL, seconds (3600)
    pub default_ttl: Option<i64>,
    /// dynamic: max TTL, seconds (86400)
    pub max_ttl: Option<i64>,
    /// static: the existing database user
    pub username: Option<String>,
    /// static: the secret key (in the connection's environment) of its password
    pub secret_key: Option<String>,
    /// static: rotation period, seconds (0 or absent: on demand only)
    pub rotation_period: Option<i64>,
}

/// A role as listed.
#[derive(Debug, Serialize)]
pub struct RoleView {
    /// name
    pub name: String,
    /// connection name
    pub connection: String,
    /// dynamic | static
    pub kind: String,
    /// dynamic: creation SQL
    #[serde(skip_serializing_if = "String::is_empty")]
    pub creation_sql: String,
    /// dynamic: revocation SQL
    #[serde(skip_serializing_if = "String::is_empty")]
    pub revocation_sql: String,
    /// dynamic: default TTL, seconds
    pub default_ttl: i64,
    /// dynamic: max TTL, seconds
    pub max_ttl: i64,
    /// static: database user
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// static: secret key
    #[serde(skip_serializing_if = "String::is_empty")]
    pub secret_key: String,
    /// static: rotation period, seconds
    pub rotation_period: i64,
    /// static: RFC 3339 of the next scheduled rotation
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<String>,
}

/// Fresh dynamic credentials. Debug hides the password.
#[derive(Serialize)]
pub struct Credentials {
    /// `database/creds/<org>/<role>/<id>`
    pub lease_id: String,
    /// seconds
    pub lease_duration: i64,
    /// true
    pub renewable: bool,
    /// the database role
    pub username: String,
    /// its password
    pub password: Zeroizing<String>,
    /// `postgres://user:password@host:port/db` (for `coffer run --db-role`)
    pub database_url: Zeroizing<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("lease_id", &self.lease_id)
            .field("lease_duration", &self.lease_duration)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A lease as listed or renewed.
#[derive(Debug, Serialize)]
pub struct LeaseView {
    /// lease id
    pub lease_id: String,
    /// database role
    pub username: String,
    /// active | revoked
    pub status: String,
    /// RFC 3339
    pub issued_at: String,
    /// RFC 3339
    pub expires_at: String,
    /// RFC 3339: renewals stop here
    pub max_expires_at: String,
    /// seconds left (0 when expired or revoked)
    pub lease_duration: i64,
    /// true while active and below the max
    pub renewable: bool,
    /// failed revocation attempts
    pub revocation_attempts: i64,
    /// last revocation error
    pub last_error: Option<String>,
}

fn lease_view(l: &DbLeaseRow, now: i64) -> LeaseView {
    let active = l.status == "active";
    LeaseView {
        lease_id: l.lease_id.clone(),
        username: l.username.clone(),
        status: l.status.clone(),
        issued_at: rfc3339(l.issued_at),
        expires_at: rfc3339(l.expires_at),
        max_expires_at: rfc3339(l.max_expires_at),
        lease_duration: if active {
            ((l.expires_at - now) / 1000).max(0)
        } else {
            0
        },
        renewable: active && l.expires_at < l.max_expires_at,
        revocation_attempts: l.attempts,
        last_error: l.last_error.clone(),
    }
}

/// Outcome of a rotation.
#[derive(Debug, Serialize)]
pub struct RotationView {
    /// role
    pub role: String,
    /// database user
    pub username: String,
    /// the secret key
    pub secret_key: String,
    /// the secret's new version
    pub version: i64,
}

/// Outcome of a revocation by prefix.
#[derive(Debug, Serialize)]
pub struct RevokedView {
    /// leases revoked
    pub revoked: Vec<String>,
    /// leases whose revocation failed (retried by the job)
    pub failed: Vec<String>,
}

/// The organization slug and role name of a lease id or prefix
/// `database/creds/<org>[/<role>[/<id>]]`.
pub fn lease_org(lease_id: &str) -> Result<&str> {
    let mut parts = lease_id.trim_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("database"), Some("creds"), Some(org)) if !org.is_empty() => Ok(org),
        _ => Err(ServiceError::Invalid(format!(
            "lease id {lease_id:?} is not database/creds/<org>/<role>/<id>"
        ))),
    }
}

/// Database connections, roles and leases.
#[derive(Debug, Clone)]
pub struct DbCredsService {
    pub(super) shared: Arc<super::Shared>,
    pub(super) store: Arc<dyn DbCredsStore>,
    pub(super) access: super::AccessService,
    pub(super) secrets: super::SecretService,
    pub(super) audit: super::AuditService,
}

/// The target database of a connection, opened with its admin credential.
struct Target {
    admin: PgConnectOptions,
    url: Zeroizing<String>,
    admin_password: Zeroizing<String>,
}

impl DbCredsService {
    fn aad(org_id: Uuid, id: Uuid, kek_version: i64) -> Vec<u8> {
        let mut aad = b"coffer-db-connection".to_vec();
        aad.extend_from_slice(org_id.as_bytes());
        aad.extend_from_slice(id.as_bytes());
        aad.extend_from_slice(&kek_version.to_be_bytes());
        aad
    }

    async fn open(&self, keyring: &Keyring, c: &DbConnectionRow) -> Result<Target> {
        let kek = self.secrets.kek(keyring, c.org_id, c.kek_version).await?;
        let plain = aead::open(&kek, &Self::aad(c.org_id, c.id, c.kek_version), &c.sealed_url)
            .map_err(|_| ServiceError::Internal(format!("database connection {} does not decrypt", c.name)))?;
        let url = Zeroizing::new(
            std::str::from_utf8(&plain)
                .map_err(|_| ServiceError::Internal(format!("database connection {} is corrupt", c.name)))?
                .to_owned(),
        );
        let admin = pg_options(&url).map_err(ServiceError::Internal)?;
        let admin_password = Zeroizing::new(
            reqwest::Url::parse(&url)
                .ok()
                .and_then(|u| u.password().map(str::to_owned))
                .unwrap_or_default(),
        );
        Ok(Target {
            admin,
            url,
            admin_password,
        })
    }

    async fn connection(&self, org_id: Uuid, pick: impl Fn(&DbConnectionRow) -> bool) -> Result<DbConnectionRow> {
        self.store
            .db_connections(org_id)
            .await?
            .into_iter()
            .find(|c| pick(c))
            .ok_or_else(|| ServiceError::NotFound("database connection".into()))
    }

    async fn role(&self, org_id: Uuid, name: &str) -> Result<DbRoleRow> {
        self.store
            .db_roles(org_id)
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| ServiceError::NotFound(format!("database role {name}")))
    }

    /// Register a connection (org admins): verified, then sealed.
    pub async fn create_connection(&self, who: &Unsealed, org: &str, input: ConnectionInput) -> Result<ConnectionView> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        check_name("connection name", &input.name)?;
        let path = self.access.env_path(org, &input.project, &input.environment).await?;
        let mut url = reqwest::Url::parse(input.url.trim()).map_err(|_| {
            ServiceError::Invalid("url is not a valid URL: expected postgres://user:password@host:port/db".into())
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(ServiceError::Invalid(format!(
                "url scheme {:?} is not supported; use postgres://",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ServiceError::Invalid("url has no host".into()));
        }
        if let Some(u) = &input.username
            && url.set_username(u).is_err()
        {
            return Err(ServiceError::Invalid("username cannot be used in the URL".into()));
        }
        if let Some(p) = &input.password
            && url.set_password(Some(p)).is_err()
        {
            return Err(ServiceError::Invalid("password cannot be used in the URL".into()));
        }
        if url.username().is_empty() {
            return Err(ServiceError::Invalid(
                "the admin user is missing: put it in the url or in username".into(),
            ));
        }
        let full = Zeroizing::new(url.to_string());
        let password = Zeroizing::new(url.password().unwrap_or_default().to_owned());
        let opts = pg_options(&full).map_err(ServiceError::Invalid)?;
        with_target(&opts, &[&password], |c| Box::pin(select_one(c)))
            .await
            .map_err(|e| ServiceError::Invalid(format!("the connection was not saved: {e}")))?;
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        shown.set_query(None);
        let id = Uuid::new_v4();
        let kek = self.secrets.kek(who.keyring(), org_row.id, path.kek_version).await?;
        let row = DbConnectionRow {
            id,
            org_id: org_row.id,
            name: input.name.clone(),
            project: input.project.clone(),
            environment: input.environment.clone(),
            display: shown.to_string(),
            kek_version: path.kek_version,
            sealed_url: aead::seal(&kek, &Self::aad(org_row.id, id, path.kek_version), full.as_bytes()),
            created_by: author_of(who),
            created_at: now_ms(),
        };
        self.store.insert_db_connection(&row).await?;
        Ok(connection_view(&row))
    }

    /// Move the admin URLs of `org_id`'s connections sealed under an older
    /// KEK version to the `active` one (`KeyService::rewrap_batch`): same
    /// blob format and AAD scheme, the AAD naming the new version.
    pub(super) async fn rewrap_connections(&self, keyring: &Keyring, org_id: Uuid, active: i64) -> Result<usize> {
        let mut n = 0;
        for c in self.store.db_connections(org_id).await? {
            if c.kek_version >= active {
                continue;
            }
            let old = self.secrets.kek(keyring, org_id, c.kek_version).await?;
            let new = self.secrets.kek(keyring, org_id, active).await?;
            let sealed = crate::keys::reseal(
                &old,
                &Self::aad(org_id, c.id, c.kek_version),
                &new,
                &Self::aad(org_id, c.id, active),
                &c.sealed_url,
            )
            .map_err(|_| ServiceError::Internal(format!("database connection {} does not decrypt", c.name)))?;
            if self
                .store
                .reseal_db_connection(org_id, c.id, &sealed, active, c.kek_version)
                .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// An organization's connections (org admins); never a password.
    pub async fn list_connections(&self, who: &Unsealed, org: &str) -> Result<Vec<ConnectionView>> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        Ok(self
            .store
            .db_connections(org_row.id)
            .await?
            .iter()
            .map(connection_view)
            .collect())
    }

    /// Delete a connection without roles (org admins).
    pub async fn delete_connection(&self, who: &Unsealed, org: &str, name: &str) -> Result<()> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let c = self.connection(org_row.id, |c| c.name == name).await?;
        let roles = self.store.db_roles(org_row.id).await?;
        if let Some(r) = roles.iter().find(|r| r.connection_id == c.id) {
            return Err(ServiceError::Conflict(format!(
                "database connection {name} is used by role {}; delete its roles first",
                r.name
            )));
        }
        self.store.delete_db_connection(org_row.id, c.id).await?;
        Ok(())
    }

    fn role_view(r: &DbRoleRow, connections: &[DbConnectionRow]) -> RoleView {
        RoleView {
            name: r.name.clone(),
            connection: connections
                .iter()
                .find(|c| c.id == r.connection_id)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            kind: r.kind.clone(),
            creation_sql: r.creation_sql.clone(),
            revocation_sql: r.revocation_sql.clone(),
            default_ttl: r.default_ttl_s,
            max_ttl: r.max_ttl_s,
            username: r.username.clone(),
            secret_key: r.secret_key.clone(),
            rotation_period: r.rotation_period_s,
            next_rotation: (r.kind == "static" && r.rotation_period_s > 0).then(|| rfc3339(r.next_rotation_at)),
        }
    }

    /// Create a role (org admins). A static role's password is rotated at
    /// once, so coffer knows it from the start; if that fails, the role
    /// is not kept.
    pub async fn create_role(&self, who: &Unsealed, org: &str, input: RoleInput) -> Result<RoleView> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        check_name("role name", &input.name)?;
        let conn = self
            .connection(org_row.id, |c| c.name == input.connection)
            .await
            .map_err(|_| ServiceError::NotFound(format!("database connection {}", input.connection)))?;
        let kind = input.kind.as_deref().unwrap_or("dynamic");
        let now = now_ms();
        let mut row = DbRoleRow {
            id: Uuid::new_v4(),
            org_id: org_row.id,
            name: input.name.clone(),
            connection_id: conn.id,
            kind: kind.to_owned(),
            creation_sql: String::new(),
            revocation_sql: String::new(),
            default_ttl_s: 0,
            max_ttl_s: 0,
            username: String::new(),
            secret_key: String::new(),
            rotation_period_s: 0,
            next_rotation_at: 0,
            created_by: author_of(who),
            created_at: now,
        };
        match kind {
            "dynamic" => {
                let creation = match (&input.creation_sql, input.defaults.as_deref()) {
                    (Some(sql), _) => sql.clone(),
                    (None, None | Some("read-only")) => READ_ONLY_CREATION.to_owned(),
                    (None, Some("read-write")) => READ_WRITE_CREATION.to_owned(),
                    (None, Some(other)) => {
                        return Err(ServiceError::Invalid(format!(
                            "defaults {other:?} is unknown; use read-only or read-write"
                        )));
                    }
                };
                let revocation = input
                    .revocation_sql
                    .clone()
                    .unwrap_or_else(|| DEFAULT_REVOCATION.to_owned());
                check_template("creation_sql", &creation, &["{{name}}", "{{password}}"])?;
                check_template("revocation_sql", &revocation, &["{{name}}"])?;
                if revocation.contains("{{password}}") {
                    return Err(ServiceError::Invalid("revocation_sql cannot use {{password}}".into()));
                }
                let default_ttl = input.default_ttl.unwrap_or(DEFAULT_TTL_S);
                let max_ttl = input.max_ttl.unwrap_or(DEFAULT_MAX_TTL_S.max(default_ttl));
                if default_ttl < 1 || max_ttl < 1 {
                    return Err(ServiceError::Invalid(
                        "default_ttl and max_ttl must be at least 1 second".into(),
                    ));
                }
                if default_ttl > max_ttl {
                    return Err(ServiceError::Invalid(format!(
                        "default_ttl ({default_ttl} s) is longer than max_ttl ({max_ttl} s)"
                    )));
                }
                if max_ttl > 365 * 24 * 3600 {
                    return Err(ServiceError::Invalid("max_ttl is at most one year".into()));
                }
                row.creation_sql = creation;
                row.revocation_sql = revocation;
                row.default_ttl_s = default_ttl;
                row.max_ttl_s = max_ttl;
                self.store.insert_db_role(&row).await?;
            }
            "static" => {
                let username = input.username.clone().unwrap_or_default();
                if username.is_empty() || username.len() > 63 {
                    return Err(ServiceError::Invalid(
                        "a static role needs username (1-63 bytes)".into(),
                    ));
                }
                let key = input.secret_key.clone().unwrap_or_default();
                check_key(&key)?;
                let period = input.rotation_period.unwrap_or(0);
                if period < 0 {
                    return Err(ServiceError::Invalid(
                        "rotation_period must be 0 (on demand) or positive".into(),
                    ));
                }
                row.username = username;
                row.secret_key = key;
                row.rotation_period_s = period;
                row.next_rotation_at = now.saturating_add(period.saturating_mul(1000));
                self.store.insert_db_role(&row).await?;
                let path = self.conn_path(org, &conn).await?;
                if let Err(e) = self.rotate_row(who, org, &path, &conn, &row).await {
                    self.store.delete_db_role(org_row.id, row.id).await?;
                    return Err(e);
                }
            }
            other => {
                return Err(ServiceError::Invalid(format!(
                    "kind {other:?} is unknown; use dynamic or static"
                )));
            }
        }
        Ok(Self::role_view(&row, std::slice::from_ref(&conn)))
    }

    /// An organization's roles (org admins).
    pub async fn list_roles(&self, who: &Unsealed, org: &str) -> Result<Vec<RoleView>> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let conns = self.store.db_connections(org_row.id).await?;
        Ok(self
            .store
            .db_roles(org_row.id)
            .await?
            .iter()
            .map(|r| Self::role_view(r, &conns))
            .collect())
    }

    /// Delete a role (org admins); its active leases stay and expire.
    pub async fn delete_role(&self, who: &Unsealed, org: &str, name: &str) -> Result<()> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let r = self.role(org_row.id, name).await?;
        self.store.delete_db_role(org_row.id, r.id).await?;
        Ok(())
    }

    async fn conn_path(&self, org: &str, c: &DbConnectionRow) -> Result<EnvPath> {
        self.access.env_path(org, &c.project, &c.environment).await
    }

    /// Fresh credentials of a dynamic role: needs `reveal` on the
    /// connection's environment. `ttl` (seconds) is capped at the max TTL.
    pub async fn creds(&self, who: &Unsealed, org: &str, role: &str, ttl: Option<i64>) -> Result<Credentials> {
        let (org_row, _) = self.access.org_access(who, org).await?;
        let r = self.role(org_row.id, role).await?;
        if r.kind != "dynamic" {
            return Err(ServiceError::Invalid(format!(
                "database role {role} is static: read its secret {} instead",
                r.secret_key
            )));
        }
        let conn = self.connection(org_row.id, |c| c.id == r.connection_id).await?;
        self.access
            .authorize_env(who, (org, &conn.project, &conn.environment), Permission::Reveal)
            .await?;
        let ttl = match ttl {
            Some(t) if t < 1 => return Err(ServiceError::Invalid("ttl must be at least 1 second".into())),
            Some(t) => t.min(r.max_ttl_s),
            None => r.default_ttl_s,
        };
        let target = self.open(who.keyring(), &conn).await?;
        let username = new_username(&r.name)?;
        let password = new_password()?;
        let now = now_ms();
        let id = Uuid::new_v4();
        let lease = DbLeaseRow {
            id,
            org_id: org_row.id,
            lease_id: format!("database/creds/{org}/{}/{}", r.name, id.simple()),
            role_id: r.id,
            connection_id: conn.id,
            username: username.clone(),
            issued_at: now,
            expires_at: now.saturating_add(ttl * 1000),
            max_expires_at: now.saturating_add(r.max_ttl_s * 1000),
            status: "active".to_owned(),
            revoked_at: None,
            attempts: 0,
            last_error: None,
            created_by: author_of(who),
        };
        // The lease is durable before the role exists: a crash in between
        // leaves a lease whose revocation finds no role, never a role
        // nobody revokes.
        self.store.insert_db_lease(&lease).await?;
        let sql = render(&r.creation_sql, &username, &password, &rfc3339(lease.expires_at));
        let created = with_target(&target.admin, &[&password, &target.admin_password], |c| {
            Box::pin(async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(c)
                    .await
                    .map(drop)
            })
        })
        .await;
        if let Err(e) = created {
            self.store
                .lease_revocation_failed(org_row.id, id, "creation failed")
                .await?;
            self.store.mark_lease_revoked(org_row.id, id, now_ms()).await?;
            return Err(ServiceError::Invalid(format!(
                "database role {role}: the credentials were not created: {e}"
            )));
        }
        metrics::counter!(METRIC_LEASES).increment(1);
        let mut url = reqwest::Url::parse(&target.url).map_err(|_| ServiceError::Internal("connection URL".into()))?;
        let _ = url.set_username(&username);
        let _ = url.set_password(Some(&password));
        url.set_query(None);
        Ok(Credentials {
            lease_id: lease.lease_id,
            lease_duration: ttl,
            renewable: true,
            username,
            password,
            database_url: Zeroizing::new(url.to_string()),
        })
    }

    /// A lease of `org`, and the connection path its permission lives on.
    async fn lease(&self, who: &Unsealed, lease_id: &str, p: Permission) -> Result<(String, DbLeaseRow)> {
        let org = lease_org(lease_id)?.to_owned();
        let (org_row, _) = self.access.org_access(who, &org).await?;
        let lease = self
            .store
            .db_leases(org_row.id, i64::MAX)
            .await?
            .into_iter()
            .find(|l| l.lease_id == lease_id.trim_matches('/'))
            .ok_or_else(|| ServiceError::NotFound(format!("lease {lease_id}")))?;
        let conn = self.connection(org_row.id, |c| c.id == lease.connection_id).await?;
        self.access
            .authorize_env(who, (&org, &conn.project, &conn.environment), p)
            .await?;
        Ok((org, lease))
    }

    /// Renew a lease by `increment` seconds from now (the role's default
    /// TTL when absent), never past its max TTL.
    pub async fn renew(&self, who: &Unsealed, lease_id: &str, increment: Option<i64>) -> Result<LeaseView> {
        let (_, lease) = self.lease(who, lease_id, Permission::Reveal).await?;
        let now = now_ms();
        if lease.status != "active" || lease.expires_at <= now {
            return Err(ServiceError::Invalid(format!("lease {lease_id} is expired or revoked")));
        }
        let roles = self.store.db_roles(lease.org_id).await?;
        let default_ttl = roles
            .iter()
            .find(|r| r.id == lease.role_id)
            .map_or(DEFAULT_TTL_S, |r| r.default_ttl_s);
        let increment = match increment {
            Some(i) if i < 1 => return Err(ServiceError::Invalid("increment must be at least 1 second".into())),
            Some(i) => i,
            None => default_ttl,
        };
        let expires = now
            .saturating_add(increment.saturating_mul(1000))
            .min(lease.max_expires_at);
        let conn = self.connection(lease.org_id, |c| c.id == lease.connection_id).await?;
        let target = self.open(who.keyring(), &conn).await?;
        let sql = format!(
            "ALTER ROLE {} VALID UNTIL {}",
            quote_ident(&lease.username),
            quote_literal(&rfc3339(expires))
        );
        with_target(&target.admin, &[&target.admin_password], |c| {
            Box::pin(async move { sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(c).await.map(drop) })
        })
        .await
        .map_err(|e| ServiceError::Invalid(format!("lease {lease_id} was not renewed: {e}")))?;
        if !self.store.set_lease_expiry(lease.org_id, lease.id, expires).await? {
            return Err(ServiceError::Invalid(format!("lease {lease_id} is expired or revoked")));
        }
        Ok(lease_view(
            &DbLeaseRow {
                expires_at: expires,
                ..lease
            },
            now,
        ))
    }

    /// Revoke one lease now.
    pub async fn revoke(&self, who: &Unsealed, lease_id: &str) -> Result<()> {
        let (_, lease) = self.lease(who, lease_id, Permission::Reveal).await?;
        if lease.status != "active" {
            return Ok(());
        }
        self.revoke_row(who.keyring(), &lease).await.map_err(|e| {
            ServiceError::Conflict(format!(
                "lease {lease_id} was not revoked ({e}); the expiry job retries it"
            ))
        })
    }

    /// Revoke every active lease under `prefix` (`database/creds/<org>[/<role>]`); org admins.
    pub async fn revoke_prefix(&self, who: &Unsealed, prefix: &str) -> Result<RevokedView> {
        let org = lease_org(prefix)?.to_owned();
        let (org_row, _) = self.access.org_admin(who, &org).await?;
        let prefix = prefix.trim_matches('/');
        let mut out = RevokedView {
            revoked: Vec::new(),
            failed: Vec::new(),
        };
        for l in self.store.active_db_leases().await? {
            let under = l.lease_id == prefix || l.lease_id.starts_with(&format!("{prefix}/"));
            if l.org_id != org_row.id || !under {
                continue;
            }
            match self.revoke_row(who.keyring(), &l).await {
                Ok(()) => out.revoked.push(l.lease_id),
                Err(_) => out.failed.push(l.lease_id),
            }
        }
        Ok(out)
    }

    /// An organization's leases, newest first (org admins).
    pub async fn list_leases(&self, who: &Unsealed, org: &str) -> Result<Vec<LeaseView>> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let now = now_ms();
        Ok(self
            .store
            .db_leases(org_row.id, LIST_LIMIT)
            .await?
            .iter()
            .map(|l| lease_view(l, now))
            .collect())
    }

    /// Drop a lease's role: `NOLOGIN`, terminate its sessions, run the
    /// revocation template; a role already gone counts as revoked. On
    /// failure the attempt is recorded and the lease stays active (its
    /// expiry is moved to now so the job retries it).
    async fn revoke_row(&self, keyring: &Keyring, lease: &DbLeaseRow) -> std::result::Result<(), String> {
        let outcome = self.drop_role(keyring, lease).await;
        let stored = match &outcome {
            Ok(()) => self
                .store
                .mark_lease_revoked(lease.org_id, lease.id, now_ms())
                .await
                .map(drop),
            Err(e) => {
                metrics::counter!(METRIC_REVOCATION_FAILURES).increment(1);
                let _ = self
                    .store
                    .set_lease_expiry(lease.org_id, lease.id, lease.expires_at.min(now_ms()))
                    .await;
                self.store.lease_revocation_failed(lease.org_id, lease.id, e).await
            }
        };
        if let Err(e) = stored {
            tracing::warn!(error = %e, "database lease: cannot record the revocation");
        }
        outcome
    }

    async fn drop_role(&self, keyring: &Keyring, lease: &DbLeaseRow) -> std::result::Result<(), String> {
        let conn = self
            .connection(lease.org_id, |c| c.id == lease.connection_id)
            .await
            .map_err(|_| "its database connection was deleted".to_owned())?;
        let roles = self.store.db_roles(lease.org_id).await.map_err(|e| e.to_string())?;
        let revocation = roles
            .iter()
            .find(|r| r.id == lease.role_id)
            .map_or(DEFAULT_REVOCATION, |r| r.revocation_sql.as_str())
            .to_owned();
        let target = self.open(keyring, &conn).await.map_err(|e| e.to_string())?;
        let name = lease.username.clone();
        let sql = render(&revocation, &name, "", "");
        with_target(&target.admin, &[&target.admin_password], |c| {
            Box::pin(async move {
                let exists = sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
                    .bind(name.clone())
                    .fetch_optional(&mut *c)
                    .await?
                    .is_some();
                if !exists {
                    return Ok(());
                }
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "ALTER ROLE {} NOLOGIN",
                    quote_ident(&name)
                )))
                .execute(&mut *c)
                .await?;
                sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
                    .bind(name.clone())
                    .execute(&mut *c)
                    .await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Rotate a static role's password now: needs `update` on the
    /// connection's environment.
    pub async fn rotate(&self, who: &Unsealed, org: &str, role: &str) -> Result<RotationView> {
        let (org_row, _) = self.access.org_access(who, org).await?;
        let r = self.role(org_row.id, role).await?;
        if r.kind != "static" {
            return Err(ServiceError::Invalid(format!("database role {role} is not static")));
        }
        let conn = self.connection(org_row.id, |c| c.id == r.connection_id).await?;
        let path = self
            .access
            .authorize_env(who, (org, &conn.project, &conn.environment), Permission::Update)
            .await?;
        self.rotate_row(who, org, &path, &conn, &r).await
    }

    /// The two-phase switch (see the module doc).
    async fn rotate_row(
        &self,
        who: &Unsealed,
        org: &str,
        path: &EnvPath,
        conn: &DbConnectionRow,
        r: &DbRoleRow,
    ) -> Result<RotationView> {
        let outcome = self.switch_password(who, path, conn, r).await;
        let (action_outcome, reason) = match &outcome {
            Ok(_) => {
                metrics::counter!(METRIC_ROTATIONS).increment(1);
                (Outcome::Allowed, String::new())
            }
            Err(e) => {
                metrics::counter!(METRIC_ROTATION_FAILURES).increment(1);
                (Outcome::Error, e.to_string())
            }
        };
        self.record(
            who,
            org,
            "database.rotate",
            &format!("database/static-roles/{}", r.name),
            action_outcome,
            reason,
        )
        .await?;
        let version = outcome?;
        Ok(RotationView {
            role: r.name.clone(),
            username: r.username.clone(),
            secret_key: r.secret_key.clone(),
            version,
        })
    }

    async fn switch_password(
        &self,
        who: &Unsealed,
        path: &EnvPath,
        conn: &DbConnectionRow,
        r: &DbRoleRow,
    ) -> Result<i64> {
        let keyring = who.keyring();
        let target = self.open(keyring, conn).await?;
        let old = match self
            .secrets
            .secret_store
            .secret(path.org_id, path.env_id, &r.secret_key)
            .await?
        {
            Some(s) if s.deleted_at.is_none() => match self
                .secrets
                .secret_store
                .version(path.org_id, s.id, s.current_version)
                .await?
            {
                Some(v) => Some(self.secrets.decrypt_version(keyring, path, &r.secret_key, &v).await?),
                None => None,
            },
            _ => None,
        };
        let new = new_password()?;
        let secrets_of = |extra: &[&str]| -> Vec<String> {
            let mut v = vec![new.to_string(), target.admin_password.to_string()];
            v.extend(extra.iter().map(|s| (*s).to_owned()));
            v
        };
        let scrub = secrets_of(&[old.as_deref().map_or("", |s| s.as_str())]);
        let scrub: Vec<&str> = scrub.iter().map(String::as_str).collect();
        let set = |password: &str| {
            format!(
                "ALTER ROLE {} WITH PASSWORD {}",
                quote_ident(&r.username),
                quote_literal(password)
            )
        };
        // Phase 1: the database takes the new password.
        let sql = Zeroizing::new(set(&new));
        with_target(&target.admin, &scrub, |c| {
            Box::pin(async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(c)
                    .await
                    .map(drop)
            })
        })
        .await
        .map_err(|e| ServiceError::Invalid(format!("the password of {} was not changed: {e}", r.username)))?;
        // Phase 2: a login with it works.
        let user_opts = target.admin.clone().username(&r.username).password(&new);
        let verified = with_target(&user_opts, &scrub, |c| Box::pin(select_one(c))).await;
        let committed = match verified {
            Ok(()) => self
                .commit_password(who, path, &r.secret_key, &new)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("a login with the new password failed: {e}")),
        };
        match committed {
            Ok(version) => Ok(version),
            Err(why) => {
                // Roll back: the application keeps the password it has.
                let restored = match &old {
                    Some(old) => {
                        let sql = Zeroizing::new(set(old));
                        with_target(&target.admin, &scrub, |c| {
                            Box::pin(async move {
                                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                                    .execute(c)
                                    .await
                                    .map(drop)
                            })
                        })
                        .await
                        .map(|()| "the previous password was restored".to_owned())
                        .unwrap_or_else(|e| format!("restoring the previous password failed too: {e}"))
                    }
                    None => "no previous password was known".to_owned(),
                };
                Err(ServiceError::Conflict(format!(
                    "rotation of {} failed: {why}; {restored}",
                    r.username
                )))
            }
        }
    }

    /// Phase 3: the new password becomes a version of the role's secret.
    async fn commit_password(&self, who: &Unsealed, path: &EnvPath, key: &str, value: &str) -> Result<i64> {
        let _turn = self.shared.writes.turn(path.env_id, key).await;
        let input = SecretInput {
            value: Zeroizing::new(value.to_owned()),
            value_type: Some("password".to_owned()),
            description: None,
        };
        for _ in 0..5 {
            let existing = self.secrets.secret_store.secret(path.org_id, path.env_id, key).await?;
            let (secret, expected, version) = self
                .secrets
                .prepare_version(who.keyring(), who, path, existing, key, &input)
                .await?;
            match self.secrets.secret_store.put_version(&secret, expected, &version).await {
                Ok(()) => {
                    self.shared.broadcast(super::cluster::Event::Env(path.env_id));
                    return Ok(secret.current_version);
                }
                Err(StorageError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Conflict(format!(
            "secret {key} is being written by others"
        )))
    }

    /// An audit record of a job or rotation step (never a password).
    async fn record(
        &self,
        who: &Principal,
        org: &str,
        action: &str,
        resource: &str,
        outcome: Outcome,
        reason: String,
    ) -> Result<()> {
        self.audit
            .audit(AuditEvent {
                request_id: format!("dbcreds-{}", Uuid::new_v4()),
                actor: Actor {
                    kind: if who.kind == PrincipalKind::Root && who.accessor.is_empty() {
                        "system"
                    } else {
                        who.kind.as_str()
                    },
                    name: who.name.clone(),
                    accessor: who.accessor.clone(),
                },
                cert_spki: String::new(),
                source: String::new(),
                method: "JOB".to_owned(),
                action: action.to_owned(),
                resource: resource.to_owned(),
                org: org.to_owned(),
                status: if outcome == Outcome::Allowed { 200 } else { 500 },
                outcome,
                reason,
                values: 0,
            })
            .await
    }

    /// The `database_credentials` job: revoke expired leases (audited),
    /// rotate due static roles (claimed by compare-and-set, audited), and
    /// refresh the active-leases gauge.
    pub async fn run_due(&self) -> Result<String> {
        let Ok(keyring) = self.shared.keyring() else {
            return Ok("sealed: nothing done".to_owned());
        };
        let system = Unsealed {
            principal: Principal {
                accessor: String::new(),
                kind: PrincipalKind::Root,
                name: "database credentials job".to_owned(),
                expires_at: None,
                family_id: None,
                bound_spki: None,
                certificate_only: false,
                authenticated_at: None,
                self_only: false,
            },
            keyring,
        };
        let now = now_ms();
        let active = self.store.active_db_leases().await?;
        let orgs = self.secrets.tenant_store.list_orgs().await?;
        let slug = |id: Uuid| {
            orgs.iter()
                .find(|o| o.id == id)
                .map_or_else(|| id.to_string(), |o| o.slug.clone())
        };
        let (mut revoked, mut failed) = (0, 0);
        for l in active.iter().filter(|l| l.expires_at <= now) {
            let outcome = self.revoke_row(system.keyring(), l).await;
            let (o, reason) = match &outcome {
                Ok(()) => {
                    revoked += 1;
                    (Outcome::Allowed, "expired: role dropped".to_owned())
                }
                Err(e) => {
                    failed += 1;
                    // Audited at the first failure only (the lease lists
                    // its attempts and last error): a database down for
                    // hours does not flood the trail.
                    if l.attempts > 0 {
                        continue;
                    }
                    (Outcome::Error, format!("revocation failed, retried: {e}"))
                }
            };
            self.record(
                &system,
                &slug(l.org_id),
                "database.lease.expire",
                &l.lease_id,
                o,
                reason,
            )
            .await?;
        }
        metrics::gauge!(METRIC_ACTIVE_LEASES).set((active.len() - revoked) as f64);
        let mut rotated = 0;
        for r in self.store.due_static_roles(now).await? {
            let next = now.saturating_add(r.rotation_period_s.saturating_mul(1000));
            if !self
                .store
                .claim_rotation(r.org_id, r.id, r.next_rotation_at, next)
                .await?
            {
                continue;
            }
            let org = slug(r.org_id);
            let Ok(conn) = self.connection(r.org_id, |c| c.id == r.connection_id).await else {
                continue;
            };
            let path = match self.conn_path(&org, &conn).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(role = %r.name, error = %e, "static role: environment not found");
                    continue;
                }
            };
            match self.rotate_row(&system, &org, &path, &conn, &r).await {
                Ok(_) => rotated += 1,
                Err(e) => tracing::warn!(role = %r.name, error = %e, "static role rotation failed"),
            }
        }
        Ok(format!(
            "{revoked} database leases revoked, {failed} failed, {rotated} static roles rotated"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_the_quote_characters() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'"), "E'a\\\\b'''");
        let sql = render(
            "CREATE ROLE {{name}} PASSWORD {{password}} VALID UNTIL {{expiration}}",
            "x\"y",
            "p'w",
            "2030",
        );
        assert_eq!(
            sql.as_str(),
            "CREATE ROLE \"x\"\"y\" PASSWORD 'p''w' VALID UNTIL '2030'"
        );
    }

    #[test]
    fn templates_are_checked() {
        assert!(check_template("t", READ_ONLY_CREATION, &["{{name}}", "{{password}}"]).is_ok());
        assert!(check_template("t", READ_WRITE_CREATION, &["{{name}}", "{{password}}"]).is_ok());
        assert!(check_template("t", DEFAULT_REVOCATION, &["{{name}}"]).is_ok());
        let quoted = check_template("t", "CREATE ROLE \"{{name}}\"", &[]).expect_err("quoted");
        assert!(quoted.to_string().contains("remove the quotes"), "{quoted}");
        let unknown = check_template("t", "CREATE ROLE {{user}}", &[]).expect_err("unknown");
        assert!(unknown.to_string().contains("{{user}}"), "{unknown}");
        assert!(check_template("t", "SELECT 1", &["{{name}}"]).is_err());
    }

    #[test]
    fn generated_names_and_passwords_use_the_safe_alphabets() {
        let p = new_password().expect("password");
        assert_eq!(p.len(), 32);
        assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()));
        let n = new_username("App-RW").expect("name");
        assert!(n.starts_with("v_app_rw_") && n.len() <= 63, "{n}");
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
    }

    #[test]
    fn lease_ids_name_their_organization() {
        assert_eq!(lease_org("database/creds/acme/app/123").expect("org"), "acme");
        assert_eq!(lease_org("database/creds/acme").expect("org"), "acme");
        assert!(lease_org("database/").is_err());
        assert!(lease_org("secret/x").is_err());
    }
}
