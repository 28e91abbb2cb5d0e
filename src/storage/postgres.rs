//! PostgreSQL dialect: the production backend that several coffer servers
//! share. Migrations from `migrations/postgres`, run as the connecting role;
//! every query after that runs as `coffer_app` (see `0002_identity.sql`),
//! which owns nothing and is no superuser, so the row-level security of the
//! tenant tables applies to it.

use std::str::FromStr;

use sqlx::any::AnyConnectOptions;
use sqlx::pool::PoolOptions;
use sqlx::{Any, Connection};

use super::cluster::ClusterLink;
use super::lease::LeasePool;
use super::sql::{TENANT_READS_MAX, Tenants};
use super::{Result, SqlBackend, StorageError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Run right after connecting, before any query of coffer's.
pub(super) const SET_ROLE: &str = "SET ROLE coffer_app";

/// Connect to a `postgres://` URL and migrate.
pub(super) async fn open(url: &str) -> Result<SqlBackend> {
    sqlx::any::install_default_drivers();
    let opts = AnyConnectOptions::from_str(url).map_err(|_| StorageError::Url("not a valid postgres:// URL".into()))?;
    // Migrations need the owner's rights: one connection of the configured role.
    let mut owner = sqlx::AnyConnection::connect_with(&opts).await?;
    MIGRATOR.run(&mut owner).await?;
    owner.close().await?;
    let pool = PoolOptions::<Any>::new()
        // A broken connection fails its query and is dropped; a ping before
        // every acquire would cost a round trip per query.
        .test_before_acquire(false)
        .max_connections(16)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query(SET_ROLE).execute(&mut *conn).await?;
                Ok(())
            })
        })
        .connect_with(opts.clone())
        .await?;
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(&pool)
        .await?;
    let reads = LeasePool::new(opts.clone(), TENANT_READS_MAX, &[SET_ROLE]);
    Ok(SqlBackend::new(pool, "postgres", reads, Some(Tenants::new(opts))).with_cluster(ClusterLink::new(url, schema)))
}
