//! Storage of protected environments (issue 17): each environment's
//! approval policy, the change and access requests with their votes, and
//! break-glass windows (requests of kind `break_glass`). A trait of its own
//! ([`ApprovalStore`], a supertrait of [`super::Backend`]), implemented once
//! here for [`SqlBackend`] in portable SQL. Tenant rows: every query filters
//! on `org_id` (and PostgreSQL's row-level security checks it again). A
//! proposed value is stored as a version is: ciphertext under its own DEK,
//! wrapped by the organization's KEK; never in clear.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::db::{conflict, opt_uuid, query, uuid};
use super::{Result, SqlBackend};

/// The approval policy of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    /// organization
    pub org_id: Uuid,
    /// environment
    pub env_id: Uuid,
    /// bits of the actions that need approval (see `service::approvals`)
    pub actions: i64,
    /// approvals needed, 1-5
    pub required: i64,
    /// "admin" (owners and admins approve) or ""
    pub approver_role: String,
    /// a group whose members approve, or None
    pub approver_group: Option<Uuid>,
    /// service accounts inject without approval
    pub sa_inject_exempt: bool,
    /// pending requests expire after this (ms)
    pub request_ttl_ms: i64,
    /// an approved reveal/export lasts this long (ms)
    pub grant_ttl_ms: i64,
    /// a break-glass window lasts this long (ms)
    pub break_glass_ttl_ms: i64,
    /// actor name
    pub updated_by: String,
    /// unix ms
    pub updated_at: i64,
}

/// A change request, an access request or a break-glass window. Its Debug
/// shows no ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// environment
    pub env_id: Uuid,
    /// write | delete | rollback | reveal | export | break_glass
    pub kind: String,
    /// the secret ("" for export and break-glass)
    pub key: String,
    /// value type of the proposed version
    pub value_type: String,
    /// a write's new description (None keeps it)
    pub description: Option<String>,
    /// the version the change was made against (0: a new key)
    pub base_version: i64,
    /// a rollback's source version
    pub rollback_to: Option<i64>,
    /// the secret the proposed version belongs to
    pub secret_id: Option<Uuid>,
    /// the proposed version's row id (AAD of its DEK)
    pub version_id: Option<Uuid>,
    /// proposed value, encrypted by its DEK
    pub ciphertext: Option<Vec<u8>>,
    /// its DEK, wrapped by the org KEK
    pub wrapped_dek: Option<Vec<u8>>,
    /// which KEK version wrapped the DEK
    pub kek_version: Option<i64>,
    /// user or service account id (nil: root)
    pub author_id: Uuid,
    /// kind:name
    pub author: String,
    /// break-glass reason, or the requester's note
    pub reason: String,
    /// pending | applied | approved | rejected | stale | expired |
    /// unreviewed | accepted | flagged
    pub status: String,
    /// approvals needed
    pub required: i64,
    /// unix ms
    pub created_at: i64,
    /// unix ms: a pending request expires then
    pub expires_at: i64,
    /// unix ms of the decision
    pub decided_at: Option<i64>,
    /// unix ms: an approved reveal/export or a break-glass window ends then
    pub grant_until: Option<i64>,
    /// who reviewed a break-glass window (kind:name)
    pub reviewed_by: Option<String>,
    /// the review's comment
    pub review_comment: Option<String>,
}

impl std::fmt::Debug for RequestRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestRow")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// One approver's decision on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRow {
    /// the request
    pub request_id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// user id (nil: root)
    pub approver_id: Uuid,
    /// kind:name
    pub approver: String,
    /// approve | reject
    pub decision: String,
    /// free text
    pub comment: String,
    /// unix ms
    pub created_at: i64,
}

/// The storage of protected environments.
#[async_trait]
pub trait ApprovalStore: Send + Sync + std::fmt::Debug {
    /// The policy of an environment.
    async fn approval_policy(&self, org_id: Uuid, env_id: Uuid) -> Result<Option<PolicyRow>>;
    /// Every policy of an organization.
    async fn approval_policies(&self, org_id: Uuid) -> Result<Vec<PolicyRow>>;
    /// Create or replace an environment's policy.
    async fn put_approval_policy(&self, row: &PolicyRow) -> Result<()>;
    /// Remove an environment's policy; false when it had none.
    async fn delete_approval_policy(&self, org_id: Uuid, env_id: Uuid) -> Result<bool>;
    /// Store a new request.
    async fn insert_request(&self, row: &RequestRow) -> Result<()>;
    /// One request of an organization.
    async fn request(&self, org_id: Uuid, id: Uuid) -> Result<Option<RequestRow>>;
    /// The requests of an organization, newest first, at most `limit`.
    async fn requests(&self, org_id: Uuid, limit: i64) -> Result<Vec<RequestRow>>;
    /// The access `author_id` holds at `now`: approved reveal/export
    /// requests and break-glass windows whose `grant_until` is later.
    async fn active_grants(&self, org_id: Uuid, author_id: Uuid, now: i64) -> Result<Vec<RequestRow>>;
    /// Record a vote; [`super::StorageError::Conflict`] if this approver
    /// voted on the request already.
    async fn add_vote(&self, row: &VoteRow) -> Result<()>;
    /// The votes on a request, oldest first.
    async fn votes(&self, org_id: Uuid, request_id: Uuid) -> Result<Vec<VoteRow>>;
    /// Compare-and-set a request's status from `from` to `to`; false when
    /// it was not `from` (someone else moved it first).
    async fn set_request_status(
        &self,
        org_id: Uuid,
        id: Uuid,
        (from, to): (&str, &str),
        decided_at: i64,
        grant_until: Option<i64>,
    ) -> Result<bool>;
    /// Review an `unreviewed` break-glass window (status `accepted` or
    /// `flagged`); false when it was reviewed already.
    async fn review_request(
        &self,
        org_id: Uuid,
        id: Uuid,
        status: &str,
        by: &str,
        comment: &str,
        at: i64,
    ) -> Result<bool>;
    /// Soft-delete a live secret only if its current version is still
    /// `version` (an approved delete); false when it moved on.
    async fn delete_secret_if(&self, org_id: Uuid, secret_id: Uuid, version: i64, now: i64) -> Result<bool>;
    /// Mark every pending request whose `expires_at` is before `now`
    /// `expired`, in every organization; returns them.
    async fn expire_requests(&self, now: i64) -> Result<Vec<RequestRow>>;
}

const REQUEST_COLUMNS: &str = "id, org_id, env_id, kind, key, value_type, description, base_version, rollback_to, \
     secret_id, version_id, ciphertext, wrapped_dek, kek_version, author_id, author, reason, status, required, \
     created_at, expires_at, decided_at, grant_until, reviewed_by, review_comment";

fn policy_row(r: &AnyRow) -> Result<PolicyRow> {
    Ok(PolicyRow {
        org_id: uuid(r, "org_id", "approval_policies")?,
        env_id: uuid(r, "env_id", "approval_policies")?,
        actions: r.try_get("actions")?,
        required: r.try_get("required")?,
        approver_role: r.try_get("approver_role")?,
        approver_group: {
            let g: String = r.try_get("approver_group")?;
            if g.is_empty() {
                None
            } else {
                Some(uuid(r, "approver_group", "approval_policies")?)
            }
        },
        sa_inject_exempt: r.try_get::<i64, _>("sa_inject_exempt")? != 0,
        request_ttl_ms: r.try_get("request_ttl_ms")?,
        grant_ttl_ms: r.try_get("grant_ttl_ms")?,
        break_glass_ttl_ms: r.try_get("break_glass_ttl_ms")?,
        updated_by: r.try_get("updated_by")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn request_row(r: &AnyRow) -> Result<RequestRow> {
    const T: &str = "approval_requests";
    Ok(RequestRow {
        id: uuid(r, "id", T)?,
        org_id: uuid(r, "org_id", T)?,
        env_id: uuid(r, "env_id", T)?,
        kind: r.try_get("kind")?,
        key: r.try_get("key")?,
        value_type: r.try_get("value_type")?,
        description: r.try_get("description")?,
        base_version: r.try_get("base_version")?,
        rollback_to: r.try_get("rollback_to")?,
        secret_id: opt_uuid(r, "secret_id", T)?,
        version_id: opt_uuid(r, "version_id", T)?,
        ciphertext: r.try_get("ciphertext")?,
        wrapped_dek: r.try_get("wrapped_dek")?,
        kek_version: r.try_get("kek_version")?,
        author_id: uuid(r, "author_id", T)?,
        author: r.try_get("author")?,
        reason: r.try_get("reason")?,
        status: r.try_get("status")?,
        required: r.try_get("required")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        decided_at: r.try_get("decided_at")?,
        grant_until: r.try_get("grant_until")?,
        reviewed_by: r.try_get("reviewed_by")?,
        review_comment: r.try_get("review_comment")?,
    })
}

fn vote_row(r: &AnyRow) -> Result<VoteRow> {
    Ok(VoteRow {
        request_id: uuid(r, "request_id", "approval_votes")?,
        org_id: uuid(r, "org_id", "approval_votes")?,
        approver_id: uuid(r, "approver_id", "approval_votes")?,
        approver: r.try_get("approver")?,
        decision: r.try_get("decision")?,
        comment: r.try_get("comment")?,
        created_at: r.try_get("created_at")?,
    })
}

fn select(sql: String) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query::<sqlx::Any>(sqlx::AssertSqlSafe(sql))
}

#[async_trait]
impl ApprovalStore for SqlBackend {
    async fn approval_policy(&self, org_id: Uuid, env_id: Uuid) -> Result<Option<PolicyRow>> {
        let row = query("SELECT * FROM approval_policies WHERE org_id = $1 AND env_id = $2")
            .bind(org_id.to_string())
            .bind(env_id.to_string())
            .fetch_optional(&mut *self.tenant(org_id).await?)
            .await?;
        row.as_ref().map(policy_row).transpose()
    }

    async fn approval_policies(&self, org_id: Uuid) -> Result<Vec<PolicyRow>> {
        let rows = query("SELECT * FROM approval_policies WHERE org_id = $1 ORDER BY env_id")
            .bind(org_id.to_string())
            .fetch_all(&mut *self.tenant(org_id).await?)
            .await?;
        rows.iter().map(policy_row).collect()
    }

    async fn put_approval_policy(&self, p: &PolicyRow) -> Result<()> {
        let mut tx = self.tenant_tx(p.org_id).await?;
        query("DELETE FROM approval_policies WHERE org_id = $1 AND env_id = $2")
            .bind(p.org_id.to_string())
            .bind(p.env_id.to_string())
            .execute(&mut *tx)
            .await?;
        query(
            "INSERT INTO approval_policies (org_id, env_id, actions, required, approver_role, approver_group, \
             sa_inject_exempt, request_ttl_ms, grant_ttl_ms, break_glass_ttl_ms, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(p.org_id.to_string())
        .bind(p.env_id.to_string())
        .bind(p.actions)
        .bind(p.required)
        .bind(p.approver_role.clone())
        .bind(p.approver_group.map(|g| g.to_string()).unwrap_or_default())
        .bind(i64::from(p.sa_inject_exempt))
        .bind(p.request_ttl_ms)
        .bind(p.grant_ttl_ms)
        .bind(p.break_glass_ttl_ms)
        .bind(p.updated_by.clone())
        .bind(p.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_approval_policy(&self, org_id: Uuid, env_id: Uuid) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query("DELETE FROM approval_policies WHERE org_id = $1 AND env_id = $2")
            .bind(org_id.to_string())
            .bind(env_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_request(&self, r: &RequestRow) -> Result<()> {
        let mut tx = self.tenant_tx(r.org_id).await?;
        query(
            "INSERT INTO approval_requests (id, org_id, env_id, kind, key, value_type, description, base_version, \
             rollback_to, secret_id, version_id, ciphertext, wrapped_dek, kek_version, author_id, author, reason, \
             status, required, created_at, expires_at, decided_at, grant_until, reviewed_by, review_comment) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
             $21, $22, $23, $24, $25)",
        )
        .bind(r.id.to_string())
        .bind(r.org_id.to_string())
        .bind(r.env_id.to_string())
        .bind(r.kind.clone())
        .bind(r.key.clone())
        .bind(r.value_type.clone())
        .bind(r.description.clone())
        .bind(r.base_version)
        .bind(r.rollback_to)
        .bind(r.secret_id.map(|u| u.to_string()))
        .bind(r.version_id.map(|u| u.to_string()))
        .bind(r.ciphertext.clone())
        .bind(r.wrapped_dek.clone())
        .bind(r.kek_version)
        .bind(r.author_id.to_string())
        .bind(r.author.clone())
        .bind(r.reason.clone())
        .bind(r.status.clone())
        .bind(r.required)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.decided_at)
        .bind(r.grant_until)
        .bind(r.reviewed_by.clone())
        .bind(r.review_comment.clone())
        .execute(&mut *tx)
        .await
        .map_err(conflict("request id"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn request(&self, org_id: Uuid, id: Uuid) -> Result<Option<RequestRow>> {
        let row = select(format!(
            "SELECT {REQUEST_COLUMNS} FROM approval_requests WHERE org_id = $1 AND id = $2"
        ))
        .bind(org_id.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *self.tenant(org_id).await?)
        .await?;
        row.as_ref().map(request_row).transpose()
    }

    async fn requests(&self, org_id: Uuid, limit: i64) -> Result<Vec<RequestRow>> {
        let rows = select(format!(
            "SELECT {REQUEST_COLUMNS} FROM approval_requests WHERE org_id = $1 \
             ORDER BY created_at DESC, id LIMIT $2"
        ))
        .bind(org_id.to_string())
        .bind(limit)
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(request_row).collect()
    }

    async fn active_grants(&self, org_id: Uuid, author_id: Uuid, now: i64) -> Result<Vec<RequestRow>> {
        let rows = select(format!(
            "SELECT {REQUEST_COLUMNS} FROM approval_requests WHERE org_id = $1 AND author_id = $2 \
             AND grant_until > $3 AND (status = 'approved' OR kind = 'break_glass')"
        ))
        .bind(org_id.to_string())
        .bind(author_id.to_string())
        .bind(now)
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(request_row).collect()
    }

    async fn add_vote(&self, v: &VoteRow) -> Result<()> {
        let mut tx = self.tenant_tx(v.org_id).await?;
        query(
            "INSERT INTO approval_votes (request_id, org_id, approver_id, approver, decision, comment, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(v.request_id.to_string())
        .bind(v.org_id.to_string())
        .bind(v.approver_id.to_string())
        .bind(v.approver.clone())
        .bind(v.decision.clone())
        .bind(v.comment.clone())
        .bind(v.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict("vote"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn votes(&self, org_id: Uuid, request_id: Uuid) -> Result<Vec<VoteRow>> {
        let rows = query(
            "SELECT * FROM approval_votes WHERE org_id = $1 AND request_id = $2 ORDER BY created_at, approver_id",
        )
        .bind(org_id.to_string())
        .bind(request_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(vote_row).collect()
    }

    async fn set_request_status(
        &self,
        org_id: Uuid,
        id: Uuid,
        (from, to): (&str, &str),
        decided_at: i64,
        grant_until: Option<i64>,
    ) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query(
            "UPDATE approval_requests SET status = $1, decided_at = $2, grant_until = $3 \
             WHERE org_id = $4 AND id = $5 AND status = $6",
        )
        .bind(to.to_owned())
        .bind(decided_at)
        .bind(grant_until)
        .bind(org_id.to_string())
        .bind(id.to_string())
        .bind(from.to_owned())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn review_request(
        &self,
        org_id: Uuid,
        id: Uuid,
        status: &str,
        by: &str,
        comment: &str,
        at: i64,
    ) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query(
            "UPDATE approval_requests SET status = $1, reviewed_by = $2, review_comment = $3, decided_at = $4 \
             WHERE org_id = $5 AND id = $6 AND status = 'unreviewed'",
        )
        .bind(status.to_owned())
        .bind(by.to_owned())
        .bind(comment.to_owned())
        .bind(at)
        .bind(org_id.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_secret_if(&self, org_id: Uuid, secret_id: Uuid, version: i64, now: i64) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query(
            "UPDATE secrets SET deleted_at = $1, updated_at = $1 \
             WHERE org_id = $2 AND id = $3 AND current_version = $4 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(org_id.to_string())
        .bind(secret_id.to_string())
        .bind(version)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        // The inject cache keys on the environment's revision (secrets.rs).
        query(
            "UPDATE environments SET revision = revision + 1 \
             WHERE org_id = $1 AND id = (SELECT env_id FROM secrets WHERE org_id = $1 AND id = $2)",
        )
        .bind(org_id.to_string())
        .bind(secret_id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn expire_requests(&self, now: i64) -> Result<Vec<RequestRow>> {
        let orgs = query("SELECT id FROM orgs ORDER BY id").fetch_all(self.pool()).await?;
        let mut out = Vec::new();
        for r in &orgs {
            let org_id = uuid(r, "id", "orgs")?;
            let mut tx = self.tenant_tx(org_id).await?;
            let due = select(format!(
                "SELECT {REQUEST_COLUMNS} FROM approval_requests \
                 WHERE org_id = $1 AND status = 'pending' AND expires_at < $2"
            ))
            .bind(org_id.to_string())
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for row in &due {
                let mut req = request_row(row)?;
                let done = query(
                    "UPDATE approval_requests SET status = 'expired', decided_at = $1 \
                     WHERE org_id = $2 AND id = $3 AND status = 'pending'",
                )
                .bind(now)
                .bind(org_id.to_string())
                .bind(req.id.to_string())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 1 {
                    req.status = "expired".to_owned();
                    req.decided_at = Some(now);
                    out.push(req);
                }
            }
            tx.commit().await?;
        }
        Ok(out)
    }
}
