//! Signed webhooks (issue 17, docs/webhooks.md).
//!
//! An organization admin registers hooks: an http(s) URL, the events it
//! wants, and a body format (`coffer` JSON or a Slack-compatible
//! `{"text": …}`). The server generates each hook's signing secret and
//! shows it once, at creation. Every approval step
//! (`service::approvals`, its `emit` hook) queues one delivery per
//! matching hook in the database; the `deliver_webhooks` job (one server of
//! a cluster) POSTs due deliveries with a 5 s timeout and the header
//! `Coffer-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
//! retries failures with exponential backoff and gives up after
//! [`MAX_ATTEMPTS`] (`dead`). The queue is each hook's delivery log. A body
//! holds names, ids, actors and the environment path, never a value.

use std::sync::Arc;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::approvals::ApprovalEvent;
use super::secrets::author_of;
use super::{Result, ServiceError, Unsealed, now_ms, rfc3339};
use crate::storage::webhooks::{DeliveryRow, WebhookRow, WebhookStore};

/// Events a hook may subscribe to.
pub const EVENTS: [&str; 8] = [
    "approval.requested",
    "approval.approved",
    "approval.rejected",
    "approval.applied",
    "approval.stale",
    "approval.expired",
    "break_glass.used",
    "break_glass.reviewed",
];
/// Attempts before a delivery is `dead`.
pub const MAX_ATTEMPTS: i64 = 8;
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: i64 = 3600 * 1000;
/// Per-request timeout.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Hooks per organization.
const MAX_HOOKS: usize = 50;
/// Deliveries sent per job run.
const BATCH: i64 = 100;
/// Deliveries a log listing returns at most.
const LOG_LIMIT: i64 = 200;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Coffer-Signature";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// `Coffer-Signature` value for `body` signed at unix second `t`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = match <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// `POST /api/v1/orgs/{org}/webhooks` body.
#[derive(Debug, Deserialize)]
pub struct WebhookInput {
    /// http(s) URL
    pub url: String,
    /// event names (empty or absent: every event)
    #[serde(default)]
    pub events: Vec<String>,
    /// coffer (default) | slack
    pub format: Option<String>,
}

/// A hook as listed (no secret).
#[derive(Debug, Serialize)]
pub struct WebhookView {
    /// id
    pub id: String,
    /// URL
    pub url: String,
    /// subscribed events
    pub events: Vec<String>,
    /// coffer | slack
    pub format: String,
    /// who created it
    pub created_by: String,
    /// RFC 3339
    pub created_at: String,
}

/// A created hook: its signing secret, shown this once.
#[derive(Serialize)]
pub struct WebhookCreated {
    /// the hook
    #[serde(flatten)]
    pub hook: WebhookView,
    /// HMAC-SHA256 key of the `Coffer-Signature` header
    pub secret: String,
}

impl std::fmt::Debug for WebhookCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCreated")
            .field("hook", &self.hook)
            .finish_non_exhaustive()
    }
}

/// One entry of a hook's delivery log.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    /// id (also the body's `id`)
    pub id: String,
    /// event name
    pub event: String,
    /// pending | delivered | dead | cancelled
    pub status: String,
    /// attempts made
    pub attempts: i64,
    /// last HTTP status code
    pub last_status: Option<i64>,
    /// last error
    pub last_error: Option<String>,
    /// RFC 3339
    pub created_at: String,
    /// RFC 3339: the next attempt (pending only)
    pub next_at: Option<String>,
    /// RFC 3339
    pub delivered_at: Option<String>,
}

fn view(w: &WebhookRow) -> WebhookView {
    WebhookView {
        id: w.id.to_string(),
        url: w.url.clone(),
        events: w
            .events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        format: w.format.clone(),
        created_by: w.created_by.clone(),
        created_at: rfc3339(w.created_at),
    }
}

/// The webhook event name of an approval step.
fn event_name(step: &str) -> String {
    match step {
        "break_glass" => "break_glass.used".to_owned(),
        "reviewed" => "break_glass.reviewed".to_owned(),
        other => format!("approval.{other}"),
    }
}

/// The body of one delivery in a hook's format: names only, no value.
fn body(format: &str, id: Uuid, name: &str, ev: &ApprovalEvent, at: i64) -> String {
    if format == "slack" {
        let what = match ev.event {
            "break_glass" => "break-glass used".to_owned(),
            "reviewed" => "break-glass reviewed".to_owned(),
            other => format!("change request {other}"),
        };
        let key = if ev.key.is_empty() {
            String::new()
        } else {
            format!(" `{}`", ev.key)
        };
        let text = format!(
            "[coffer] {what}: {}{key} in {}/{} by {} (request {})",
            ev.kind, ev.org, ev.environment, ev.actor, ev.request_id
        );
        json!({ "text": text }).to_string()
    } else {
        json!({
            "id": id.to_string(),
            "event": name,
            "created_at": rfc3339(at),
            "org": ev.org,
            "request_id": ev.request_id,
            "kind": ev.kind,
            "environment": ev.environment,
            "key": ev.key,
            "actor": ev.actor,
        })
        .to_string()
    }
}

fn check_url(url: &str) -> Result<String> {
    let url = url.trim();
    let parsed =
        reqwest::Url::parse(url).map_err(|e| ServiceError::Invalid(format!("url {url:?} is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ServiceError::Invalid(format!(
            "url scheme {:?} is not allowed; use http or https",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ServiceError::Invalid("url has no host".into()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ServiceError::Invalid("url must not hold credentials".into()));
    }
    Ok(parsed.to_string())
}

/// Webhooks of organizations and their delivery.
#[derive(Debug, Clone)]
pub struct WebhookService {
    pub(super) store: Arc<dyn WebhookStore>,
    pub(super) access: super::AccessService,
    pub(super) http: Option<reqwest::Client>,
}

impl WebhookService {
    pub(super) fn new(store: Arc<dyn WebhookStore>, access: super::AccessService) -> WebhookService {
        let http = match reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("coffer-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: no HTTP client; deliveries wait");
                None
            }
        };
        WebhookService { store, access, http }
    }

    /// Register a hook (org admins); its secret is returned this once.
    pub async fn create(&self, who: &Unsealed, org: &str, input: WebhookInput) -> Result<WebhookCreated> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let url = check_url(&input.url)?;
        let mut events = Vec::new();
        for e in &input.events {
            let e = e.trim();
            if e == "*" {
                events.clear();
                break;
            }
            if !EVENTS.contains(&e) {
                return Err(ServiceError::Invalid(format!(
                    "event {e:?} is unknown; use one of {}",
                    EVENTS.join(", ")
                )));
            }
            if !events.contains(&e) {
                events.push(e);
            }
        }
        if events.is_empty() {
            events = EVENTS.to_vec();
        }
        let format = match input.format.as_deref().map(str::trim) {
            None | Some("") | Some("coffer") => "coffer",
            Some("slack") => "slack",
            Some(other) => {
                return Err(ServiceError::Invalid(format!(
                    "format {other:?} is unknown; use coffer or slack"
                )));
            }
        };
        if self.store.webhooks(org_row.id).await?.len() >= MAX_HOOKS {
            return Err(ServiceError::Invalid(format!(
                "an organization has at most {MAX_HOOKS} webhooks"
            )));
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|_| ServiceError::Internal("OS random number generator failed".into()))?;
        let secret = format!("whsec_{}", hex::encode(key));
        let row = WebhookRow {
            id: Uuid::new_v4(),
            org_id: org_row.id,
            url,
            secret: secret.clone(),
            events: events.join(","),
            format: format.to_owned(),
            created_by: author_of(who),
            created_at: now_ms(),
        };
        self.store.insert_webhook(&row).await?;
        Ok(WebhookCreated {
            hook: view(&row),
            secret,
        })
    }

    /// An organization's hooks (org admins); no secret.
    pub async fn list(&self, who: &Unsealed, org: &str) -> Result<Vec<WebhookView>> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        Ok(self.store.webhooks(org_row.id).await?.iter().map(view).collect())
    }

    /// Delete a hook (org admins); its pending deliveries are cancelled.
    pub async fn delete(&self, who: &Unsealed, org: &str, id: &str) -> Result<()> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let id = Uuid::parse_str(id.trim()).map_err(|_| ServiceError::NotFound(format!("webhook {id}")))?;
        if self.store.delete_webhook(org_row.id, id).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("webhook {id}")))
        }
    }

    /// A hook's most recent deliveries, newest first (org admins).
    pub async fn deliveries(&self, who: &Unsealed, org: &str, id: &str) -> Result<Vec<DeliveryView>> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let id = Uuid::parse_str(id.trim()).map_err(|_| ServiceError::NotFound(format!("webhook {id}")))?;
        if !self.store.webhooks(org_row.id).await?.iter().any(|w| w.id == id) {
            return Err(ServiceError::NotFound(format!("webhook {id}")));
        }
        Ok(self
            .store
            .deliveries(org_row.id, id, LOG_LIMIT)
            .await?
            .into_iter()
            .map(|d| DeliveryView {
                id: d.id.to_string(),
                event: d.event,
                next_at: (d.status == "pending").then(|| rfc3339(d.next_at)),
                status: d.status,
                attempts: d.attempts,
                last_status: d.last_status,
                last_error: d.last_error,
                created_at: rfc3339(d.created_at),
                delivered_at: d.delivered_at.map(rfc3339),
            })
            .collect())
    }

    /// Queue one delivery of an approval step per matching hook of the
    /// organization `org_id`.
    pub(super) async fn enqueue(&self, org_id: Uuid, ev: &ApprovalEvent) -> Result<usize> {
        let name = event_name(ev.event);
        let now = now_ms();
        let rows: Vec<DeliveryRow> = self
            .store
            .webhooks(org_id)
            .await?
            .iter()
            .filter(|w| w.events.split(',').any(|e| e == name))
            .map(|w| {
                let id = Uuid::new_v4();
                DeliveryRow {
                    id,
                    org_id,
                    hook_id: w.id,
                    event: name.clone(),
                    body: body(&w.format, id, &name, ev, now),
                    attempts: 0,
                    next_at: now,
                    status: "pending".to_owned(),
                    last_status: None,
                    last_error: None,
                    created_at: now,
                    delivered_at: None,
                }
            })
            .collect();
        self.store.insert_deliveries(org_id, &rows).await?;
        Ok(rows.len())
    }

    /// The `deliver_webhooks` job: send due deliveries, in order; a
    /// failure waits `retry_base × 2^(attempts-1)` (capped at 1 h) and
    /// after [`MAX_ATTEMPTS`] the delivery is `dead`.
    pub async fn deliver_due(&self, retry_base: Duration) -> Result<String> {
        let Some(http) = &self.http else {
            return Ok("no HTTP client".to_owned());
        };
        let due = self.store.due_deliveries(now_ms(), BATCH).await?;
        let base = i64::try_from(retry_base.as_millis()).unwrap_or(MAX_BACKOFF_MS).max(1);
        let (mut sent, mut failed) = (0, 0);
        let mut failed_hooks: Vec<Uuid> = Vec::new();
        for (mut d, hook) in due {
            // After a failure a hook's later deliveries wait for the next
            // run (a dead receiver costs one timeout per run, not many).
            if failed_hooks.contains(&hook.id) {
                continue;
            }
            let t = now_ms() / 1000;
            let sig = signature(&hook.secret, t, &d.body);
            let outcome = http
                .post(&hook.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, sig)
                .header("Coffer-Event", d.event.clone())
                .header("Coffer-Delivery", d.id.to_string())
                .body(d.body.clone())
                .send()
                .await;
            d.attempts += 1;
            let now = now_ms();
            match outcome {
                Ok(resp) if resp.status().is_success() => {
                    d.status = "delivered".to_owned();
                    d.last_status = Some(i64::from(resp.status().as_u16()));
                    d.last_error = None;
                    d.delivered_at = Some(now);
                    sent += 1;
                }
                other => {
                    match other {
                        Ok(resp) => {
                            d.last_status = Some(i64::from(resp.status().as_u16()));
                            d.last_error = Some(format!("receiver answered {}", resp.status()));
                        }
                        Err(e) => {
                            d.last_status = None;
                            d.last_error = Some(if e.is_timeout() {
                                "timed out".to_owned()
                            } else if e.is_connect() {
                                "cannot connect".to_owned()
                            } else {
                                "request failed".to_owned()
                            });
                        }
                    }
                    if d.attempts >= MAX_ATTEMPTS {
                        d.status = "dead".to_owned();
                    } else {
                        let shift = u32::try_from(d.attempts - 1).unwrap_or(0).min(20);
                        let wait = base.saturating_mul(1_i64 << shift).min(MAX_BACKOFF_MS);
                        d.next_at = now.saturating_add(wait);
                    }
                    failed_hooks.push(hook.id);
                    failed += 1;
                }
            }
            self.store.update_delivery(&d).await?;
        }
        Ok(format!("{sent} webhook deliveries sent, {failed} failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_timestamp_and_body() {
        // RFC 4231-independent check: recompute by hand.
        let sig = signature("key", 1700000000, "{}");
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(b"key").expect("key");
        mac.update(b"1700000000.{}");
        assert_eq!(
            sig,
            format!("t=1700000000,v1={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_ne!(sig, signature("other", 1700000000, "{}"));
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://hooks.example/x").is_ok());
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("https://u:p@x/").is_err());
        assert!(check_url("nope").is_err());
    }
}
