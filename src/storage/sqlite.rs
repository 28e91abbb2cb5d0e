//! SQLite dialect: one file in the data directory, WAL journal, foreign keys
//! on, migrations from `migrations/sqlite`.

use std::str::FromStr;

use sqlx::Any;
use sqlx::any::AnyConnectOptions;
use sqlx::pool::PoolOptions;

use super::{Result, SqlBackend, StorageError};

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
    let pool = pool_options(8).connect_with(opts.clone()).await?;
    sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
    MIGRATOR.run(&pool).await?;
    // SQLite has one write lock per file: write transactions and audit
    // appends share one connection and queue for it in order.
    let writer = pool_options(1).connect_with(opts).await?;
    Ok(SqlBackend::new(pool, "sqlite", None).with_writer(writer))
}

fn pool_options(max: u32) -> PoolOptions<Any> {
    PoolOptions::<Any>::new()
        // A broken connection fails its query and is dropped; a ping before
        // every acquire would cost a round trip per query.
        .test_before_acquire(false)
        .max_connections(max)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // Per-connection settings; journal_mode=WAL is persistent in the file.
                sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                // Deleted rows are overwritten with zeros, so a purged
                // ciphertext leaves no bytes behind in the file (issue 23).
                sqlx::query("PRAGMA secure_delete = ON").execute(&mut *conn).await?;
                Ok(())
            })
        })
}
