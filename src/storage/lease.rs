//! [`LeasePool`]: the connections of one organization's reads, handed out
//! without a round trip on either side.
//!
//! sqlx's pool pings every connection it gets back (a network round trip on
//! PostgreSQL), and on PostgreSQL each tenant statement also paid a
//! `set_config('coffer.org_id', …)` round trip: three round trips for one
//! `SELECT`. A lease here remembers the organization its connection acts
//! for, so `set_config` runs only when the organization changes, and a
//! connection goes back to the pool without a ping — unless something went
//! wrong on it. The executor of a lease ([`Tracked`]) watches every
//! statement: a connection is reused only if its last statement ran to its
//! end with success or with an error reported by the database (the protocol
//! is then in step); after any other error (I/O, protocol, a decoding
//! failure), or when a statement was abandoned half way (a dropped future),
//! the connection is closed instead of being returned.
//!
//! It must never: hand out a connection whose `coffer.org_id` may differ
//! from the organization asked for (the remembered organization is cleared
//! before `set_config` runs and set only after it succeeded), nor return a
//! connection to the pool whose state it does not know. Transactions do not
//! use leases (they stay on sqlx's pool, which flushes a pending rollback
//! on release).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use sqlx::any::{AnyConnectOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{Any, AnyConnection, Connection, Either, Execute, Executor, SqlStr};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::db::query;
use super::{Result, StorageError};

/// How long an acquire waits for a free connection (sqlx's default too).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections older than this are closed at the next acquire.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A bounded pool of leases. Cloning shares it.
#[derive(Clone)]
pub(super) struct LeasePool {
    shared: Arc<Shared>,
}

struct Shared {
    idle: Mutex<Vec<Idle>>,
    permits: Arc<Semaphore>,
    max: usize,
    opts: AnyConnectOptions,
    /// statements run on every new connection before its first use
    setup: &'static [&'static str],
}

struct Idle {
    conn: AnyConnection,
    org: Option<Uuid>,
    since: Instant,
}

impl std::fmt::Debug for LeasePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasePool")
            .field("max", &self.shared.max)
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl LeasePool {
    /// A pool of at most `max` connections made with `opts`, each set up
    /// with `setup` (e.g. `SET ROLE`) before its first use.
    pub(super) fn new(opts: AnyConnectOptions, max: usize, setup: &'static [&'static str]) -> LeasePool {
        LeasePool {
            shared: Arc::new(Shared {
                idle: Mutex::new(Vec::with_capacity(max)),
                permits: Arc::new(Semaphore::new(max)),
                max,
                opts,
                setup,
            }),
        }
    }

    fn idle_count(&self) -> usize {
        self.shared.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// A connection, acting for `org` when given (PostgreSQL row-level
    /// security); waits for a free one up to [`ACQUIRE_TIMEOUT`].
    pub(super) async fn acquire(&self, org: Option<Uuid>) -> Result<Lease> {
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.shared.permits.clone().acquire_owned())
            .await
            .map_err(|_| StorageError::Database(sqlx::Error::PoolTimedOut))?
            .map_err(|_| StorageError::Database(sqlx::Error::PoolClosed))?;
        let (conn, acting) = match self.take_idle(org) {
            Some(idle) => (idle.conn, idle.org),
            None => (self.connect().await?, None),
        };
        let mut lease = Lease {
            conn: Some(Tracked { conn, clean: true }),
            org: acting,
            pool: self.shared.clone(),
            _permit: permit,
        };
        if let Some(org) = org
            && lease.org != Some(org)
        {
            lease.act_for(org).await?;
        }
        Ok(lease)
    }

    /// An idle connection, preferably one already acting for `org`; idle
    /// ones past [`IDLE_TIMEOUT`] are closed on the way.
    fn take_idle(&self, org: Option<Uuid>) -> Option<Idle> {
        let (found, expired) = {
            let Ok(mut idle) = self.shared.idle.lock() else {
                return None;
            };
            let now = Instant::now();
            let mut expired = Vec::new();
            let mut i = 0;
            while i < idle.len() {
                if now.duration_since(idle[i].since) > IDLE_TIMEOUT {
                    expired.push(idle.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            let at = idle.iter().rposition(|c| org.is_some() && c.org == org);
            let found = match at {
                Some(i) => Some(idle.swap_remove(i)),
                None => idle.pop(),
            };
            (found, expired)
        };
        // Closed outside the lock (dropping a connection closes its socket).
        drop(expired);
        found
    }

    async fn connect(&self) -> Result<AnyConnection> {
        let connect = async {
            let mut conn = AnyConnection::connect_with(&self.shared.opts).await?;
            for sql in self.shared.setup {
                query(sql).execute(&mut conn).await?;
            }
            Ok::<_, sqlx::Error>(conn)
        };
        Ok(tokio::time::timeout(ACQUIRE_TIMEOUT, connect)
            .await
            .map_err(|_| StorageError::Database(sqlx::Error::PoolTimedOut))??)
    }
}

/// A connection of a [`LeasePool`]; back to the pool when dropped if its
/// state is known (see the module docs), closed otherwise.
pub(super) struct Lease {
    conn: Option<Tracked>,
    /// the organization the session acts for (`coffer.org_id`), if known
    org: Option<Uuid>,
    pool: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("org", &self.org).finish_non_exhaustive()
    }
}

impl Lease {
    /// Make the session act for `org`. Until `set_config` has succeeded the
    /// lease remembers no organization, so a failure or a cancellation
    /// here never leaves a connection believed to act for the wrong one.
    async fn act_for(&mut self, org: Uuid) -> Result<()> {
        self.org = None;
        let tracked = self.tracked()?;
        query("SELECT set_config('coffer.org_id', $1, false)")
            .bind(org.to_string())
            .execute(&mut *tracked)
            .await?;
        self.org = Some(org);
        Ok(())
    }

    fn tracked(&mut self) -> Result<&mut Tracked> {
        self.conn
            .as_mut()
            .ok_or(StorageError::Database(sqlx::Error::PoolClosed))
    }
}

impl std::ops::Deref for Lease {
    type Target = Tracked;
    fn deref(&self) -> &Tracked {
        // Only `Drop` takes the connection out.
        #[allow(clippy::expect_used)]
        self.conn.as_ref().expect("a lease holds its connection until dropped")
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Tracked {
        #[allow(clippy::expect_used)]
        self.conn.as_mut().expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(t) = self.conn.take() else { return };
        if !t.clean {
            // Unknown state: closed here (the socket), never reused.
            return;
        }
        if let Ok(mut idle) = self.pool.idle.lock() {
            idle.push(Idle {
                conn: t.conn,
                org: self.org,
                since: Instant::now(),
            });
        }
        // The permit is released after this (field drop order), so a
        // waiter finds the connection idle.
    }
}

/// A connection whose every statement is watched: `clean` is false from
/// the start of a statement until it ended in a known state.
#[derive(Debug)]
pub(super) struct Tracked {
    conn: AnyConnection,
    clean: bool,
}

/// Whether the connection is still in step after `e`: the database
/// reported it (the protocol continues), or the query asked for one row
/// and got none.
fn in_step(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(_) | sqlx::Error::RowNotFound)
}

/// A statement's stream that marks its connection clean when it ends.
struct Watch<'e, T> {
    inner: BoxStream<'e, std::result::Result<T, sqlx::Error>>,
    clean: &'e mut bool,
    broken: bool,
}

impl<T> Stream for Watch<'_, T> {
    type Item = std::result::Result<T, sqlx::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = this.inner.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(Some(Err(e))) if !in_step(e) => this.broken = true,
            Poll::Ready(None) if !this.broken => *this.clean = true,
            _ => {}
        }
        next
    }
}

impl<'c> Executor<'c> for &'c mut Tracked {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, std::result::Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let Tracked { conn, clean } = self;
        *clean = false;
        Box::pin(Watch {
            inner: conn.fetch_many(query),
            clean,
            broken: false,
        })
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, std::result::Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let Tracked { conn, clean } = self;
        *clean = false;
        let run = conn.fetch_optional(query);
        Box::pin(async move {
            let out = run.await;
            *clean = out.as_ref().map_or_else(in_step, |_| true);
            out
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, std::result::Result<AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        let Tracked { conn, clean } = self;
        *clean = false;
        let run = conn.prepare_with(sql, parameters);
        Box::pin(async move {
            let out = run.await;
            *clean = out.as_ref().map_or_else(in_step, |_| true);
            out
        })
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, std::result::Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        let Tracked { conn, clean } = self;
        *clean = false;
        let run = conn.describe(sql);
        Box::pin(async move {
            let out = run.await;
            *clean = out.as_ref().map_or_else(in_step, |_| true);
            out
        })
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use std::str::FromStr;

    use sqlx::Row;

    use super::*;

    fn sqlite_pool(dir: &tempfile::TempDir, max: usize) -> LeasePool {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("lease.db").display());
        LeasePool::new(AnyConnectOptions::from_str(&url).expect("url"), max, &[])
    }

    /// A temp table lives in one connection only: whether it is there tells
    /// whether a lease got the connection of the previous one.
    async fn same_connection(lease: &mut Lease) -> bool {
        query("SELECT COUNT(*) AS n FROM sqlite_temp_master WHERE name = 'marker'")
            .fetch_one(&mut **lease)
            .await
            .expect("count")
            .try_get::<i64, _>("n")
            .expect("n")
            == 1
    }

    #[tokio::test]
    async fn a_connection_goes_back_after_success_and_after_a_database_error() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = sqlite_pool(&dir, 2);
        let mut lease = pool.acquire(None).await.expect("lease");
        query("CREATE TEMP TABLE marker (x)")
            .execute(&mut *lease)
            .await
            .expect("marker");
        drop(lease);
        assert_eq!(pool.idle_count(), 1);

        let mut lease = pool.acquire(None).await.expect("lease");
        assert!(same_connection(&mut lease).await, "the idle connection is reused");
        // An error the database reports leaves the protocol in step.
        let err = query("SELECT * FROM no_such_table").fetch_all(&mut *lease).await;
        assert!(matches!(err, Err(sqlx::Error::Database(_))), "{:?}", err.err());
        let err = query("SELECT * FROM no_such_table").fetch_optional(&mut *lease).await;
        assert!(matches!(err, Err(sqlx::Error::Database(_))), "{:?}", err.err());
        drop(lease);
        assert_eq!(pool.idle_count(), 1);
        let mut lease = pool.acquire(None).await.expect("lease");
        assert!(same_connection(&mut lease).await);
    }

    #[tokio::test]
    async fn a_statement_abandoned_half_way_closes_its_connection() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = sqlite_pool(&dir, 1);
        let mut lease = pool.acquire(None).await.expect("lease");
        query("CREATE TEMP TABLE marker (x)")
            .execute(&mut *lease)
            .await
            .expect("marker");
        // A long statement, dropped after 20 ms (a request whose client left).
        let long = query(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 100000000) \
             SELECT COUNT(*) FROM c",
        );
        let cut = tokio::time::timeout(Duration::from_millis(20), long.fetch_one(&mut *lease)).await;
        assert!(cut.is_err(), "the statement should still have been running");
        drop(lease);
        assert_eq!(pool.idle_count(), 0, "a connection in an unknown state is not kept");
        // The permit came back: a new connection, without the temp table.
        let mut lease = pool.acquire(None).await.expect("a fresh lease");
        assert!(!same_connection(&mut lease).await, "not the abandoned connection");
        query("SELECT 1").execute(&mut *lease).await.expect("works");
    }

    #[tokio::test]
    async fn acquires_wait_for_a_free_connection() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = sqlite_pool(&dir, 1);
        let first = pool.acquire(None).await.expect("lease");
        let waiting = tokio::time::timeout(Duration::from_millis(50), pool.acquire(None)).await;
        assert!(waiting.is_err(), "a second lease waits while the only one is out");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), pool.acquire(None)).await;
        assert!(second.is_ok_and(|l| l.is_ok()));
    }

    /// PostgreSQL (when the suite runs on it): a lease acts for the
    /// organization asked for, whatever its connection acted for before.
    #[tokio::test]
    async fn a_lease_acts_for_the_organization_asked_for() {
        if std::env::var("COFFER_TEST_STORAGE").as_deref() != Ok("postgres") {
            return;
        }
        sqlx::any::install_default_drivers();
        let url =
            std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let pool = LeasePool::new(AnyConnectOptions::from_str(&url).expect("url"), 1, &[]);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        async fn acting(lease: &mut Lease) -> (String, i32) {
            let row = query("SELECT current_setting('coffer.org_id', true) AS org, pg_backend_pid() AS pid")
                .fetch_one(&mut **lease)
                .await
                .expect("setting");
            (row.try_get("org").expect("org"), row.try_get("pid").expect("pid"))
        }
        let (org, pid) = acting(&mut pool.acquire(Some(a)).await.expect("lease")).await;
        assert_eq!(org, a.to_string());
        for (want, expect) in [(b, b), (b, b), (a, a)] {
            let (org, same_pid) = acting(&mut pool.acquire(Some(want)).await.expect("lease")).await;
            assert_eq!(org, expect.to_string());
            assert_eq!(same_pid, pid, "one connection, switched between organizations");
        }
        // A statement abandoned half way: the next lease is a new session
        // that acts for the organization asked for.
        let mut lease = pool.acquire(Some(a)).await.expect("lease");
        let cut = tokio::time::timeout(
            Duration::from_millis(50),
            query("SELECT pg_sleep(5)").execute(&mut *lease),
        )
        .await;
        assert!(cut.is_err());
        drop(lease);
        let (org, new_pid) = acting(&mut pool.acquire(Some(b)).await.expect("lease")).await;
        assert_ne!(new_pid, pid, "the abandoned session is not reused");
        assert_eq!(org, b.to_string());
    }
}
