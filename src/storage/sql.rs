//! [`SqlBackend`]: the one implementation of every store, shared by SQLite
//! and PostgreSQL. This file holds the struct, its pools (the shared one and,
//! on PostgreSQL, the tenant pool that acts for one organization at a time)
//! and the cross-cutting [`Backend`] methods; each aggregate's SQL lives in
//! its store's file (`identity.rs`, `tenants.rs`, `access.rs`, `secrets.rs`,
//! `keystore.rs`, `kv.rs`, `audit.rs`, `env_vars.rs`), the shared helpers in
//! `db.rs`.
//!
//! Portable SQL only: `$N` placeholders (numbered in order of first use,
//! which SQLite maps to the same indexes PostgreSQL does), TEXT ids holding
//! UUIDs, BIGINT/INTEGER unix-millisecond timestamps and 0/1 flags, BLOB/BYTEA
//! for ciphertexts. Dialect-specific setup lives in `sqlite.rs` and
//! `postgres.rs`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Any, Row};
use uuid::Uuid;

use super::db::{conflict, insert_token, query};
use super::lease::{Lease, LeasePool};
use super::secrets::ValuesCache;
use super::{Backend, KeyringRow, Result, StorageError, TokenRow};

/// A connection pool of either dialect.
pub type AnyPool = sqlx::Pool<Any>;

/// A pool of connections to one SQLite file or one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct SqlBackend {
    pool: AnyPool,
    /// SQLite only: the one connection write transactions and audit appends
    /// take, so writers queue here (fairly) instead of meeting at SQLite's
    /// write lock and sleeping in its busy handler
    writer: Option<AnyPool>,
    kind: &'static str,
    /// the inject cache (see [`ValuesCache`])
    pub(super) values: Arc<ValuesCache>,
    /// connections for one organization's statements outside transactions
    /// (on PostgreSQL acting for it), without sqlx's ping on release
    reads: LeasePool,
    tenants: Option<Arc<Tenants>>,
    cluster: Option<super::cluster::ClusterLink>,
}

/// PostgreSQL only: the bounded pool of transactions on one organization's
/// rows. A transaction acts for the organization asked for
/// (`set_config('coffer.org_id', …, true)`, the setting the row-level
/// security policies compare with, until the transaction ends), so even a
/// query that forgot its `org_id` filter sees that organization's rows
/// only; the shared pool sees no tenant row at all. Statements outside
/// transactions go through the lease pool ([`SqlBackend::tenant`]), whose
/// connections remember the organization they act for.
pub(super) struct Tenants {
    pool: AnyPool,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants")
            .field("connections", &self.pool.size())
            .finish()
    }
}

/// Connections of the tenant transaction pool (idle ones close after a
/// minute); the tenant lease pool holds up to [`TENANT_READS_MAX`] more.
pub(super) const TENANT_POOL_MAX: u32 = 6;
/// Connections of the lease pool of tenant statements (both backends).
pub(super) const TENANT_READS_MAX: usize = 12;

/// A connection for one organization's statements (see [`Lease`]).
pub(super) type TenantConn = Lease;

impl Tenants {
    pub(super) fn new(opts: sqlx::any::AnyConnectOptions) -> Tenants {
        let pool = sqlx::pool::PoolOptions::<Any>::new()
            .test_before_acquire(false)
            .max_connections(TENANT_POOL_MAX)
            .min_connections(0)
            .idle_timeout(Duration::from_secs(60))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query(super::postgres::SET_ROLE).execute(&mut *conn).await?;
                    Ok(())
                })
            })
            .connect_lazy_with(opts);
        Tenants { pool }
    }

    /// A transaction acting for `org_id` (`set_config(…, true)`: until it ends).
    async fn begin(&self, org_id: Uuid) -> Result<sqlx::Transaction<'static, Any>> {
        let mut tx = self.pool.begin().await?;
        query("SELECT set_config('coffer.org_id', $1, true)")
            .bind(org_id.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

impl SqlBackend {
    pub(super) fn new(pool: AnyPool, kind: &'static str, reads: LeasePool, tenants: Option<Tenants>) -> Self {
        SqlBackend {
            pool,
            writer: None,
            kind,
            values: Arc::new(ValuesCache::default()),
            reads,
            tenants: tenants.map(Arc::new),
            cluster: None,
        }
    }

    /// SQLite: the one-connection pool of write transactions.
    pub(super) fn with_writer(mut self, writer: AnyPool) -> Self {
        self.writer = Some(writer);
        self
    }

    /// Where write transactions go: the writer connection on SQLite, the
    /// shared pool on PostgreSQL (which locks rows, not the database).
    pub(super) fn writes(&self) -> &AnyPool {
        self.writer.as_ref().unwrap_or(&self.pool)
    }

    /// PostgreSQL: where cluster traffic (NOTIFY, job locks) goes.
    pub(super) fn with_cluster(mut self, link: super::cluster::ClusterLink) -> Self {
        self.cluster = Some(link);
        self
    }

    /// The cluster link of a PostgreSQL store (None on SQLite).
    pub fn cluster_link(&self) -> Option<&super::cluster::ClusterLink> {
        self.cluster.as_ref()
    }

    /// Inside a transaction of the shared pool, act for organization
    /// `org_id` until the transaction ends (PostgreSQL row-level security;
    /// nothing to do on SQLite). For the few cross-organization operations.
    pub(super) async fn act_for(&self, tx: &mut sqlx::Transaction<'_, Any>, org_id: Uuid) -> Result<()> {
        if self.tenants.is_some() {
            query("SELECT set_config('coffer.org_id', $1, true)")
                .bind(org_id.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// A connection for one organization's statements outside a
    /// transaction: on PostgreSQL acting for it (row-level security).
    pub(super) async fn tenant(&self, org_id: Uuid) -> Result<TenantConn> {
        let acting = self.tenants.as_ref().map(|_| org_id);
        self.reads.acquire(acting).await
    }

    /// A transaction on one organization's rows (of the shared pool on SQLite).
    pub(super) async fn tenant_tx(&self, org_id: Uuid) -> Result<sqlx::Transaction<'static, Any>> {
        match &self.tenants {
            Some(t) => t.begin(org_id).await,
            None => Ok(self.writes().begin().await?),
        }
    }

    /// The pool, for tests that tamper with rows directly.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

#[async_trait]
impl Backend for SqlBackend {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn keyring(&self) -> Result<Option<KeyringRow>> {
        let row = query(
            "SELECT seal_type, secret_shares, secret_threshold, encrypted_root, verify_tag, created_at \
             FROM keyring WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(KeyringRow {
                seal_type: r.try_get("seal_type")?,
                secret_shares: r.try_get("secret_shares")?,
                secret_threshold: r.try_get("secret_threshold")?,
                encrypted_root: r.try_get("encrypted_root")?,
                verify_tag: r.try_get("verify_tag")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    async fn init_keyring(&self, k: &KeyringRow, t: &TokenRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        query(
            "INSERT INTO keyring (id, seal_type, secret_shares, secret_threshold, encrypted_root, verify_tag, created_at) \
             VALUES (1, $1, $2, $3, $4, $5, $6)",
        )
        .bind(&k.seal_type)
        .bind(k.secret_shares)
        .bind(k.secret_threshold)
        .bind(&k.encrypted_root)
        .bind(&k.verify_tag)
        .bind(k.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match conflict("keyring")(e) {
            StorageError::Conflict(_) => StorageError::AlreadyInitialized,
            other => other,
        })?;
        insert_token(&mut tx, t).await?;
        tx.commit().await?;
        Ok(())
    }

    fn drop_caches(&self) {
        self.values.clear();
    }

    async fn notify(&self, payload: &str) -> Result<()> {
        self.notify_all(payload).await
    }

    fn cluster(&self) -> Option<super::cluster::ClusterLink> {
        self.cluster.clone()
    }

    async fn try_lock_job(&self, job: &str) -> Result<Option<super::cluster::JobLock>> {
        match &self.cluster {
            Some(link) => link.try_lock(job).await,
            None => Ok(Some(super::cluster::JobLock::local())),
        }
    }

    async fn snapshot(&self) -> Result<super::backup::Snapshot> {
        self.snapshot_all().await
    }

    async fn restore(
        &self,
        snap: &super::backup::Snapshot,
        progress: &mut (dyn for<'s> FnMut(&'s str, usize) + Send),
    ) -> Result<()> {
        self.restore_all(snap, progress).await
    }
}
