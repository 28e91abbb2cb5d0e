//! PostgreSQL dialect: the production backend that several coffer servers
//! share. Migrations from `migrations/postgres`.

use std::str::FromStr;

use sqlx::Any;
use sqlx::any::AnyConnectOptions;
use sqlx::pool::PoolOptions;

use super::{Result, SqlBackend, StorageError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Connect to a `postgres://` URL and migrate.
pub(super) async fn open(url: &str) -> Result<SqlBackend> {
    sqlx::any::install_default_drivers();
    let opts = AnyConnectOptions::from_str(url).map_err(|_| StorageError::Url("not a valid postgres:// URL".into()))?;
    let pool = PoolOptions::<Any>::new()
        // A broken connection fails its query and is dropped; a ping before
        // every acquire would cost a round trip per query.
        .test_before_acquire(false)
        .max_connections(16)
        .connect_with(opts)
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(SqlBackend::new(pool, "postgres"))
}
