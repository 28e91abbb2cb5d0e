//! SQLite dialect: one file in the data directory, WAL journal, foreign keys
//! on, migrations from `migrations/sqlite`.

use std::str::FromStr;

use sqlx::Any;
use sqlx::any::AnyConnectOptions;
use sqlx::pool::PoolOptions;

use super::lease::LeasePool;
use super::sql::TENANT_READS_MAX;
use super::{Result, SqlBackend, StorageError};

/// Connections of the shared pool (statements on no one organization's
/// rows); those on an organization's rows take leases (`SqlBackend::tenant`).
const SHARED_MAX: u32 = 6;

/// Per-connection settings (journal_mode=WAL is persistent in the file):
/// waits for a lock up to 5 s, foreign keys enforced, and deleted rows
/// overwritten with zeros, so a purged ciphertext leaves no bytes behind in
/// the file (issue 23).
const SETUP: &[&str] = &[
    "PRAGMA busy_timeout = 5000",
    "PRAGMA foreign_keys = ON",
    "PRAGMA secure_delete = ON",
];

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Open (creating if needed) the database file of a `sqlite://PATH` URL.
pub(super) async fn open(url: &str) -> Result<SqlBackend> {
    sqlx::any::install_default_drivers();
    // mode=rwc creates the file on first start.
    let url = if url.contains('?') {
        url.to_owned()
    } else {
        format!("{url}?mode=rwc")
    };
    let opts = AnyConnectOptions::from_str(&url).map_err(|_| StorageError::Url("not a valid sqlite:// URL".into()))?;
    let pool = pool_options(SHARED_MAX).connect_with(opts.clone()).await?;
    sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
    MIGRATOR.run(&pool).await?;
    // SQLite has one write lock per file: write transactions and audit
    // appends share one connection and queue for it in order.
    let writer = pool_options(1).connect_with(opts.clone()).await?;
    let reads = LeasePool::new(opts, TENANT_READS_MAX, SETUP);
    Ok(SqlBackend::new(pool, "sqlite", reads, None).with_writer(writer))
}

fn pool_options(max: u32) -> PoolOptions<Any> {
    PoolOptions::<Any>::new()
        // A broken connection fails its query and is dropped; a ping before
        // every acquire would cost a round trip per query.
        .test_before_acquire(false)
        .max_connections(max)
        .after_connect(|conn, _| {
            Box::pin(async move {
                for sql in SETUP {
                    sqlx::query(*sql).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
}
