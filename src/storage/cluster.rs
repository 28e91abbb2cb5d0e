//! What several servers over one PostgreSQL database share besides rows:
//! a LISTEN/NOTIFY channel for cache invalidation and session advisory
//! locks for background jobs. On SQLite (one process per file) both are
//! local: notifications go nowhere and every lock is granted.
//!
//! Both are scoped to the store's schema: the channel name and the lock
//! keys are derived from `current_schema()`, so two coffer installations
//! (or test schemas) in one database never see each other's events or
//! locks. The listener and each lock use a dedicated connection outside the
//! pools: LISTEN and session advisory locks belong to a session (see
//! docs/topology.md for what that means behind PgBouncer).

use sha2::{Digest, Sha256};
use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgListener};

use super::sql::SqlBackend;
use super::{Result, StorageError};

/// How a PostgreSQL store is reached for cluster traffic.
#[derive(Clone)]
pub struct ClusterLink {
    url: String,
    /// schema the store lives in
    schema: String,
}

impl std::fmt::Debug for ClusterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("ClusterLink")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl ClusterLink {
    pub(super) fn new(url: &str, schema: String) -> ClusterLink {
        ClusterLink {
            url: url.to_owned(),
            schema,
        }
    }

    fn scoped(&self, what: &str) -> [u8; 32] {
        scoped(&self.schema, what)
    }

    /// The NOTIFY channel of this store (an identifier of 23 characters).
    pub fn channel(&self) -> String {
        channel_of_schema(&self.schema)
    }

    fn lock_key(&self, job: &str) -> i64 {
        let h = self.scoped(&format!("job\x00{job}"));
        i64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]])
    }

    /// A listener on this store's channel (dedicated connection).
    pub async fn listen(&self) -> Result<PgListener> {
        let mut l = PgListener::connect(&self.url).await?;
        l.listen(&self.channel()).await?;
        Ok(l)
    }

    /// Try to take job `job`'s session advisory lock on a dedicated
    /// connection: `Some` while this process holds it, released when the
    /// returned guard (its connection) is dropped or the process dies.
    pub async fn try_lock(&self, job: &str) -> Result<Option<JobLock>> {
        let mut conn = PgConnection::connect(&self.url).await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(self.lock_key(job))
            .fetch_one(&mut conn)
            .await?;
        Ok(got.then_some(JobLock(Some(conn))))
    }
}

fn scoped(schema: &str, what: &str) -> [u8; 32] {
    Sha256::digest(format!("coffer\x00{schema}\x00{what}").as_bytes()).into()
}

/// The NOTIFY channel of the store in PostgreSQL schema `schema`.
pub fn channel_of_schema(schema: &str) -> String {
    format!("coffer_{}", hex::encode(&scoped(schema, "events")[..8]))
}

/// A held job lock (None inside on SQLite, where the process is alone).
#[derive(Debug)]
pub struct JobLock(Option<PgConnection>);

impl JobLock {
    /// SQLite: the only process on the file holds every lock.
    pub fn local() -> JobLock {
        JobLock(None)
    }

    /// Whether the lock is still held (its connection answers).
    pub async fn alive(&mut self) -> bool {
        match &mut self.0 {
            None => true,
            Some(c) => c.ping().await.is_ok(),
        }
    }
}

impl SqlBackend {
    /// `pg_notify` on this store's channel (no-op on SQLite). Delivered to
    /// every listener, this process included, once the statement commits.
    pub(super) async fn notify_all(&self, payload: &str) -> Result<()> {
        let Some(link) = self.cluster_link() else {
            return Ok(());
        };
        // pg_notify returns void, which the Any driver cannot decode: count it.
        sqlx::query("SELECT COUNT(*) AS n FROM (SELECT pg_notify($1, $2)) AS sent")
            .bind(link.channel())
            .bind(payload.to_owned())
            .execute(self.pool())
            .await
            .map_err(StorageError::from)?;
        Ok(())
    }
}
