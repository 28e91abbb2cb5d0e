//! Whole-store snapshots for `coffer operator backup|restore`.
//!
//! [`BACKUP_TABLES`] is the one list of what a backup holds: every table,
//! parents before children (restore inserts in this order, so foreign keys
//! hold), each column with its portable kind. A new table or column is added
//! here and nowhere else; a table left out is simply not backed up, so the
//! backup test compares this list with the live schema.
//!
//! Consistency: [`snapshot`](SqlBackend::snapshot) reads every table inside
//! one transaction (PostgreSQL: `REPEATABLE READ, READ ONLY`; SQLite: one
//! deferred transaction, which in WAL mode reads one snapshot). Values stay
//! as stored: ciphertexts, wrapped keys and hashes, never plaintext.
//! Restore writes everything in one transaction into a store that has no
//! keyring, no token, no user and no organization, or writes nothing.
//!
//! On PostgreSQL the tenant tables are under row-level security even for
//! reads, so both directions switch `coffer.org_id` per organization inside
//! the transaction (`act_for`), exactly as the cross-organization
//! operations of the server do.

use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::sql::SqlBackend;
use super::{Backend, Result, StorageError};

/// The portable kind of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// BIGINT / INTEGER (timestamps, counters, 0/1 flags)
    Int,
    /// TEXT (ids, names, slugs)
    Text,
    /// BYTEA / BLOB (ciphertexts, wrapped keys, hashes)
    Bytes,
}

/// One table of a backup.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// table name
    pub name: &'static str,
    /// under row-level security on PostgreSQL: has an `org_id` column
    /// referencing `orgs`
    pub tenant: bool,
    /// columns with their kinds
    pub columns: &'static [(&'static str, Kind)],
}

use Kind::{Bytes, Int, Text};

/// Every table a backup holds, parents first. Extend it with each migration
/// that adds a table or a column (`audit_log` and `audit_checkpoints` of
/// migration 0004 go here); `tests/it/backup.rs` fails while the list and
/// the schema differ. Rows are restored with their ids as stored: a table
/// whose id comes from a PostgreSQL sequence (serial/identity) also needs
/// `setval` to the restored maximum after the inserts in `restore_all`
/// (no table has one today; SQLite's AUTOINCREMENT follows by itself).
pub const BACKUP_TABLES: &[Table] = &[
    Table {
        name: "keyring",
        tenant: false,
        columns: &[
            ("id", Int),
            ("seal_type", Text),
            ("secret_shares", Int),
            ("secret_threshold", Int),
            ("encrypted_root", Bytes),
            ("verify_tag", Bytes),
            ("created_at", Int),
            ("recovery_tag", Bytes),
        ],
    },
    Table {
        name: "users",
        tenant: false,
        columns: &[
            ("id", Text),
            ("email", Text),
            ("password_hash", Text),
            ("totp_secret", Bytes),
            ("totp_enabled", Int),
            ("totp_last_step", Int),
            ("failed_logins", Int),
            ("locked_until", Int),
            ("created_at", Int),
            ("disabled", Int),
            ("orgs_created", Int),
        ],
    },
    Table {
        name: "recovery_codes",
        tenant: false,
        columns: &[("user_id", Text), ("code_hash", Bytes)],
    },
    Table {
        name: "tokens",
        tenant: false,
        columns: &[
            ("accessor", Text),
            ("token_hash", Bytes),
            ("policy", Text),
            ("display_name", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("principal_id", Text),
            ("org_id", Text),
            ("bound_spki", Text),
            ("family_id", Text),
            ("parent_accessor", Text),
            ("auth_at", Int),
        ],
    },
    Table {
        name: "refresh_tokens",
        tenant: false,
        columns: &[
            ("token_hash", Bytes),
            ("family_id", Text),
            ("user_id", Text),
            ("spent", Int),
            ("expires_at", Int),
            ("created_at", Int),
            ("auth_at", Int),
        ],
    },
    Table {
        name: "device_codes",
        tenant: false,
        columns: &[
            ("device_hash", Bytes),
            ("user_code", Text),
            ("user_id", Text),
            ("status", Text),
            ("interval_s", Int),
            ("last_poll", Int),
            ("expires_at", Int),
            ("family_id", Text),
            ("auth_at", Int),
            ("client_agent", Text),
            ("client_ip", Text),
        ],
    },
    Table {
        name: "orgs",
        tenant: false,
        columns: &[
            ("id", Text),
            ("slug", Text),
            ("name", Text),
            ("kek_version", Int),
            ("created_at", Int),
            ("deleted_at", Int),
            ("block_breached_passwords", Int),
        ],
    },
    Table {
        name: "memberships",
        tenant: false,
        columns: &[("org_id", Text), ("user_id", Text), ("role", Text), ("created_at", Int)],
    },
    Table {
        name: "kms_keys",
        tenant: true,
        columns: &[
            ("org_id", Text),
            ("version", Int),
            ("wrapped_key", Bytes),
            ("created_at", Int),
        ],
    },
    Table {
        name: "projects",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("slug", Text),
            ("name", Text),
            ("created_at", Int),
            ("deleted_at", Int),
        ],
    },
    Table {
        name: "environments",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("project_id", Text),
            ("slug", Text),
            ("name", Text),
            ("protected", Int),
            ("created_at", Int),
            ("revision", Int),
            ("deleted_at", Int),
        ],
    },
    Table {
        name: "secrets",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("env_id", Text),
            ("key", Text),
            ("type", Text),
            ("description", Text),
            ("current_version", Int),
            ("deleted_at", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "secret_versions",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("secret_id", Text),
            ("version", Int),
            ("type", Text),
            ("ciphertext", Bytes),
            ("wrapped_dek", Bytes),
            ("kek_version", Int),
            ("created_by", Text),
            ("created_at", Int),
            ("kv_deleted_at", Int),
            ("kv_destroyed", Int),
            ("author", Text),
        ],
    },
    Table {
        name: "kv_metadata",
        tenant: true,
        columns: &[
            ("org_id", Text),
            ("env_id", Text),
            ("key", Text),
            ("max_versions", Int),
            ("cas_required", Int),
            ("delete_version_after", Text),
            ("custom_metadata", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "env_allowed_vars",
        tenant: true,
        columns: &[
            ("org_id", Text),
            ("env_id", Text),
            ("name", Text),
            ("allowed_by", Text),
            ("created_at", Int),
        ],
    },
    // one-time share links (0014): client-side ciphertext only; not under
    // row-level security (opened before any organization is known)
    Table {
        name: "share_links",
        tenant: false,
        columns: &[
            ("id", Text),
            ("lookup", Bytes),
            ("org_id", Text),
            ("created_by", Text),
            ("creator_name", Text),
            ("env_id", Text),
            ("source", Text),
            ("ciphertext", Bytes),
            ("kdf", Text),
            ("max_views", Int),
            ("views_left", Int),
            ("created_at", Int),
            ("expires_at", Int),
        ],
    },
    Table {
        name: "share_policies",
        tenant: true,
        columns: &[
            ("org_id", Text),
            ("max_expiry_s", Int),
            ("min_role", Text),
            ("allow_protected", Int),
            ("updated_at", Int),
        ],
    },
    // protected environments (issue 17)
    Table {
        name: "approval_policies",
        tenant: true,
        columns: &[
            ("org_id", Text),
            ("env_id", Text),
            ("actions", Int),
            ("required", Int),
            ("approver_role", Text),
            ("approver_group", Text),
            ("sa_inject_exempt", Int),
            ("request_ttl_ms", Int),
            ("grant_ttl_ms", Int),
            ("break_glass_ttl_ms", Int),
            ("updated_by", Text),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "approval_requests",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("env_id", Text),
            ("kind", Text),
            ("key", Text),
            ("value_type", Text),
            ("description", Text),
            ("base_version", Int),
            ("rollback_to", Int),
            ("secret_id", Text),
            ("version_id", Text),
            ("ciphertext", Bytes),
            ("wrapped_dek", Bytes),
            ("kek_version", Int),
            ("author_id", Text),
            ("author", Text),
            ("reason", Text),
            ("status", Text),
            ("required", Int),
            ("created_at", Int),
            ("expires_at", Int),
            ("decided_at", Int),
            ("grant_until", Int),
            ("reviewed_by", Text),
            ("review_comment", Text),
        ],
    },
    Table {
        name: "approval_votes",
        tenant: true,
        columns: &[
            ("request_id", Text),
            ("org_id", Text),
            ("approver_id", Text),
            ("approver", Text),
            ("decision", Text),
            ("comment", Text),
            ("created_at", Int),
        ],
    },
    // signed webhooks (issue 17)
    Table {
        name: "webhooks",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("url", Text),
            ("secret", Text),
            ("sealed_secret", Bytes),
            ("kek_version", Int),
            ("events", Text),
            ("format", Text),
            ("created_by", Text),
            ("created_at", Int),
        ],
    },
    Table {
        name: "webhook_deliveries",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("hook_id", Text),
            ("event", Text),
            ("body", Text),
            ("attempts", Int),
            ("next_at", Int),
            ("status", Text),
            ("last_status", Int),
            ("last_error", Text),
            ("created_at", Int),
            ("delivered_at", Int),
        ],
    },
    // JWT/OIDC login (issue 19)
    Table {
        name: "jwt_issuers",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("name", Text),
            ("issuer", Text),
            ("preset", Text),
            ("discovery_url", Text),
            ("jwks_url", Text),
            ("jwks", Text),
            ("created_by", Text),
            ("created_at", Int),
        ],
    },
    Table {
        name: "jwt_roles",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("name", Text),
            ("issuer_id", Text),
            ("audience", Text),
            ("bound_claims", Text),
            ("sa_id", Text),
            ("max_ttl_s", Int),
            ("created_by", Text),
            ("created_at", Int),
        ],
    },
    // database credentials (issue 21)
    Table {
        name: "db_connections",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("name", Text),
            ("project", Text),
            ("environment", Text),
            ("display", Text),
            ("kek_version", Int),
            ("sealed_url", Bytes),
            ("created_by", Text),
            ("created_at", Int),
        ],
    },
    Table {
        name: "db_roles",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("name", Text),
            ("connection_id", Text),
            ("kind", Text),
            ("creation_sql", Text),
            ("revocation_sql", Text),
            ("default_ttl_s", Int),
            ("max_ttl_s", Int),
            ("username", Text),
            ("secret_key", Text),
            ("rotation_period_s", Int),
            ("next_rotation_at", Int),
            ("created_by", Text),
            ("created_at", Int),
        ],
    },
    Table {
        name: "db_leases",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("lease_id", Text),
            ("role_id", Text),
            ("connection_id", Text),
            ("username", Text),
            ("issued_at", Int),
            ("expires_at", Int),
            ("max_expires_at", Int),
            ("status", Text),
            ("revoked_at", Int),
            ("attempts", Int),
            ("last_error", Text),
            ("created_by", Text),
        ],
    },
    // single sign-on (issue 20)
    Table {
        name: "sso_providers",
        tenant: true,
        columns: &[
            ("org_id", Text),
            ("display_name", Text),
            ("issuer", Text),
            ("client_id", Text),
            ("client_secret", Bytes),
            ("kek_version", Int),
            ("scopes", Text),
            ("allowed_domains", Text),
            ("groups_claim", Text),
            ("sso_required", Int),
            ("break_glass", Text),
            ("updated_by", Text),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "sso_states",
        tenant: false,
        columns: &[
            ("state_hash", Bytes),
            ("org_id", Text),
            ("nonce", Text),
            ("pkce_verifier", Text),
            ("redirect_uri", Text),
            ("binding_hash", Bytes),
            ("purpose", Text),
            ("expires_at", Int),
            ("created_at", Int),
        ],
    },
    // CI sync targets (issue 19); the credential stays a ciphertext
    Table {
        name: "ci_sync_targets",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("env_id", Text),
            ("provider", Text),
            ("scope", Text),
            ("api_url", Text),
            ("location", Text),
            ("overwrite_drift", Int),
            ("timeout_ms", Int),
            ("credential", Bytes),
            ("wrapped_dek", Bytes),
            ("kek_version", Int),
            ("created_by", Text),
            ("created_at", Int),
            ("last_success_at", Int),
            ("last_error", Text),
            ("last_error_at", Int),
            ("blocked_until", Int),
            ("drift", Text),
            ("reconciled_at", Int),
        ],
    },
    Table {
        name: "ci_sync_jobs",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("target_id", Text),
            ("key", Text),
            ("version", Int),
            ("op", Text),
            ("attempts", Int),
            ("next_at", Int),
            ("status", Text),
            ("last_error", Text),
            ("created_at", Int),
            ("done_at", Int),
        ],
    },
    Table {
        name: "ci_sync_state",
        tenant: true,
        columns: &[
            ("org_id", Text),
            ("target_id", Text),
            ("key", Text),
            ("version", Int),
            ("written_at", Int),
            ("remote_updated_at", Text),
        ],
    },
    Table {
        name: "kv_config",
        tenant: false,
        columns: &[
            ("id", Int),
            ("max_versions", Int),
            ("cas_required", Int),
            ("delete_version_after", Text),
        ],
    },
    Table {
        name: "groups",
        tenant: true,
        columns: &[("id", Text), ("org_id", Text), ("name", Text), ("created_at", Int)],
    },
    Table {
        name: "group_members",
        tenant: true,
        columns: &[("org_id", Text), ("group_id", Text), ("user_id", Text)],
    },
    Table {
        name: "service_accounts",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("name", Text),
            ("cidrs", Text),
            ("cert_spki_sha256", Text),
            ("cert_subject_cn", Text),
            ("cert_dns_san", Text),
            ("created_at", Int),
        ],
    },
    Table {
        name: "grants",
        tenant: true,
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("subject_kind", Text),
            ("subject_id", Text),
            ("project_id", Text),
            ("env_id", Text),
            ("permissions", Int),
            ("created_at", Int),
        ],
    },
    Table {
        name: "audit_log",
        tenant: false,
        columns: &[
            ("seq", Int),
            ("time", Int),
            ("request_id", Text),
            ("actor_kind", Text),
            ("actor", Text),
            ("accessor", Text),
            ("cert_spki", Text),
            ("source", Text),
            ("method", Text),
            ("action", Text),
            ("resource", Text),
            ("org", Text),
            ("outcome", Text),
            ("status", Int),
            ("reason", Text),
            ("detail", Text),
            ("prev_hash", Bytes),
            ("hash", Bytes),
        ],
    },
    Table {
        name: "audit_checkpoints",
        tenant: false,
        columns: &[
            ("seq", Int),
            ("hash", Bytes),
            ("time", Int),
            ("kind", Text),
            ("mac", Bytes),
        ],
    },
    Table {
        name: "audit_keys",
        tenant: false,
        columns: &[("id", Int), ("wrapped", Bytes), ("created_at", Int)],
    },
    Table {
        name: "idempotency_keys",
        tenant: false,
        columns: &[
            ("principal", Text),
            ("key_hash", Bytes),
            ("fingerprint", Bytes),
            ("status", Int),
            ("content_type", Text),
            ("body", Bytes),
            ("claimed_at", Int),
            ("expires_at", Int),
        ],
    },
];

/// Tables that must be empty for a restore (every tenant table references
/// `orgs`, so an empty `orgs` implies empty tenant tables; on PostgreSQL the
/// tenant tables are invisible without an organization anyway).
const MUST_BE_EMPTY: &[&str] = &[
    "keyring",
    "users",
    "tokens",
    "orgs",
    "refresh_tokens",
    "device_codes",
    "audit_log",
    "audit_checkpoints",
    "audit_keys",
];

/// One stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// SQL NULL
    Null,
    /// integer
    Int(i64),
    /// text
    Text(String),
    /// bytes
    Bytes(Vec<u8>),
}

/// A consistent copy of every row of [`BACKUP_TABLES`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// highest applied migration of the source
    pub schema_version: i64,
    /// (table, rows) in [`BACKUP_TABLES`] order; each row in column order
    pub tables: Vec<(&'static str, Vec<Vec<Cell>>)>,
}

/// The table of that name in [`BACKUP_TABLES`].
pub fn table(name: &str) -> Option<&'static Table> {
    BACKUP_TABLES.iter().find(|t| t.name == name)
}

fn select_sql(t: &Table) -> String {
    let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
    let filter = if t.tenant { " WHERE org_id = $1" } else { "" };
    format!("SELECT {} FROM {}{}", cols.join(", "), t.name, filter)
}

fn insert_sql(t: &Table) -> String {
    let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
    let params: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        t.name,
        cols.join(", "),
        params.join(", ")
    )
}

fn cells(t: &Table, r: &AnyRow) -> Result<Vec<Cell>> {
    t.columns
        .iter()
        .map(|(c, kind)| {
            let cell = match kind {
                Int => r.try_get::<Option<i64>, _>(*c)?.map(Cell::Int),
                Text => r.try_get::<Option<String>, _>(*c)?.map(Cell::Text),
                Bytes => r.try_get::<Option<Vec<u8>>, _>(*c)?.map(Cell::Bytes),
            };
            Ok(cell.unwrap_or(Cell::Null))
        })
        .collect()
}

async fn schema_version(conn: &mut sqlx::AnyConnection) -> Result<i64> {
    let v: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut *conn)
        .await?
        .try_get("v")?;
    Ok(v.unwrap_or(0))
}

impl SqlBackend {
    /// Read every row of [`BACKUP_TABLES`] in one consistent snapshot.
    pub(super) async fn snapshot_all(&self) -> Result<Snapshot> {
        let mut tx = self.pool().begin().await?;
        if self.kind() == "postgres" {
            // Must be the transaction's first statement.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let schema_version = schema_version(&mut tx).await?;
        let orgs: Vec<Uuid> = sqlx::query("SELECT id FROM orgs ORDER BY id")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| super::db::uuid(r, "id", "orgs"))
            .collect::<Result<_>>()?;
        let mut tables = Vec::with_capacity(BACKUP_TABLES.len());
        for t in BACKUP_TABLES {
            let sql = select_sql(t);
            let mut rows = Vec::new();
            if t.tenant {
                for org in &orgs {
                    self.act_for(&mut tx, *org).await?;
                    for r in sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                        .bind(org.to_string())
                        .fetch_all(&mut *tx)
                        .await?
                    {
                        rows.push(cells(t, &r)?);
                    }
                }
            } else {
                for r in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *tx).await? {
                    rows.push(cells(t, &r)?);
                }
            }
            tables.push((t.name, rows));
        }
        tx.rollback().await?;
        Ok(Snapshot { schema_version, tables })
    }

    /// Write a snapshot into this store, which must be empty, in one
    /// transaction. `progress` is told (table, rows) after each table.
    pub(super) async fn restore_all(
        &self,
        snap: &Snapshot,
        progress: &mut (dyn FnMut(&str, usize) + Send + '_),
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let here = schema_version(&mut tx).await?;
        if here != snap.schema_version {
            return Err(StorageError::Restore(format!(
                "the backup has schema version {} and this store {here}: restore with the coffer \
                 version that made the backup",
                snap.schema_version
            )));
        }
        for name in MUST_BE_EMPTY {
            let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {name}")))
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            if n > 0 {
                return Err(StorageError::Restore(format!(
                    "the target store is not empty (table {name} has {n} rows): restore only into a new, empty store"
                )));
            }
        }
        for (name, rows) in &snap.tables {
            let t = table(name).ok_or_else(|| StorageError::Restore(format!("unknown table {name:?}")))?;
            let sql = insert_sql(t);
            let org_col = t.columns.iter().position(|(c, _)| *c == "org_id");
            let mut acting: Option<String> = None;
            for row in rows {
                if t.tenant
                    && let Some(Cell::Text(org)) = org_col.and_then(|i| row.get(i))
                    && acting.as_deref() != Some(org.as_str())
                {
                    let id = Uuid::parse_str(org).map_err(|_| StorageError::Corrupt {
                        table: t.name,
                        what: "org_id is not a UUID".into(),
                    })?;
                    self.act_for(&mut tx, id).await?;
                    acting = Some(org.clone());
                }
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for ((_, kind), cell) in t.columns.iter().zip(row) {
                    q = match (cell, kind) {
                        (Cell::Null, Int) => q.bind(None::<i64>),
                        (Cell::Null, Text) => q.bind(None::<String>),
                        (Cell::Null, Bytes) => q.bind(None::<Vec<u8>>),
                        (Cell::Int(v), _) => q.bind(*v),
                        (Cell::Text(v), _) => q.bind(v.clone()),
                        (Cell::Bytes(v), _) => q.bind(v.clone()),
                    };
                }
                q.execute(&mut *tx).await?;
            }
            progress(name, rows.len());
        }
        tx.commit().await?;
        self.drop_caches();
        Ok(())
    }
}
