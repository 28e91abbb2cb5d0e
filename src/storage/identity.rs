//! The identity aggregate: who is calling. Users (password hash, TOTP,
//! lockout, recovery codes), API tokens (by hash, with their derivation
//! tree), login sessions (refresh-token families) and RFC 8628 device codes.
//! Global rows, not tenant rows: a user exists once on the server, whatever
//! organizations they belong to. Hashes and encrypted blobs only; nothing
//! here is a usable secret.
//!
//! [`IdentityStore`] (a supertrait of [`super::Backend`]) is implemented once
//! here for [`SqlBackend`] in portable SQL. Invariants:
//! - a token row is deleted with every token derived from it
//!   (`parent_accessor`, transitively);
//! - the single-use operations (spend a refresh token, use a TOTP step or a
//!   recovery code, approve and finish a device login, count a failed login)
//!   are one conditional statement each, so concurrent callers on any server
//!   cannot both succeed;
//! - deleting a user removes every row naming it, in every organization, in
//!   one transaction.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};
use uuid::Uuid;

use super::db::{conflict, insert_token, opt_uuid, query, uuid};
use super::{Result, SqlBackend};

/// An API token, stored by hash only.
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// public accessor
    pub accessor: String,
    /// SHA-256 of the token
    pub token_hash: Vec<u8>,
    /// principal kind: root | user | service_account
    pub policy: String,
    /// human label
    pub display_name: String,
    /// unix ms
    pub created_at: i64,
    /// unix ms, None = no expiry
    pub expires_at: Option<i64>,
    /// the user or service account (None for root)
    pub principal_id: Option<Uuid>,
    /// organization of a service-account token
    pub org_id: Option<Uuid>,
    /// hex SHA-256 of the SPKI of the client certificate the token is bound to
    pub bound_spki: Option<String>,
    /// login session (refresh family) the token belongs to
    pub family_id: Option<String>,
    /// the token this one was derived from (revoking that one revokes this)
    pub parent_accessor: Option<String>,
    /// unix ms of the password login behind the token (None: no login)
    pub auth_at: Option<i64>,
}

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
    /// the asking client's User-Agent ('' when it sent none)
    pub client_agent: String,
    /// the asking client's address ('' when unknown)
    pub client_ip: String,
}

/// Storage of users, tokens, login sessions and device codes.
#[async_trait]
pub trait IdentityStore: Send + Sync + std::fmt::Debug {
    /// A token by the hash of its secret.
    async fn token_by_hash(&self, hash: &[u8]) -> Result<Option<TokenRow>>;
    /// A token by its public accessor.
    async fn token_by_accessor(&self, accessor: &str) -> Result<Option<TokenRow>>;
    /// Store a new token.
    async fn create_token(&self, token: &TokenRow) -> Result<()>;
    /// Tokens of one principal, or every token (None).
    async fn list_tokens(&self, principal_id: Option<Uuid>) -> Result<Vec<TokenRow>>;
    /// Delete every token of a login session, spend its refresh tokens and
    /// deny the device logins approved into it but not yet collected.
    async fn revoke_family(&self, family_id: &str) -> Result<()>;
    /// Delete a token and every token derived from it, transitively (by
    /// `parent_accessor`); returns how many went.
    async fn delete_token_tree(&self, accessor: &str) -> Result<u64>;
    /// End every session of a user: delete each of the user's tokens (and
    /// what was derived from them), spend the refresh tokens, deny device
    /// logins approved but not yet collected — except login session
    /// `keep_family`. Returns how many tokens went.
    async fn revoke_user_sessions(&self, user_id: Uuid, keep_family: Option<&str>) -> Result<u64>;
    /// Create a user; conflict if the email exists.
    async fn create_user(&self, user: &UserRow) -> Result<()>;
    /// A user by lower-cased email.
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>>;
    /// A user by id.
    async fn user(&self, id: Uuid) -> Result<Option<UserRow>>;
    /// Every user, by email.
    async fn list_users(&self) -> Result<Vec<UserRow>>;
    /// Record the failed-login count and lock of a user.
    async fn set_login_state(&self, user_id: Uuid, failed_logins: i64, locked_until: i64) -> Result<()>;
    /// Replace a user's password hash.
    async fn set_password(&self, user_id: Uuid, password_hash: &str) -> Result<()>;
    /// Disable or enable a user.
    async fn set_user_disabled(&self, user_id: Uuid, disabled: bool) -> Result<bool>;
    /// Delete a user with every row naming it (memberships, group
    /// memberships and grants in every org, tokens, sessions, recovery
    /// codes, device logins), in one transaction. False if no such user.
    async fn delete_user(&self, user_id: Uuid) -> Result<bool>;
    /// Add one failed login to a user's count, atomically (parallel
    /// failures each count, on every server); returns the new count
    /// (0: no such user).
    async fn count_login_failure(&self, user_id: Uuid) -> Result<i64>;
    /// Lock a user until `until` (unix ms) unless a longer lock is set.
    async fn lock_user_until(&self, user_id: Uuid, until: i64) -> Result<()>;
    /// Set the (encrypted) TOTP secret and whether it is required.
    async fn set_totp(&self, user_id: Uuid, secret: Option<&[u8]>, enabled: bool) -> Result<()>;
    /// Accept TOTP step `step` if it is newer than the last accepted one;
    /// false if it was used (atomic, across servers).
    async fn use_totp_step(&self, user_id: Uuid, step: i64) -> Result<bool>;
    /// Replace the user's recovery codes (hashes).
    async fn set_recovery_codes(&self, user_id: Uuid, hashes: &[Vec<u8>]) -> Result<()>;
    /// Use up a recovery code; false if it is not (or no longer) valid.
    async fn use_recovery_code(&self, user_id: Uuid, hash: &[u8]) -> Result<bool>;
    /// Store a refresh token.
    async fn create_refresh(&self, refresh: &RefreshRow) -> Result<()>;
    /// Spend a refresh token (atomic: of two concurrent uses one is `Reused`).
    async fn spend_refresh(&self, hash: &[u8]) -> Result<RefreshUse>;
    /// Store a device authorization.
    async fn create_device(&self, device: &DeviceRow) -> Result<()>;
    /// A device authorization by its user code.
    async fn device_by_user_code(&self, user_code: &str) -> Result<Option<DeviceRow>>;
    /// A device authorization by the hash of its device code; records the poll time.
    async fn poll_device(&self, device_hash: &[u8], now: i64) -> Result<Option<DeviceRow>>;
    /// Approve a pending, unexpired device authorization for `user_id`,
    /// joining login session `family_id`.
    async fn approve_device(
        &self,
        user_code: &str,
        user_id: Uuid,
        family_id: &str,
        auth_at: i64,
        now: i64,
    ) -> Result<bool>;
    /// Deny a pending, unexpired device authorization: its poll then
    /// answers `access_denied`.
    async fn deny_device(&self, user_code: &str, now: i64) -> Result<bool>;
    /// Move an approved device authorization to done (once).
    async fn finish_device(&self, device_hash: &[u8]) -> Result<bool>;
    /// Delete expired tokens, refresh tokens and device codes; returns how
    /// many rows went.
    async fn purge_expired(&self, now: i64) -> Result<u64>;
}

const TOKEN_SELECT: &str = "SELECT accessor, token_hash, policy, display_name, created_at, expires_at, principal_id, \
     org_id, bound_spki, family_id, parent_accessor, auth_at FROM tokens";

/// Delete token `$1` and every token derived from it, transitively.
const TOKEN_TREE_DELETE: &str = "WITH RECURSIVE doomed (accessor) AS ( \
         SELECT accessor FROM tokens WHERE accessor = $1 \
         UNION SELECT t.accessor FROM tokens t JOIN doomed d ON t.parent_accessor = d.accessor) \
     DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM doomed)";

fn token_row(r: &AnyRow) -> Result<TokenRow> {
    Ok(TokenRow {
        accessor: r.try_get("accessor")?,
        token_hash: r.try_get("token_hash")?,
        policy: r.try_get("policy")?,
        display_name: r.try_get("display_name")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        principal_id: opt_uuid(r, "principal_id", "tokens")?,
        org_id: opt_uuid(r, "org_id", "tokens")?,
        bound_spki: r.try_get("bound_spki")?,
        family_id: r.try_get("family_id")?,
        parent_accessor: r.try_get("parent_accessor")?,
        auth_at: r.try_get("auth_at")?,
    })
}

const USER_SELECT: &str = "SELECT id, email, password_hash, totp_secret, totp_enabled, totp_last_step, failed_logins, \
     locked_until, created_at, disabled FROM users";

pub(super) fn user_row(r: &AnyRow) -> Result<UserRow> {
    Ok(UserRow {
        id: uuid(r, "id", "users")?,
        email: r.try_get("email")?,
        password_hash: r.try_get("password_hash")?,
        totp_secret: r.try_get("totp_secret")?,
        totp_enabled: r.try_get::<i64, _>("totp_enabled")? != 0,
        totp_last_step: r.try_get("totp_last_step")?,
        failed_logins: r.try_get("failed_logins")?,
        locked_until: r.try_get("locked_until")?,
        created_at: r.try_get("created_at")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
    })
}

const DEVICE_SELECT: &str = "SELECT device_hash, user_code, user_id, status, interval_s, last_poll, expires_at, family_id, auth_at, \
     client_agent, client_ip FROM device_codes";

fn device_row(r: &AnyRow) -> Result<DeviceRow> {
    Ok(DeviceRow {
        device_hash: r.try_get("device_hash")?,
        user_code: r.try_get("user_code")?,
        user_id: opt_uuid(r, "user_id", "device_codes")?,
        status: r.try_get("status")?,
        interval_s: r.try_get("interval_s")?,
        last_poll: r.try_get("last_poll")?,
        expires_at: r.try_get("expires_at")?,
        family_id: r.try_get("family_id")?,
        auth_at: r.try_get("auth_at")?,
        client_agent: r.try_get("client_agent")?,
        client_ip: r.try_get("client_ip")?,
    })
}

#[async_trait]
impl IdentityStore for SqlBackend {
    async fn token_by_hash(&self, hash: &[u8]) -> Result<Option<TokenRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{TOKEN_SELECT} WHERE token_hash = $1")))
            .bind(hash.to_vec())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(token_row).transpose()
    }

    async fn token_by_accessor(&self, accessor: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{TOKEN_SELECT} WHERE accessor = $1")))
            .bind(accessor.to_owned())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(token_row).transpose()
    }

    async fn create_token(&self, t: &TokenRow) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        insert_token(&mut tx, t).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_tokens(&self, principal_id: Option<Uuid>) -> Result<Vec<TokenRow>> {
        let rows = match principal_id {
            Some(id) => {
                sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
                    "{TOKEN_SELECT} WHERE principal_id = $1 ORDER BY created_at"
                )))
                .bind(id.to_string())
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{TOKEN_SELECT} ORDER BY created_at")))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter().map(token_row).collect()
    }

    async fn revoke_family(&self, family_id: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        query("DELETE FROM tokens WHERE family_id = $1")
            .bind(family_id.to_owned())
            .execute(&mut *tx)
            .await?;
        query("UPDATE refresh_tokens SET spent = 1 WHERE family_id = $1")
            .bind(family_id.to_owned())
            .execute(&mut *tx)
            .await?;
        // A device login approved into the session but not collected yet
        // must not start it again.
        query("UPDATE device_codes SET status = 'denied' WHERE family_id = $1 AND status = 'approved'")
            .bind(family_id.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_token_tree(&self, accessor: &str) -> Result<u64> {
        let done = query(TOKEN_TREE_DELETE)
            .bind(accessor.to_owned())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    async fn revoke_user_sessions(&self, user_id: Uuid, keep_family: Option<&str>) -> Result<u64> {
        let keep = keep_family.unwrap_or("").to_owned();
        let mut tx = self.pool().begin().await?;
        // The user's tokens and, transitively, whatever was derived from them.
        let done = query(
            "WITH RECURSIVE doomed (accessor) AS ( \
                 SELECT accessor FROM tokens WHERE policy = 'user' AND principal_id = $1 \
                     AND ($2 = '' OR family_id IS NULL OR family_id <> $2) \
                 UNION SELECT t.accessor FROM tokens t JOIN doomed d ON t.parent_accessor = d.accessor) \
             DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM doomed)",
        )
        .bind(user_id.to_string())
        .bind(keep.clone())
        .execute(&mut *tx)
        .await?;
        query("UPDATE refresh_tokens SET spent = 1 WHERE user_id = $1 AND family_id <> $2")
            .bind(user_id.to_string())
            .bind(keep.clone())
            .execute(&mut *tx)
            .await?;
        query("UPDATE device_codes SET status = 'denied' WHERE user_id = $1 AND status = 'approved'")
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn create_user(&self, u: &UserRow) -> Result<()> {
        query(
            "INSERT INTO users (id, email, password_hash, totp_secret, totp_enabled, totp_last_step, failed_logins, \
             locked_until, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(u.id.to_string())
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(u.totp_secret.clone())
        .bind(i64::from(u.totp_enabled))
        .bind(u.totp_last_step)
        .bind(u.failed_logins)
        .bind(u.locked_until)
        .bind(u.created_at)
        .execute(self.pool())
        .await
        .map_err(conflict("a user with this email exists"))?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{USER_SELECT} WHERE email = $1")))
            .bind(email.to_owned())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    async fn user(&self, id: Uuid) -> Result<Option<UserRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{USER_SELECT} WHERE id = $1")))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{USER_SELECT} ORDER BY email")))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(user_row).collect()
    }

    async fn set_login_state(&self, user_id: Uuid, failed_logins: i64, locked_until: i64) -> Result<()> {
        query("UPDATE users SET failed_logins = $1, locked_until = $2 WHERE id = $3")
            .bind(failed_logins)
            .bind(locked_until)
            .bind(user_id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn set_password(&self, user_id: Uuid, password_hash: &str) -> Result<()> {
        query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash.to_owned())
            .bind(user_id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn set_user_disabled(&self, user_id: Uuid, disabled: bool) -> Result<bool> {
        let done = query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(user_id.to_string())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_user(&self, user_id: Uuid) -> Result<bool> {
        let id = user_id.to_string();
        let mut tx = self.pool().begin().await?;
        let orgs = query("SELECT org_id FROM memberships WHERE user_id = $1")
            .bind(id.clone())
            .fetch_all(&mut *tx)
            .await?;
        for row in &orgs {
            let org_id = uuid(row, "org_id", "memberships")?;
            // Row-level security: act for each organization in turn.
            self.act_for(&mut tx, org_id).await?;
            query("DELETE FROM grants WHERE org_id = $1 AND subject_kind = 'user' AND subject_id = $2")
                .bind(org_id.to_string())
                .bind(id.clone())
                .execute(&mut *tx)
                .await?;
            query("DELETE FROM group_members WHERE org_id = $1 AND user_id = $2")
                .bind(org_id.to_string())
                .bind(id.clone())
                .execute(&mut *tx)
                .await?;
        }
        query(
            "WITH RECURSIVE doomed (accessor) AS ( \
                 SELECT accessor FROM tokens WHERE policy = 'user' AND principal_id = $1 \
                 UNION SELECT t.accessor FROM tokens t JOIN doomed d ON t.parent_accessor = d.accessor) \
             DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM doomed)",
        )
        .bind(id.clone())
        .execute(&mut *tx)
        .await?;
        for sql in [
            "DELETE FROM memberships WHERE user_id = $1",
            "DELETE FROM refresh_tokens WHERE user_id = $1",
            "DELETE FROM recovery_codes WHERE user_id = $1",
            "DELETE FROM device_codes WHERE user_id = $1",
        ] {
            query(sql).bind(id.clone()).execute(&mut *tx).await?;
        }
        let done = query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_login_failure(&self, user_id: Uuid) -> Result<i64> {
        let row = query("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins")
            .bind(user_id.to_string())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get("failed_logins")).transpose()?.unwrap_or(0))
    }

    async fn lock_user_until(&self, user_id: Uuid, until: i64) -> Result<()> {
        query("UPDATE users SET locked_until = $1 WHERE id = $2 AND locked_until < $1")
            .bind(until)
            .bind(user_id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn set_totp(&self, user_id: Uuid, secret: Option<&[u8]>, enabled: bool) -> Result<()> {
        query("UPDATE users SET totp_secret = $1, totp_enabled = $2 WHERE id = $3")
            .bind(secret.map(<[u8]>::to_vec))
            .bind(i64::from(enabled))
            .bind(user_id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn use_totp_step(&self, user_id: Uuid, step: i64) -> Result<bool> {
        let done = query("UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1")
            .bind(step)
            .bind(user_id.to_string())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_recovery_codes(&self, user_id: Uuid, hashes: &[Vec<u8>]) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        for h in hashes {
            query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user_id.to_string())
                .bind(h.clone())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn use_recovery_code(&self, user_id: Uuid, hash: &[u8]) -> Result<bool> {
        let done = query("DELETE FROM recovery_codes WHERE user_id = $1 AND code_hash = $2")
            .bind(user_id.to_string())
            .bind(hash.to_vec())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_refresh(&self, r: &RefreshRow) -> Result<()> {
        query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, spent, expires_at, created_at, auth_at) \
             VALUES ($1, $2, $3, 0, $4, $5, $6)",
        )
        .bind(r.token_hash.clone())
        .bind(&r.family_id)
        .bind(r.user_id.to_string())
        .bind(r.expires_at)
        .bind(r.created_at)
        .bind(r.auth_at)
        .execute(self.pool())
        .await
        .map_err(conflict("refresh token exists"))?;
        Ok(())
    }

    async fn spend_refresh(&self, hash: &[u8]) -> Result<RefreshUse> {
        let row = query(
            "SELECT token_hash, family_id, user_id, spent, expires_at, created_at, auth_at FROM refresh_tokens \
             WHERE token_hash = $1",
        )
        .bind(hash.to_vec())
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else {
            return Ok(RefreshUse::Unknown);
        };
        let refresh = RefreshRow {
            token_hash: r.try_get("token_hash")?,
            family_id: r.try_get("family_id")?,
            user_id: uuid(&r, "user_id", "refresh_tokens")?,
            expires_at: r.try_get("expires_at")?,
            created_at: r.try_get("created_at")?,
            auth_at: r.try_get("auth_at")?,
        };
        // Compare-and-set: of two concurrent uses exactly one spends it.
        let done = query("UPDATE refresh_tokens SET spent = 1 WHERE token_hash = $1 AND spent = 0")
            .bind(hash.to_vec())
            .execute(self.pool())
            .await?;
        Ok(if done.rows_affected() == 1 {
            RefreshUse::Fresh(refresh)
        } else {
            RefreshUse::Reused(refresh)
        })
    }

    async fn create_device(&self, d: &DeviceRow) -> Result<()> {
        query(
            "INSERT INTO device_codes (device_hash, user_code, user_id, status, interval_s, last_poll, expires_at, \
             client_agent, client_ip) VALUES ($1, $2, NULL, $3, $4, $5, $6, $7, $8)",
        )
        .bind(d.device_hash.clone())
        .bind(&d.user_code)
        .bind(&d.status)
        .bind(d.interval_s)
        .bind(d.last_poll)
        .bind(d.expires_at)
        .bind(&d.client_agent)
        .bind(&d.client_ip)
        .execute(self.pool())
        .await
        .map_err(conflict("device code exists"))?;
        Ok(())
    }

    async fn device_by_user_code(&self, user_code: &str) -> Result<Option<DeviceRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{DEVICE_SELECT} WHERE user_code = $1")))
            .bind(user_code.to_owned())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(device_row).transpose()
    }

    async fn poll_device(&self, device_hash: &[u8], now: i64) -> Result<Option<DeviceRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{DEVICE_SELECT} WHERE device_hash = $1")))
            .bind(device_hash.to_vec())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row.as_ref().map(device_row).transpose()? else {
            return Ok(None);
        };
        query("UPDATE device_codes SET last_poll = $1 WHERE device_hash = $2")
            .bind(now)
            .bind(device_hash.to_vec())
            .execute(self.pool())
            .await?;
        Ok(Some(row))
    }

    async fn approve_device(
        &self,
        user_code: &str,
        user_id: Uuid,
        family_id: &str,
        auth_at: i64,
        now: i64,
    ) -> Result<bool> {
        let done = query(
            "UPDATE device_codes SET status = 'approved', user_id = $1, family_id = $4, auth_at = $5 \
             WHERE user_code = $2 AND status = 'pending' AND expires_at > $3",
        )
        .bind(user_id.to_string())
        .bind(user_code.to_owned())
        .bind(now)
        .bind(family_id.to_owned())
        .bind(auth_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn deny_device(&self, user_code: &str, now: i64) -> Result<bool> {
        let done = query(
            "UPDATE device_codes SET status = 'denied' WHERE user_code = $1 AND status = 'pending' AND expires_at > $2",
        )
        .bind(user_code.to_owned())
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_device(&self, device_hash: &[u8]) -> Result<bool> {
        let done = query("UPDATE device_codes SET status = 'done' WHERE device_hash = $1 AND status = 'approved'")
            .bind(device_hash.to_vec())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_expired(&self, now: i64) -> Result<u64> {
        let mut tx = self.pool().begin().await?;
        let mut n = 0;
        for sql in [
            "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at < $1",
            "DELETE FROM refresh_tokens WHERE expires_at < $1",
            "DELETE FROM device_codes WHERE expires_at < $1",
        ] {
            n += query(sql).bind(now).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }
}
