//! The SQL helpers every store of [`SqlBackend`](super::SqlBackend) shares:
//! statement construction, column decoding, error mapping, and the one
//! INSERT of a token row (written by init, by generate-root and by login).

use sqlx::any::AnyRow;
use sqlx::{Any, Row};
use uuid::Uuid;

use super::{Result, StorageError, TokenRow};

/// A statement with static SQL (every query of coffer's is a constant or
/// built from placeholders only).
pub(super) fn query(sql: &'static str) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
    sqlx::query::<Any>(sql)
}

/// Map a unique-constraint violation to [`StorageError::Conflict`].
pub(super) fn conflict(what: &'static str) -> impl FnOnce(sqlx::Error) -> StorageError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            StorageError::Conflict(what)
        }
        _ => StorageError::Database(e),
    }
}

/// A TEXT column holding a UUID.
pub(super) fn uuid(row: &AnyRow, col: &str, table: &'static str) -> Result<Uuid> {
    let text: String = row.try_get(col)?;
    Uuid::parse_str(&text).map_err(|_| StorageError::Corrupt {
        table,
        what: format!("column {col} is not a UUID"),
    })
}

/// A nullable TEXT column holding a UUID.
pub(super) fn opt_uuid(r: &AnyRow, col: &str, table: &'static str) -> Result<Option<Uuid>> {
    let text: Option<String> = r.try_get(col)?;
    text.map(|t| {
        Uuid::parse_str(&t).map_err(|_| StorageError::Corrupt {
            table,
            what: format!("column {col} is not a UUID"),
        })
    })
    .transpose()
}

/// Insert a token row in `tx`; [`StorageError::Conflict`] if its accessor
/// or hash exists.
pub(super) async fn insert_token(tx: &mut sqlx::Transaction<'_, Any>, t: &TokenRow) -> Result<()> {
    query(
        "INSERT INTO tokens (accessor, token_hash, policy, display_name, created_at, expires_at, principal_id, org_id, \
         bound_spki, family_id, parent_accessor, auth_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&t.accessor)
    .bind(&t.token_hash)
    .bind(&t.policy)
    .bind(&t.display_name)
    .bind(t.created_at)
    .bind(t.expires_at)
    .bind(t.principal_id.map(|u| u.to_string()))
    .bind(t.org_id.map(|u| u.to_string()))
    .bind(t.bound_spki.clone())
    .bind(t.family_id.clone())
    .bind(t.parent_accessor.clone())
    .bind(t.auth_at)
    .execute(&mut **tx)
    .await
    .map_err(conflict("token exists"))?;
    Ok(())
}
