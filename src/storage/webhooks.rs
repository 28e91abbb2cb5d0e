//! Storage of signed webhooks (issue 17): an organization's hooks and the
//! durable queue of their deliveries, which is also each hook's delivery
//! log. A trait of its own ([`WebhookStore`], a supertrait of
//! [`super::Backend`]), implemented once here for [`SqlBackend`] in portable
//! SQL. Tenant rows: every query filters on `org_id` (and PostgreSQL's
//! row-level security checks it again). A delivery body never holds a value.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::db::{query, uuid};
use super::{Result, SqlBackend};

/// One webhook. Its Debug hides the signing secret.
///
/// The secret is stored sealed under the organization's KEK
/// (`keys::seal_webhook_secret`); a hook created before migration 0018
/// has its clear secret in `legacy_secret` until the delivery job seals it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// http(s) URL the deliveries are POSTed to
    pub url: String,
    /// the signing secret sealed under the org's KEK (AES-256-GCM, AAD
    /// "webhook" ‖ org ‖ id); None: not sealed yet (`legacy_secret`)
    pub sealed_secret: Option<Vec<u8>>,
    /// the KEK version that seals it
    pub kek_version: Option<i64>,
    /// a hook made before migration 0018: its clear secret until sealed;
    /// empty otherwise
    pub legacy_secret: String,
    /// event names, comma-separated
    pub events: String,
    /// coffer | slack
    pub format: String,
    /// actor name
    pub created_by: String,
    /// unix ms
    pub created_at: i64,
}

impl std::fmt::Debug for WebhookRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRow")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("format", &self.format)
            .field("kek_version", &self.kek_version)
            .finish_non_exhaustive()
    }
}

/// One delivery of one event to one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// the hook
    pub hook_id: Uuid,
    /// event name
    pub event: String,
    /// the request body (JSON)
    pub body: String,
    /// attempts made
    pub attempts: i64,
    /// unix ms: the next attempt is due then
    pub next_at: i64,
    /// pending | delivered | dead | cancelled
    pub status: String,
    /// last HTTP status code
    pub last_status: Option<i64>,
    /// last error (no secret)
    pub last_error: Option<String>,
    /// unix ms
    pub created_at: i64,
    /// unix ms
    pub delivered_at: Option<i64>,
}

/// Webhooks and their delivery queue.
#[async_trait]
pub trait WebhookStore: Send + Sync + std::fmt::Debug {
    /// Add a hook.
    async fn insert_webhook(&self, row: &WebhookRow) -> Result<()>;
    /// An organization's hooks, oldest first.
    async fn webhooks(&self, org_id: Uuid) -> Result<Vec<WebhookRow>>;
    /// Delete a hook and cancel its pending deliveries; false if absent.
    async fn delete_webhook(&self, org_id: Uuid, id: Uuid) -> Result<bool>;
    /// Queue deliveries (one transaction).
    async fn insert_deliveries(&self, org_id: Uuid, rows: &[DeliveryRow]) -> Result<()>;
    /// A hook's most recent deliveries, newest first.
    async fn deliveries(&self, org_id: Uuid, hook_id: Uuid, limit: i64) -> Result<Vec<DeliveryRow>>;
    /// Pending deliveries due at `now` in every organization, with their
    /// hook, at most `limit`, oldest first.
    async fn due_deliveries(&self, now: i64, limit: i64) -> Result<Vec<(DeliveryRow, WebhookRow)>>;
    /// Hooks of every organization whose secret is still in clear (made
    /// before migration 0018).
    async fn legacy_webhooks(&self) -> Result<Vec<WebhookRow>>;
    /// Store a hook's sealed secret under KEK version `kek_version` and
    /// blank its clear column, if its sealing is still `expect` (the KEK
    /// version it was read with; None: not sealed yet); false otherwise.
    async fn seal_webhook_secret(
        &self,
        org_id: Uuid,
        id: Uuid,
        sealed: &[u8],
        kek_version: i64,
        expect: Option<i64>,
    ) -> Result<bool>;
    /// Record an attempt's outcome (attempts, next_at, status, last
    /// status/error, delivered_at), if the delivery is still pending.
    async fn update_delivery(&self, row: &DeliveryRow) -> Result<bool>;
}

const DELIVERY_COLUMNS: &str = "id, org_id, hook_id, event, body, attempts, next_at, status, last_status, \
     last_error, created_at, delivered_at";

fn webhook_row(r: &AnyRow) -> Result<WebhookRow> {
    Ok(WebhookRow {
        id: uuid(r, "id", "webhooks")?,
        org_id: uuid(r, "org_id", "webhooks")?,
        url: r.try_get("url")?,
        sealed_secret: r.try_get("sealed_secret")?,
        kek_version: r.try_get("kek_version")?,
        legacy_secret: r.try_get("secret")?,
        events: r.try_get("events")?,
        format: r.try_get("format")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

fn delivery_row(r: &AnyRow) -> Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: uuid(r, "id", "webhook_deliveries")?,
        org_id: uuid(r, "org_id", "webhook_deliveries")?,
        hook_id: uuid(r, "hook_id", "webhook_deliveries")?,
        event: r.try_get("event")?,
        body: r.try_get("body")?,
        attempts: r.try_get("attempts")?,
        next_at: r.try_get("next_at")?,
        status: r.try_get("status")?,
        last_status: r.try_get("last_status")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
    })
}

fn select(sql: String) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query::<sqlx::Any>(sqlx::AssertSqlSafe(sql))
}

#[async_trait]
impl WebhookStore for SqlBackend {
    async fn insert_webhook(&self, w: &WebhookRow) -> Result<()> {
        let mut tx = self.tenant_tx(w.org_id).await?;
        query(
            "INSERT INTO webhooks (id, org_id, url, secret, sealed_secret, kek_version, events, format, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(w.id.to_string())
        .bind(w.org_id.to_string())
        .bind(w.url.clone())
        .bind(w.legacy_secret.clone())
        .bind(w.sealed_secret.clone())
        .bind(w.kek_version)
        .bind(w.events.clone())
        .bind(w.format.clone())
        .bind(w.created_by.clone())
        .bind(w.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn webhooks(&self, org_id: Uuid) -> Result<Vec<WebhookRow>> {
        let rows = query("SELECT * FROM webhooks WHERE org_id = $1 ORDER BY created_at, id")
            .bind(org_id.to_string())
            .fetch_all(&mut *self.tenant(org_id).await?)
            .await?;
        rows.iter().map(webhook_row).collect()
    }

    async fn delete_webhook(&self, org_id: Uuid, id: Uuid) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query("DELETE FROM webhooks WHERE org_id = $1 AND id = $2")
            .bind(org_id.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        query(
            "UPDATE webhook_deliveries SET status = 'cancelled' \
             WHERE org_id = $1 AND hook_id = $2 AND status = 'pending'",
        )
        .bind(org_id.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_deliveries(&self, org_id: Uuid, rows: &[DeliveryRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.tenant_tx(org_id).await?;
        for d in rows {
            query(
                "INSERT INTO webhook_deliveries (id, org_id, hook_id, event, body, attempts, next_at, status, \
                 last_status, last_error, created_at, delivered_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(d.id.to_string())
            .bind(org_id.to_string())
            .bind(d.hook_id.to_string())
            .bind(d.event.clone())
            .bind(d.body.clone())
            .bind(d.attempts)
            .bind(d.next_at)
            .bind(d.status.clone())
            .bind(d.last_status)
            .bind(d.last_error.clone())
            .bind(d.created_at)
            .bind(d.delivered_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn deliveries(&self, org_id: Uuid, hook_id: Uuid, limit: i64) -> Result<Vec<DeliveryRow>> {
        let rows = select(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE org_id = $1 AND hook_id = $2 \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(org_id.to_string())
        .bind(hook_id.to_string())
        .bind(limit)
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(delivery_row).collect()
    }

    async fn due_deliveries(&self, now: i64, limit: i64) -> Result<Vec<(DeliveryRow, WebhookRow)>> {
        let orgs = query("SELECT id FROM orgs ORDER BY id").fetch_all(self.pool()).await?;
        let mut out = Vec::new();
        for r in &orgs {
            let org_id = uuid(r, "id", "orgs")?;
            let mut conn = self.tenant(org_id).await?;
            let due = select(format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                 WHERE org_id = $1 AND status = 'pending' AND next_at <= $2 ORDER BY created_at, id LIMIT $3"
            ))
            .bind(org_id.to_string())
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
            if due.is_empty() {
                continue;
            }
            let hooks = query("SELECT * FROM webhooks WHERE org_id = $1")
                .bind(org_id.to_string())
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(webhook_row)
                .collect::<Result<Vec<_>>>()?;
            for row in &due {
                let d = delivery_row(row)?;
                if let Some(h) = hooks.iter().find(|h| h.id == d.hook_id) {
                    out.push((d, h.clone()));
                }
            }
        }
        out.sort_by_key(|(d, _)| d.created_at);
        out.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(out)
    }

    async fn legacy_webhooks(&self) -> Result<Vec<WebhookRow>> {
        let orgs = query("SELECT id FROM orgs ORDER BY id").fetch_all(self.pool()).await?;
        let mut out = Vec::new();
        for r in &orgs {
            let org_id = uuid(r, "id", "orgs")?;
            let rows = query("SELECT * FROM webhooks WHERE org_id = $1 AND secret <> '' ORDER BY created_at, id")
                .bind(org_id.to_string())
                .fetch_all(&mut *self.tenant(org_id).await?)
                .await?;
            for row in &rows {
                out.push(webhook_row(row)?);
            }
        }
        Ok(out)
    }

    async fn seal_webhook_secret(
        &self,
        org_id: Uuid,
        id: Uuid,
        sealed: &[u8],
        kek_version: i64,
        expect: Option<i64>,
    ) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let sql = if expect.is_some() {
            "UPDATE webhooks SET sealed_secret = $1, kek_version = $2, secret = '' \
             WHERE org_id = $3 AND id = $4 AND kek_version = $5"
        } else {
            "UPDATE webhooks SET sealed_secret = $1, kek_version = $2, secret = '' \
             WHERE org_id = $3 AND id = $4 AND kek_version IS NULL"
        };
        let mut q = query(sql)
            .bind(sealed.to_vec())
            .bind(kek_version)
            .bind(org_id.to_string())
            .bind(id.to_string());
        if let Some(v) = expect {
            q = q.bind(v);
        }
        let done = q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn update_delivery(&self, d: &DeliveryRow) -> Result<bool> {
        let mut tx = self.tenant_tx(d.org_id).await?;
        let done = query(
            "UPDATE webhook_deliveries SET attempts = $1, next_at = $2, status = $3, last_status = $4, \
             last_error = $5, delivered_at = $6 WHERE org_id = $7 AND id = $8 AND status = 'pending'",
        )
        .bind(d.attempts)
        .bind(d.next_at)
        .bind(d.status.clone())
        .bind(d.last_status)
        .bind(d.last_error.clone())
        .bind(d.delivered_at)
        .bind(d.org_id.to_string())
        .bind(d.id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
