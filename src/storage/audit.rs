//! Storage of the audit log: an append-only hash chain of records, signed
//! checkpoints of its head, and the audit key under the root key.
//!
//! A trait of its own ([`AuditStore`], a supertrait of [`super::Backend`]),
//! implemented once for [`SqlBackend`] in portable SQL. The chain itself
//! (hashes, signatures) is computed by the service (`service/audit`); this
//! layer stores rows and enforces the one invariant it can: sequence
//! numbers are unique, so two writers that raced for the same position
//! cannot both land ([`StorageError::Conflict`]; the loser re-reads the head).
//!
//! The database refuses UPDATE and DELETE of audit rows (triggers; on
//! PostgreSQL also missing privileges), except deleting records at or below
//! a prune checkpoint, which [`AuditStore::prune_audit`] does in the same
//! transaction that stores that checkpoint.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use super::db::{conflict, query};
use super::{Backend, Result, SqlBackend, StorageError};

/// One stored audit record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRow {
    /// position in the chain, from 1, without gaps
    pub seq: i64,
    /// unix ms
    pub time: i64,
    /// the request's id (`X-Request-Id`)
    pub request_id: String,
    /// root | user | service_account | anonymous
    pub actor_kind: String,
    /// email, service-account name, "root" or ""
    pub actor: String,
    /// token accessor or ""
    pub accessor: String,
    /// hex SHA-256 of the client certificate's SPKI or ""
    pub cert_spki: String,
    /// client IP or ""
    pub source: String,
    /// HTTP method
    pub method: String,
    /// e.g. `secret.reveal`
    pub action: String,
    /// request path without the query
    pub resource: String,
    /// organization slug or ""
    pub org: String,
    /// allowed | denied | error
    pub outcome: String,
    /// HTTP status
    pub status: i64,
    /// error code or ""
    pub reason: String,
    /// small JSON object with extra facts (value count…)
    pub detail: String,
    /// hash of the record before (32 zero bytes for the first)
    pub prev_hash: Vec<u8>,
    /// this record's hash
    pub hash: Vec<u8>,
}

impl AuditRow {
    /// The text fields from `request_id` to `outcome`, in column order
    /// (the chain hash and the batch encoding both walk them).
    pub fn texts(&self) -> [&str; 11] {
        [
            &self.request_id,
            &self.actor_kind,
            &self.actor,
            &self.accessor,
            &self.cert_spki,
            &self.source,
            &self.method,
            &self.action,
            &self.resource,
            &self.org,
            &self.outcome,
        ]
    }
}

/// A signed chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// the record it covers
    pub seq: i64,
    /// that record's hash
    pub hash: Vec<u8>,
    /// unix ms
    pub time: i64,
    /// periodic | prune
    pub kind: String,
    /// HMAC-SHA256 under the audit key
    pub mac: Vec<u8>,
}

/// Search criteria; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// exact actor
    pub actor: Option<String>,
    /// exact action, or a prefix when it ends in `.` (`secret.`)
    pub action: Option<String>,
    /// resource prefix
    pub resource: Option<String>,
    /// exact organization slug
    pub org: Option<String>,
    /// allowed | denied | error
    pub outcome: Option<String>,
    /// unix ms, inclusive
    pub since: Option<i64>,
    /// unix ms, exclusive
    pub until: Option<i64>,
    /// only records after this sequence number (paging)
    pub after_seq: Option<i64>,
    /// only records before this sequence number (paging newest first)
    pub before_seq: Option<i64>,
    /// newest first (the dashboard's order) instead of oldest first
    pub newest_first: bool,
    /// at most this many
    pub limit: i64,
}

/// The audit log's storage.
#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug {
    /// Sequence number and hash of the newest record (or of the newest
    /// prune checkpoint when every record was pruned).
    async fn audit_head(&self) -> Result<Option<(i64, Vec<u8>)>>;
    /// Append records in one transaction; `Conflict` if a sequence number
    /// is taken (another writer got there first).
    async fn append_audit(&self, rows: &[AuditRow]) -> Result<()>;
    /// Up to `limit` records after `after_seq`, in order.
    async fn audit_range(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>>;
    /// Records matching `f`, oldest first (newest first when asked).
    async fn search_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRow>>;
    /// Every checkpoint, oldest first.
    async fn audit_checkpoints(&self) -> Result<Vec<CheckpointRow>>;
    /// Store a periodic checkpoint; `Conflict` if one covers that record already.
    async fn add_audit_checkpoint(&self, c: &CheckpointRow) -> Result<()>;
    /// Store a prune checkpoint and delete the records it covers, in one
    /// transaction; returns how many were deleted.
    async fn prune_audit(&self, c: &CheckpointRow) -> Result<u64>;
    /// The audit key, encrypted under the root key.
    async fn audit_key(&self) -> Result<Option<Vec<u8>>>;
    /// Store the audit key unless one exists; returns the one stored.
    async fn put_audit_key(&self, wrapped: &[u8], now: i64) -> Result<Vec<u8>>;
}

const COLUMNS: &str = "seq, time, request_id, actor_kind, actor, accessor, cert_spki, source, method, action, \
     resource, org, outcome, status, reason, detail, prev_hash, hash";

/// One INSERT for a whole batch, whatever its size: the rows travel as one
/// JSON array of arrays (fields in [`COLUMNS`] order, hashes in hex), so
/// the statement is prepared once per connection and binds one parameter.
/// A statement per batch size instead (`VALUES (…), (…)`, 18 placeholders
/// a row) was re-parsed by SQLite for every batch of an uncached size and
/// bound parameter by parameter: about a tenth of a reveal's server CPU at
/// 32 connections (docs/benchmarks.md, "Audit log"). SQLite walks the array
/// with `jsonb_each`, whose `value` for an inner array is binary JSON, so the
/// 18 `->>` of a row read fields from it directly; `json_each` handed each
/// row back as text, converted from binary and parsed again (4 % of a
/// reveal's CPU at 8 connections).
const INSERT_SQLITE: &str = "INSERT INTO audit_log (seq, time, request_id, actor_kind, actor, accessor, cert_spki, \
     source, method, action, resource, org, outcome, status, reason, detail, prev_hash, hash) \
     SELECT r ->> 0, r ->> 1, r ->> 2, r ->> 3, r ->> 4, r ->> 5, r ->> 6, r ->> 7, r ->> 8, r ->> 9, \
     r ->> 10, r ->> 11, r ->> 12, r ->> 13, r ->> 14, r ->> 15, unhex(r ->> 16), unhex(r ->> 17) \
     FROM (SELECT value AS r FROM jsonb_each($1))";
const INSERT_POSTGRES: &str = "INSERT INTO audit_log (seq, time, request_id, actor_kind, actor, accessor, cert_spki, \
     source, method, action, resource, org, outcome, status, reason, detail, prev_hash, hash) \
     SELECT (r ->> 0)::bigint, (r ->> 1)::bigint, r ->> 2, r ->> 3, r ->> 4, r ->> 5, r ->> 6, r ->> 7, r ->> 8, \
     r ->> 9, r ->> 10, r ->> 11, r ->> 12, (r ->> 13)::bigint, r ->> 14, r ->> 15, \
     decode(r ->> 16, 'hex'), decode(r ->> 17, 'hex') \
     FROM json_array_elements($1::json) AS r";

/// A row as one element of the batch parameter: a JSON array of its fields.
struct BatchRow<'a>(&'a AuditRow);

impl serde::Serialize for BatchRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let r = self.0;
        let mut t = s.serialize_tuple(18)?;
        t.serialize_element(&r.seq)?;
        t.serialize_element(&r.time)?;
        for f in r.texts() {
            t.serialize_element(f)?;
        }
        t.serialize_element(&r.status)?;
        t.serialize_element(&r.reason)?;
        t.serialize_element(&r.detail)?;
        t.serialize_element(&hex::encode(&r.prev_hash))?;
        t.serialize_element(&hex::encode(&r.hash))?;
        t.end()
    }
}

/// The batch as the JSON parameter of [`INSERT_SQLITE`] / [`INSERT_POSTGRES`].
fn batch_json(rows: &[AuditRow]) -> Result<String> {
    let rows: Vec<BatchRow<'_>> = rows.iter().map(BatchRow).collect();
    serde_json::to_string(&rows).map_err(|e| StorageError::Corrupt {
        table: "audit_log",
        what: format!("a record cannot be encoded: {e}"),
    })
}

fn audit_row(r: &AnyRow) -> Result<AuditRow> {
    Ok(AuditRow {
        seq: r.try_get("seq")?,
        time: r.try_get("time")?,
        request_id: r.try_get("request_id")?,
        actor_kind: r.try_get("actor_kind")?,
        actor: r.try_get("actor")?,
        accessor: r.try_get("accessor")?,
        cert_spki: r.try_get("cert_spki")?,
        source: r.try_get("source")?,
        method: r.try_get("method")?,
        action: r.try_get("action")?,
        resource: r.try_get("resource")?,
        org: r.try_get("org")?,
        outcome: r.try_get("outcome")?,
        status: r.try_get("status")?,
        reason: r.try_get("reason")?,
        detail: r.try_get("detail")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

fn checkpoint_row(r: &AnyRow) -> Result<CheckpointRow> {
    Ok(CheckpointRow {
        seq: r.try_get("seq")?,
        hash: r.try_get("hash")?,
        time: r.try_get("time")?,
        kind: r.try_get("kind")?,
        mac: r.try_get("mac")?,
    })
}

async fn insert_checkpoint(conn: &mut sqlx::AnyConnection, c: &CheckpointRow) -> Result<()> {
    query("INSERT INTO audit_checkpoints (seq, hash, time, kind, mac) VALUES ($1, $2, $3, $4, $5)")
        .bind(c.seq)
        .bind(&c.hash)
        .bind(c.time)
        .bind(&c.kind)
        .bind(&c.mac)
        .execute(conn)
        .await
        .map_err(conflict("an audit checkpoint covers this record already"))?;
    Ok(())
}

#[async_trait]
impl AuditStore for SqlBackend {
    async fn audit_head(&self) -> Result<Option<(i64, Vec<u8>)>> {
        let mut row = query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(self.pool())
            .await?;
        if row.is_none() {
            // Everything was pruned: the chain goes on from the prune checkpoint.
            row = query("SELECT seq, hash FROM audit_checkpoints WHERE kind = 'prune' ORDER BY seq DESC LIMIT 1")
                .fetch_optional(self.pool())
                .await?;
        }
        Ok(match row {
            Some(r) => Some((r.try_get("seq")?, r.try_get("hash")?)),
            None => None,
        })
    }

    async fn append_audit(&self, rows: &[AuditRow]) -> Result<()> {
        let sql = if self.kind() == "postgres" {
            INSERT_POSTGRES
        } else {
            INSERT_SQLITE
        };
        // One statement is atomic by itself: no BEGIN/COMMIT round trips.
        query(sql)
            .bind(batch_json(rows)?)
            .execute(self.writes())
            .await
            .map_err(conflict("another writer appended to the audit log"))?;
        Ok(())
    }

    async fn audit_range(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(audit_row).collect()
    }

    async fn search_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRow>> {
        // Conditions are fixed text; only placeholders are numbered here.
        let mut sql = format!("SELECT {COLUMNS} FROM audit_log WHERE 1 = 1");
        let mut texts: Vec<String> = Vec::new();
        let mut n = 0;
        let mut cond = |sql: &mut String, clause: &str| {
            n += 1;
            sql.push_str(&clause.replace('?', &format!("${n}")));
        };
        if let Some(v) = &f.actor {
            cond(&mut sql, " AND actor = ?");
            texts.push(v.clone());
        }
        if let Some(v) = &f.action {
            if let Some(prefix) = v.strip_suffix('.') {
                // one placeholder, used twice
                cond(&mut sql, " AND substr(action, 1, length(?)) = ?");
                texts.push(format!("{prefix}."));
            } else {
                cond(&mut sql, " AND action = ?");
                texts.push(v.clone());
            }
        }
        if let Some(v) = &f.resource {
            cond(&mut sql, " AND substr(resource, 1, length(?)) = ?");
            texts.push(v.clone());
        }
        if let Some(v) = &f.org {
            cond(&mut sql, " AND org = ?");
            texts.push(v.clone());
        }
        if let Some(v) = &f.outcome {
            cond(&mut sql, " AND outcome = ?");
            texts.push(v.clone());
        }
        let mut ints: Vec<i64> = Vec::new();
        if let Some(v) = f.since {
            cond(&mut sql, " AND time >= ?");
            ints.push(v);
        }
        if let Some(v) = f.until {
            cond(&mut sql, " AND time < ?");
            ints.push(v);
        }
        if let Some(v) = f.after_seq {
            cond(&mut sql, " AND seq > ?");
            ints.push(v);
        }
        if let Some(v) = f.before_seq {
            cond(&mut sql, " AND seq < ?");
            ints.push(v);
        }
        let order = if f.newest_first {
            " ORDER BY seq DESC LIMIT ?"
        } else {
            " ORDER BY seq LIMIT ?"
        };
        cond(&mut sql, order);
        ints.push(f.limit);
        let mut stmt = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for t in texts {
            stmt = stmt.bind(t);
        }
        for i in ints {
            stmt = stmt.bind(i);
        }
        let rows = stmt.fetch_all(self.pool()).await?;
        rows.iter().map(audit_row).collect()
    }

    async fn audit_checkpoints(&self) -> Result<Vec<CheckpointRow>> {
        let rows = query("SELECT seq, hash, time, kind, mac FROM audit_checkpoints ORDER BY seq")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(checkpoint_row).collect()
    }

    async fn add_audit_checkpoint(&self, c: &CheckpointRow) -> Result<()> {
        let mut conn = self.pool().acquire().await?;
        insert_checkpoint(&mut conn, c).await
    }

    async fn prune_audit(&self, c: &CheckpointRow) -> Result<u64> {
        let mut tx = self.pool().begin().await?;
        insert_checkpoint(&mut tx, c).await?;
        let deleted = if self.kind() == "postgres" {
            let n: i64 = query("SELECT coffer_audit_prune() AS n")
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            n as u64
        } else {
            query("DELETE FROM audit_log WHERE seq <= $1")
                .bind(c.seq)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        };
        tx.commit().await?;
        Ok(deleted)
    }

    async fn audit_key(&self) -> Result<Option<Vec<u8>>> {
        let row = query("SELECT wrapped FROM audit_keys WHERE id = 1")
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("wrapped")?),
            None => None,
        })
    }

    async fn put_audit_key(&self, wrapped: &[u8], now: i64) -> Result<Vec<u8>> {
        query("INSERT INTO audit_keys (id, wrapped, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(wrapped.to_vec())
            .bind(now)
            .execute(self.pool())
            .await?;
        let stored: Vec<u8> = query("SELECT wrapped FROM audit_keys WHERE id = 1")
            .fetch_one(self.pool())
            .await?
            .try_get("wrapped")?;
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_an_array_of_rows_with_fields_in_column_order() {
        let row = AuditRow {
            seq: 7,
            time: 9,
            request_id: "r\"1".into(),
            status: 403,
            detail: "{}".into(),
            prev_hash: vec![0xab; 2],
            hash: vec![0x01, 0xff],
            ..AuditRow::default()
        };
        let json: serde_json::Value =
            serde_json::from_str(&batch_json(&[row.clone(), row]).expect("encodes")).expect("JSON");
        let rows = json.as_array().expect("an array");
        assert_eq!(rows.len(), 2);
        let fields = rows[0].as_array().expect("a row is an array");
        assert_eq!(fields.len(), COLUMNS.split(',').count());
        assert_eq!(fields[0], 7);
        assert_eq!(fields[1], 9);
        assert_eq!(fields[2], "r\"1");
        assert_eq!(fields[13], 403);
        assert_eq!(fields[15], "{}");
        assert_eq!(fields[16], "abab");
        assert_eq!(fields[17], "01ff");
    }
}
