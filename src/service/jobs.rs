//! Background jobs that must run on one server at a time.
//!
//! A [`Job`] is a name, a period and an async function over the service.
//! Every server runs a ticker per job, aligned to the wall clock (ticks at
//! multiples of the period since the Unix epoch), but only the server
//! holding the job's lock runs it: on PostgreSQL a session advisory lock
//! (`pg_try_advisory_lock`) on a dedicated connection, held for as long as
//! that connection lives; on SQLite the lock is trivially local. The holder
//! keeps the lock from tick to tick, so each period's run happens exactly
//! once across the cluster; when the holder dies its session ends, the lock
//! is freed, and another server takes over at its next tick.
//!
//! Registering a job: build it with [`Job::new`] and pass it to
//! [`Coffer::spawn_jobs`] with the built-in ones ([`builtin`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::{Coffer, Result, now_ms};
use crate::storage::cluster::JobLock;

type JobFn = Arc<dyn Fn(Coffer) -> Pin<Box<dyn Future<Output = Result<String>> + Send>> + Send + Sync>;

/// A periodic job.
#[derive(Clone)]
pub struct Job {
    name: &'static str,
    period: Duration,
    run: JobFn,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// A job `name` (also its lock's name) run every `period` by `f`, which
    /// returns a one-line summary for the log (no secrets).
    pub fn new<F, Fut>(name: &'static str, period: Duration, f: F) -> Job
    where
        F: Fn(Coffer) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String>> + Send + 'static,
    {
        Job {
            name,
            period: period.max(Duration::from_millis(100)),
            run: Arc::new(move |c| Box::pin(f(c))),
        }
    }
}

/// The jobs every server runs: purge of expired tokens, refresh tokens and
/// device codes; purge of organizations, projects and environments whose
/// deletion window has ended (audited, `service::lifecycle`); purge of
/// expired share links (audited, `service::shares`); purge of idempotency
/// keys older than 24 h (`service::idempotency`); expiry of pending
/// approval requests (audited, `service::approvals`); delivery of queued
/// webhooks (`service::webhooks`, every `min(period, 5 s)`); revocation of
/// expired database leases and rotation of due static database roles
/// (audited, `service::dbcreds`, every `min(period, 5 s)`); CI sync jobs
/// and reconcile (`service::ci_sync`, every `min(period, 5 s)`).
pub fn builtin(period: Duration) -> Vec<Job> {
    vec![
        Job::new("purge_expired", period, |c: Coffer| async move {
            let n = c.operator.store.purge_expired(now_ms()).await?;
            Ok(format!("{n} expired rows deleted"))
        }),
        Job::new("purge_deleted", period, |c: Coffer| async move {
            c.tenants.purge_expired(&c.audit).await
        }),
        // expired share links (service::shares), each audited
        Job::new("purge_shares", period, |c: Coffer| async move {
            c.shares.purge_expired(&c.audit).await
        }),
        Job::new("purge_idempotency", period, |c: Coffer| async move {
            let n = c.idempotency.purge_expired().await?;
            Ok(format!("{n} expired idempotency keys deleted"))
        }),
        // protected environments: pending requests past their expiry
        Job::new("expire_approvals", period, |c: Coffer| async move {
            c.approvals.expire().await
        }),
        // signed webhooks (service::webhooks): due deliveries, at least
        // every 5 s; a failed attempt waits min(period, 30 s) × 2^n
        Job::new(
            "deliver_webhooks",
            period.min(WEBHOOK_PERIOD),
            move |c: Coffer| async move { c.webhooks.deliver_due(period.min(WEBHOOK_RETRY_BASE)).await },
        ),
        // database credentials (service::dbcreds): expired leases revoked
        // and due static roles rotated, at least every 5 s
        Job::new(
            "database_credentials",
            period.min(DBCREDS_PERIOD),
            |c: Coffer| async move { c.dbcreds.run_due().await },
        ),
        // CI sync targets (service::ci_sync): queued jobs and the reconcile,
        // at least every 5 s; a failed job waits min(period, 30 s) × 2^n
        Job::new("ci_sync", period.min(WEBHOOK_PERIOD), move |c: Coffer| async move {
            c.ci_sync.run_due(&c.audit, period.min(WEBHOOK_RETRY_BASE)).await
        }),
    ]
}

/// The longest period of the webhook delivery job.
const WEBHOOK_PERIOD: Duration = Duration::from_secs(5);
/// The longest period of the database credentials job.
const DBCREDS_PERIOD: Duration = Duration::from_secs(5);
/// The longest first retry wait of a webhook delivery.
const WEBHOOK_RETRY_BASE: Duration = Duration::from_secs(30);

/// Sleep until the next multiple of `period` since the Unix epoch; returns
/// that period's number.
async fn next_tick(period: Duration) -> i64 {
    let p = i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1);
    let now = now_ms();
    let next = (now / p + 1) * p;
    tokio::time::sleep(Duration::from_millis(u64::try_from(next - now).unwrap_or(0))).await;
    next / p
}

impl Coffer {
    /// Start a ticker per job (see the module doc).
    pub fn spawn_jobs(&self, jobs: Vec<Job>) {
        for job in jobs {
            tokio::spawn(run(self.clone(), job));
        }
    }
}

async fn run(coffer: Coffer, job: Job) {
    let mut lock: Option<JobLock> = None;
    loop {
        let tick = next_tick(job.period).await;
        if let Some(l) = &mut lock
            && !l.alive().await
        {
            tracing::warn!(job = job.name, "job lock connection lost; another server may take over");
            lock = None;
        }
        if lock.is_none() {
            match coffer.shared.store.try_lock_job(job.name).await {
                Ok(Some(l)) => {
                    tracing::info!(job = job.name, "this server now runs job {}", job.name);
                    lock = Some(l);
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(job = job.name, error = %e, "cannot take the job lock");
                    continue;
                }
            }
        }
        match (job.run)(coffer.clone()).await {
            Ok(summary) => tracing::info!(job = job.name, tick, "job {} ran in period {tick}: {summary}", job.name),
            Err(e) => tracing::warn!(job = job.name, tick, error = %e, "job {} failed", job.name),
        }
    }
}
