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
//!
//! The signing secret is stored sealed under the organization's KEK
//! (AES-256-GCM, AAD "webhook" ‖ org ‖ hook id, `keys::seal_webhook_secret`)
//! and opened only to sign a delivery, so delivery needs the keys: while the
//! server is sealed the job leaves deliveries queued. A hook made before
//! migration 0018 has its secret in clear until the job's first run after
//! unseal seals it; KEK re-wraps move it like a DEK (`service::keys`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::approvals::ApprovalEvent;
use super::secrets::author_of;
use super::{Result, ServiceError, Unsealed, now_ms, rfc3339};
use crate::keys::{self, Keyring};
use crate::secure_mem::KeyBytes;
use crate::storage::keystore::KeyStore;
use crate::storage::webhooks::{DeliveryRow, WebhookRow, WebhookStore};

/// Events a hook may subscribe to.
pub const EVENTS: [&str; 9] = [
    "approval.requested",
    "approval.approved",
    "approval.rejected",
    "approval.applied",
    "approval.stale",
    "approval.expired",
    "break_glass.used",
    "break_glass.reviewed",
    "security.signal",
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
/// Security signals waiting to be queued.
const SIGNAL_QUEUE: usize = 1024;
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
        let notify = if ev.event == "break_glass" && !ev.approvers.is_empty() {
            format!("; approvers: {}", ev.approvers.join(", "))
        } else {
            String::new()
        };
        let text = format!(
            "[coffer] {what}: {}{key} in {}/{} by {} (request {}){notify}",
            ev.kind, ev.org, ev.environment, ev.actor, ev.request_id
        );
        json!({ "text": text }).to_string()
    } else {
        let mut b = json!({
            "id": id.to_string(),
            "event": name,
            "created_at": rfc3339(at),
            "org": ev.org,
            "request_id": ev.request_id,
            "kind": ev.kind,
            "environment": ev.environment,
            "key": ev.key,
            "actor": ev.actor,
        });
        if ev.event == "break_glass" {
            b["approvers"] = json!(ev.approvers);
        }
        b.to_string()
    }
}

/// A security signal of the audit stream (`service::audit::signals`) for
/// the organization it concerns: names and counts, never a value or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalEvent {
    /// bulk_reveal | failed_login_burst | service_account_outside_cidr
    pub signal: &'static str,
    /// organization slug of the record ("" when it names none)
    pub org: String,
    /// who (kind:name), "" if anonymous
    pub actor: String,
    /// client address
    pub source: String,
    /// what was counted (values revealed, failed logins, calls)
    pub count: u64,
    /// the threshold passed (0 when any occurrence counts)
    pub threshold: u64,
}

/// The body of a `security.signal` delivery in a hook's format.
fn signal_body(format: &str, id: Uuid, ev: &SignalEvent, at: i64) -> String {
    if format == "slack" {
        let text = format!(
            "[coffer] security signal {} in {}: {} from {} (count {}, threshold {})",
            ev.signal,
            ev.org,
            if ev.actor.is_empty() { "anonymous" } else { &ev.actor },
            ev.source,
            ev.count,
            ev.threshold
        );
        json!({ "text": text }).to_string()
    } else {
        json!({
            "id": id.to_string(),
            "event": "security.signal",
            "created_at": rfc3339(at),
            "org": ev.org,
            "signal": ev.signal,
            "actor": ev.actor,
            "source": ev.source,
            "count": ev.count,
            "threshold": ev.threshold,
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
    pub(super) key_store: Arc<dyn KeyStore>,
    pub(super) tenant_store: Arc<dyn crate::storage::TenantStore>,
    pub(super) access: super::AccessService,
    pub(super) shared: Arc<super::Shared>,
    pub(super) http: Option<reqwest::Client>,
    /// this process sealed the clear secrets of hooks made before 0018
    legacy_sealed: Arc<AtomicBool>,
}

impl WebhookService {
    pub(super) fn new(
        (store, key_store, tenant_store): (
            Arc<dyn WebhookStore>,
            Arc<dyn KeyStore>,
            Arc<dyn crate::storage::TenantStore>,
        ),
        access: super::AccessService,
        shared: Arc<super::Shared>,
    ) -> WebhookService {
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
        WebhookService {
            store,
            key_store,
            tenant_store,
            access,
            shared,
            http,
            legacy_sealed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// KEK version `version` of an org, from the keyring's cache or unwrapped now.
    async fn kek(&self, keyring: &Keyring, org_id: Uuid, version: i64) -> Result<Arc<KeyBytes>> {
        if let Some(k) = keyring.cached_kek(org_id, version) {
            return Ok(k);
        }
        let row =
            self.tenant_store.kek(org_id, version).await?.ok_or_else(|| {
                ServiceError::Internal(format!("KEK version {version} of an organization is missing"))
            })?;
        keyring
            .load_kek(org_id, version, &row.wrapped_key)
            .map_err(|_| ServiceError::Internal(format!("KEK version {version} of an organization does not decrypt")))
    }

    /// `secret` sealed for hook `id` under the org's active KEK, and that
    /// KEK's version.
    async fn seal_secret(&self, keyring: &Keyring, org_id: Uuid, id: Uuid, secret: &[u8]) -> Result<(Vec<u8>, i64)> {
        let version = self
            .key_store
            .active_kek(org_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("organization".into()))?;
        let kek = self.kek(keyring, org_id, version).await?;
        Ok((keys::seal_webhook_secret(&kek, &org_id, &id, secret), version))
    }

    /// A hook's signing secret in clear, to sign one run's deliveries.
    async fn secret_of(&self, keyring: &Keyring, w: &WebhookRow) -> Result<Zeroizing<String>> {
        let undecryptable =
            || ServiceError::Internal(format!("the signing secret of webhook {} does not decrypt", w.id));
        match (&w.sealed_secret, w.kek_version) {
            (Some(blob), Some(version)) => {
                let kek = self.kek(keyring, w.org_id, version).await?;
                let plain = keys::open_webhook_secret(&kek, &w.org_id, &w.id, blob).map_err(|_| undecryptable())?;
                String::from_utf8(plain.to_vec())
                    .map(Zeroizing::new)
                    .map_err(|_| undecryptable())
            }
            _ if !w.legacy_secret.is_empty() => Ok(Zeroizing::new(w.legacy_secret.clone())),
            _ => Err(ServiceError::Internal(format!(
                "webhook {} has no signing secret",
                w.id
            ))),
        }
    }

    /// Seal the clear secrets of hooks made before migration 0018 (the
    /// migration has no key); returns how many.
    async fn seal_legacy(&self, keyring: &Keyring) -> Result<usize> {
        let mut n = 0;
        for w in self.store.legacy_webhooks().await? {
            let (sealed, version) = self
                .seal_secret(keyring, w.org_id, w.id, w.legacy_secret.as_bytes())
                .await?;
            if self
                .store
                .seal_webhook_secret(w.org_id, w.id, &sealed, version, None)
                .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Move the signing secrets of `org_id`'s hooks sealed under an older
    /// KEK version to the `active` one (`KeyService::rewrap_batch`).
    pub(super) async fn rewrap_secrets(&self, keyring: &Keyring, org_id: Uuid, active: i64) -> Result<usize> {
        let mut n = 0;
        for w in self.store.webhooks(org_id).await? {
            let Some(old) = w.kek_version.filter(|v| *v < active) else {
                continue;
            };
            let secret = self.secret_of(keyring, &w).await?;
            let kek = self.kek(keyring, org_id, active).await?;
            let sealed = keys::seal_webhook_secret(&kek, &org_id, &w.id, secret.as_bytes());
            if self
                .store
                .seal_webhook_secret(org_id, w.id, &sealed, active, Some(old))
                .await?
            {
                n += 1;
            }
        }
        Ok(n)
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
        let id = Uuid::new_v4();
        let (sealed, kek_version) = self
            .seal_secret(who.keyring(), org_row.id, id, secret.as_bytes())
            .await?;
        let row = WebhookRow {
            id,
            org_id: org_row.id,
            url,
            sealed_secret: Some(sealed),
            kek_version: Some(kek_version),
            legacy_secret: String::new(),
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
        self.enqueue_with(org_id, &name, |format, id, at| body(format, id, &name, ev, at))
            .await
    }

    /// Queue the audit writer's security signals (`Auditor::forward_signals`)
    /// as `security.signal` deliveries, from a task of their own.
    pub(super) fn listen_for_signals(&self, auditor: &super::audit::Auditor) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<SignalEvent>(SIGNAL_QUEUE);
        auditor.forward_signals(tx);
        let hooks = self.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let Err(e) = hooks.enqueue_signal(&ev).await {
                    tracing::warn!(error = %e, signal = ev.signal, "security signal: webhooks not queued");
                }
            }
        });
    }

    /// Queue one `security.signal` delivery per subscribed hook of the
    /// organization the signal names (none: nothing is queued).
    pub(super) async fn enqueue_signal(&self, ev: &SignalEvent) -> Result<usize> {
        if ev.org.is_empty() {
            return Ok(0);
        }
        let Some(org) = self.tenant_store.org(&ev.org).await? else {
            return Ok(0);
        };
        self.enqueue_with(org.id, "security.signal", |format, id, at| {
            signal_body(format, id, ev, at)
        })
        .await
    }

    /// Queue one delivery of event `name` per hook of `org_id` subscribed
    /// to it, its body made by `make(format, delivery id, now)`.
    async fn enqueue_with(&self, org_id: Uuid, name: &str, make: impl Fn(&str, Uuid, i64) -> String) -> Result<usize> {
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
                    event: name.to_owned(),
                    body: make(&w.format, id, now),
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
        // Signing needs the org's KEK: nothing is sent while sealed.
        let Ok(keyring) = self.shared.keyring() else {
            return Ok("sealed: deliveries wait for unseal".to_owned());
        };
        if !self.legacy_sealed.load(Ordering::Relaxed) {
            // A failure is retried at the next run; deliveries go on.
            match self.seal_legacy(&keyring).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(hooks = n, "webhooks: clear signing secrets of older hooks sealed");
                    }
                    self.legacy_sealed.store(true, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "webhooks: older clear signing secrets not sealed yet"),
            }
        }
        let due = self.store.due_deliveries(now_ms(), BATCH).await?;
        let mut secrets: HashMap<Uuid, Zeroizing<String>> = HashMap::new();
        let base = i64::try_from(retry_base.as_millis()).unwrap_or(MAX_BACKOFF_MS).max(1);
        let (mut sent, mut failed) = (0, 0);
        let mut failed_hooks: Vec<Uuid> = Vec::new();
        for (mut d, hook) in due {
            // After a failure a hook's later deliveries wait for the next
            // run (a dead receiver costs one timeout per run, not many).
            if failed_hooks.contains(&hook.id) {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = secrets.entry(hook.id) {
                match self.secret_of(&keyring, &hook).await {
                    Ok(secret) => {
                        slot.insert(secret);
                    }
                    Err(e) => tracing::warn!(webhook = %hook.id, error = %e, "webhooks: cannot sign"),
                }
            }
            let outcome = match secrets.get(&hook.id) {
                Some(secret) => {
                    let sig = signature(secret, now_ms() / 1000, &d.body);
                    Some(
                        http.post(&hook.url)
                            .header(reqwest::header::CONTENT_TYPE, "application/json")
                            .header(SIGNATURE_HEADER, sig)
                            .header("Coffer-Event", d.event.clone())
                            .header("Coffer-Delivery", d.id.to_string())
                            .body(d.body.clone())
                            .send()
                            .await,
                    )
                }
                None => None,
            };
            d.attempts += 1;
            let now = now_ms();
            match outcome {
                Some(Ok(resp)) if resp.status().is_success() => {
                    d.status = "delivered".to_owned();
                    d.last_status = Some(i64::from(resp.status().as_u16()));
                    d.last_error = None;
                    d.delivered_at = Some(now);
                    sent += 1;
                }
                other => {
                    match other {
                        None => {
                            d.last_status = None;
                            d.last_error = Some("not sent: the signing secret does not decrypt".to_owned());
                        }
                        Some(Ok(resp)) => {
                            d.last_status = Some(i64::from(resp.status().as_u16()));
                            d.last_error = Some(format!("receiver answered {}", resp.status()));
                        }
                        Some(Err(e)) => {
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
