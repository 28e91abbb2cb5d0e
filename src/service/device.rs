//! The RFC 8628 device flow: `coffer login` on a host without a browser
//! asks for a code, a person approves it from a logged-in session (proving
//! themself again), and the CLI's poll turns the approval into a session
//! that joins the approver's.

use std::net::IpAddr;

use serde::Serialize;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::auth::{RECENT_LOGIN_MS, Session, new_secret};
use super::limits::Kind;
use super::{IdentityService, PrincipalKind, Result, ServiceError, Unsealed, now_ms, random_bytes, token_hash};
use crate::storage::DeviceRow;

/// Device-flow lifetime and poll interval.
const DEVICE_TTL_MS: i64 = 600_000;
const DEVICE_INTERVAL_S: i64 = 5;
/// Unambiguous letters for user codes (no vowels: no words, no 0/O, 1/I).
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// RFC 8628 device authorization response.
#[derive(Serialize)]
pub struct DeviceCode {
    /// the CLI's secret handle
    pub device_code: Zeroizing<String>,
    /// what the user approves
    pub user_code: String,
    /// where to approve
    pub verification_uri: String,
    /// seconds
    pub expires_in: i64,
    /// seconds between polls
    pub interval: i64,
}

impl std::fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCode")
            .field("user_code", &self.user_code)
            .finish_non_exhaustive()
    }
}

/// A pending device login as the approval page shows it: which client
/// asked, from where, and when (never the device code).
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRequest {
    /// ABCD-EFGH
    pub user_code: String,
    /// the client's User-Agent, cleaned ('' when it sent none)
    pub client: String,
    /// its address ('' when unknown)
    pub address: String,
    /// unix ms: when it asked
    pub created_at: i64,
    /// unix ms: when the code expires
    pub expires_at: i64,
}

/// Longest User-Agent kept for a device login.
const AGENT_MAX: usize = 120;

/// A User-Agent as a device login keeps it: printable ASCII only (no
/// control characters reach a page or a log), at most [`AGENT_MAX`].
fn clean_agent(agent: &str) -> String {
    agent
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(AGENT_MAX)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A typed user code in its stored form (`abcd efgh` → `ABCD-EFGH`).
fn normalize_code(user_code: &str) -> Result<String> {
    let code: String = user_code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if code.len() != 8 {
        return Err(ServiceError::Invalid("user_code must look like ABCD-EFGH".into()));
    }
    Ok(format!("{}-{}", &code[..4], &code[4..]))
}

impl IdentityService {
    /// `POST /auth/device/code`, recording which client asked (its
    /// User-Agent and address) for the approval page.
    pub async fn device_code(
        &self,
        verification_uri: String,
        agent: &str,
        source: Option<IpAddr>,
    ) -> Result<DeviceCode> {
        self.shared.require_unsealed()?;
        let device_code = new_secret()?;
        let raw = random_bytes::<8>()?;
        let letters: String = raw
            .iter()
            .map(|b| USER_CODE_ALPHABET[usize::from(*b) % USER_CODE_ALPHABET.len()] as char)
            .collect();
        let user_code = format!("{}-{}", &letters[..4], &letters[4..]);
        self.identity_store
            .create_device(&DeviceRow {
                device_hash: token_hash(&device_code),
                user_code: user_code.clone(),
                user_id: None,
                status: "pending".into(),
                interval_s: DEVICE_INTERVAL_S,
                last_poll: 0,
                expires_at: now_ms() + DEVICE_TTL_MS,
                family_id: None,
                auth_at: None,
                client_agent: clean_agent(agent),
                client_ip: source.map(|ip| ip.to_string()).unwrap_or_default(),
            })
            .await?;
        Ok(DeviceCode {
            device_code,
            user_code,
            verification_uri,
            expires_in: DEVICE_TTL_MS / 1000,
            interval: DEVICE_INTERVAL_S,
        })
    }

    /// `POST /auth/device/approve` (a user): the approver proves the person
    /// — the password (plus TOTP when enrolled) in the request, or a login
    /// younger than [`RECENT_LOGIN_MS`] — so a leaked token alone cannot
    /// turn into a new month-long session. The device's session joins the
    /// approver's: ending that one ends both.
    pub async fn device_approve(
        &self,
        who: &Unsealed,
        source: Option<IpAddr>,
        user_code: &str,
        password: Option<Zeroizing<String>>,
        totp_code: Option<&str>,
    ) -> Result<()> {
        let PrincipalKind::User(id) = who.kind else {
            return Err(ServiceError::Invalid("only a user can approve a device login".into()));
        };
        let code = normalize_code(user_code)?;
        let now = now_ms();
        let auth_at = match (password, who.authenticated_at) {
            (Some(password), _) => {
                self.prove_person(id, source, password, totp_code, true).await?;
                now
            }
            (None, Some(at)) if who.family_id.is_some() && now - at < RECENT_LOGIN_MS => at,
            (None, _) => {
                return Err(ServiceError::PasswordRequired(
                    "approving a device login needs your password (and your TOTP code when two-factor login \
                     is on), or a login within the last 5 minutes",
                ));
            }
        };
        // The device's session joins the approver's, so ending the
        // approver's session (or all of the user's) ends it too.
        let family = who
            .family_id
            .clone()
            .unwrap_or_else(|| Uuid::new_v4().simple().to_string());
        if self
            .identity_store
            .approve_device(&code, id, &family, auth_at, now)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("pending device login {code}")))
        }
    }

    /// The pending device login of `user_code` (a user asks, before
    /// approving or denying it): which client asked, from where and when.
    pub async fn device_request(&self, who: &Unsealed, user_code: &str) -> Result<DeviceRequest> {
        let PrincipalKind::User(_) = who.kind else {
            return Err(ServiceError::Invalid("only a user can approve a device login".into()));
        };
        let code = normalize_code(user_code)?;
        match self.identity_store.device_by_user_code(&code).await? {
            Some(row) if row.status == "pending" && row.expires_at > now_ms() => Ok(DeviceRequest {
                user_code: row.user_code,
                client: row.client_agent,
                address: row.client_ip,
                created_at: row.expires_at - DEVICE_TTL_MS,
                expires_at: row.expires_at,
            }),
            _ => Err(ServiceError::NotFound(format!("pending device login {code}"))),
        }
    }

    /// `POST /auth/device/deny` (a user): refuse a pending device login;
    /// the device's next poll answers `access_denied` and the CLI stops.
    /// Refusing needs no password: it grants nothing.
    pub async fn device_deny(&self, who: &Unsealed, user_code: &str) -> Result<()> {
        let PrincipalKind::User(_) = who.kind else {
            return Err(ServiceError::Invalid("only a user can deny a device login".into()));
        };
        let code = normalize_code(user_code)?;
        if self.identity_store.deny_device(&code, now_ms()).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("pending device login {code}")))
        }
    }

    /// `POST /auth/device/token`: the CLI's poll.
    pub async fn device_token(&self, source: Option<IpAddr>, device_code: &str) -> Result<Session> {
        self.shared.require_unsealed()?;
        let hash = token_hash(device_code);
        let now = now_ms();
        let Some(row) = self.identity_store.poll_device(&hash, now).await? else {
            return Err(self
                .shared
                .limits
                .failure(Kind::Token, source, ServiceError::DeviceFlow("expired_token")));
        };
        if row.expires_at <= now {
            return Err(ServiceError::DeviceFlow("expired_token"));
        }
        match row.status.as_str() {
            "pending" if now - row.last_poll < row.interval_s * 1000 => Err(ServiceError::DeviceFlow("slow_down")),
            "pending" => Err(ServiceError::DeviceFlow("authorization_pending")),
            "approved" => {
                let user_id = row.user_id.ok_or(ServiceError::DeviceFlow("access_denied"))?;
                if !self.identity_store.finish_device(&hash).await? {
                    return Err(ServiceError::DeviceFlow("expired_token"));
                }
                let user = self
                    .identity_store
                    .user(user_id)
                    .await?
                    .ok_or(ServiceError::DeviceFlow("access_denied"))?;
                let family = row.family_id.unwrap_or_else(|| Uuid::new_v4().simple().to_string());
                self.new_session(&user, &family, row.auth_at.unwrap_or(0)).await
            }
            "denied" => Err(ServiceError::DeviceFlow("access_denied")),
            _ => Err(ServiceError::DeviceFlow("expired_token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_normalized_or_refused() {
        assert_eq!(normalize_code("bcdf-ghjk").ok().as_deref(), Some("BCDF-GHJK"));
        assert_eq!(normalize_code(" BCDF GHJK ").ok().as_deref(), Some("BCDF-GHJK"));
        assert!(normalize_code("BCDF-GHJ").is_err());
        assert!(normalize_code("").is_err());
    }

    #[test]
    fn agents_are_cleaned_and_bounded() {
        assert_eq!(clean_agent("coffer-cli/1.2.0"), "coffer-cli/1.2.0");
        assert_eq!(clean_agent("evil\u{1b}[31m\nagent\u{e9}"), "evil[31magent");
        assert_eq!(clean_agent(&"a".repeat(500)).len(), AGENT_MAX);
    }
}
