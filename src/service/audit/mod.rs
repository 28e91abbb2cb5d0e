//! The audit log: every request that touches a secret, a key, a token, a
//! user, a grant or the seal leaves one record, hash-chained to the one
//! before and committed before the response leaves the server.
//!
//! ```text
//! request ─► handler ─► AuditEvent ─► Auditor::record ──mpsc──► writer task
//!                                         ▲ waits (timeout)        │ one transaction per batch
//!   response leaves only after ───────────┘◄── Ok ── commit ◄──────┘ (group commit)
//!                                                   └─► sinks thread (file, syslog), signals
//! ```
//!
//! Invariants:
//! - a record's seq is its position; `hash = SHA-256(fields ‖ prev_hash)`
//!   (`chain.rs`); the writer holds the head and appends with
//!   compare-and-set on seq, so two servers sharing a database interleave
//!   without forking the chain (the loser re-reads the head);
//! - checkpoints sign `(seq, hash)` with the audit key, a random key kept
//!   encrypted under the root key: only an unsealed server can sign, so a
//!   database writer cannot rewrite history and re-sign it;
//! - if the store cannot take a record within the timeout, the request
//!   fails (`AuditUnavailable`) and its response — a value, a token — is
//!   dropped: nothing leaves unaudited. Public endpoints (health, seal
//!   status) are not audited and keep answering.

pub mod chain;
pub mod signals;
pub mod sinks;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::webhooks::SignalEvent;
use super::{Principal, PrincipalKind, Result, ServiceError, Unsealed, now_ms, random_bytes, rfc3339};
use crate::config::AuditConfig;
use crate::storage::StorageError;
use crate::storage::audit::{AuditFilter, AuditRow, AuditStore, CheckpointRow};

/// Records one batch takes at most.
const MAX_BATCH: usize = 1_024;
/// Requests waiting for the writer before new ones are refused.
const QUEUE: usize = 16_384;
/// Records read per verification page.
const VERIFY_PAGE: i64 = 5_000;
/// Search results per call at most.
pub const MAX_SEARCH: i64 = 10_000;

/// What an audit search asks for; the handler builds it from the query
/// string, the service checks who may ask and maps it to the storage filter.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// exact actor
    pub actor: Option<String>,
    /// exact action, or a prefix when it ends in `.` (`secret.`)
    pub action: Option<String>,
    /// resource prefix
    pub resource: Option<String>,
    /// exact organization slug (required unless root)
    pub org: Option<String>,
    /// allowed | denied | error | begun
    pub outcome: Option<String>,
    /// unix ms, inclusive
    pub since: Option<i64>,
    /// unix ms, exclusive
    pub until: Option<i64>,
    /// only records after this sequence number (paging)
    pub after_seq: Option<i64>,
    /// only records before this sequence number (paging newest first)
    pub before_seq: Option<i64>,
    /// newest first (the dashboard) instead of oldest first (the API)
    pub newest_first: bool,
    /// at most this many (default 1 000, at most [`MAX_SEARCH`])
    pub limit: Option<i64>,
}

/// The audit writer's runtime settings, built from `[audit]`
/// ([`AuditConfig`]).
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// false: no record is written (benchmark comparisons only; logged loudly)
    pub enabled: bool,
    /// how long a request waits for its record to commit
    pub timeout: Duration,
    /// how often the chain head is signed
    pub checkpoint_interval: Duration,
    /// records younger than this cannot be pruned
    pub retention: Duration,
    /// secondary sinks
    pub sinks: sinks::SinkSettings,
    /// security-signal thresholds
    pub thresholds: signals::Thresholds,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings::from(&AuditConfig::default())
    }
}

impl From<&AuditConfig> for AuditSettings {
    fn from(c: &AuditConfig) -> Self {
        AuditSettings {
            enabled: c.enabled,
            timeout: c.timeout,
            checkpoint_interval: c.checkpoint_interval,
            retention: c.retention,
            sinks: sinks::SinkSettings {
                file: c.file.clone(),
                syslog: c.syslog.clone(),
            },
            thresholds: signals::Thresholds {
                bulk_reveal: c.bulk_reveal_threshold,
                failed_logins: c.failed_login_threshold,
            },
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// served
    Allowed,
    /// refused: not authenticated, not permitted, rate limited
    Denied,
    /// failed: bad input, conflict, storage, sealed
    Error,
    /// the write-ahead record of a mutation, committed before its handler
    /// ran; the request's outcome record follows (same request id)
    Begun,
}

impl Outcome {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
            Outcome::Begun => "begun",
        }
    }
}

/// Who made a request, as far as it was established.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// root | user | service_account | anonymous
    pub kind: &'static str,
    /// email, service-account name, "root"; for a failed login the name tried
    pub name: String,
    /// token accessor
    pub accessor: String,
}

impl Actor {
    /// The actor of an authenticated principal.
    pub fn of(p: &Principal) -> Actor {
        Actor {
            kind: p.kind.as_str(),
            name: p.name.clone(),
            accessor: p.accessor.clone(),
        }
    }
}

impl PrincipalKind {
    /// Actor kind of nobody authenticated.
    pub const ANONYMOUS: &'static str = "anonymous";
}

/// One request, as the HTTP layer saw it.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// `X-Request-Id`
    pub request_id: String,
    /// authenticated principal, or the name a login tried
    pub actor: Actor,
    /// hex SHA-256 of the client certificate's SPKI
    pub cert_spki: String,
    /// client IP
    pub source: String,
    /// HTTP method
    pub method: String,
    /// e.g. `secret.reveal`
    pub action: String,
    /// path without the query
    pub resource: String,
    /// organization slug
    pub org: String,
    /// how it ended
    pub outcome: Outcome,
    /// HTTP status
    pub status: u16,
    /// error code
    pub reason: String,
    /// plaintext values the response carries
    pub values: u64,
}

/// Why a record could not be written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// The store did not commit in time or failed.
    #[error("the audit log cannot be written ({0}); the request was not served")]
    Unavailable(String),
}

struct Pending {
    row: AuditRow,
    values: u64,
    done: oneshot::Sender<std::result::Result<(), AuditError>>,
}

/// The writer's handle. Cheap to share.
pub struct Auditor {
    settings: AuditSettings,
    tx: mpsc::Sender<Pending>,
    /// highest seq this process committed (truncation check in verify)
    committed: Arc<AtomicI64>,
    /// highest seq a checkpoint of this process signed
    checkpointed: AtomicI64,
    sinks: Arc<sinks::Sinks>,
    /// where security signals go (the webhook queue), once set
    signals: Arc<std::sync::OnceLock<mpsc::Sender<SignalEvent>>>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("enabled", &self.settings.enabled)
            .field("committed", &self.committed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Auditor {
    /// Start the writer task (and the sink thread) over `store`, whose
    /// [`Backend::kind`](crate::storage::Backend::kind) is `storage_kind`.
    pub fn start(store: Arc<dyn AuditStore>, storage_kind: &'static str, settings: AuditSettings) -> Arc<Auditor> {
        if !settings.enabled {
            tracing::warn!("[audit] enabled = false: NOTHING is audited. Use this only to measure what auditing costs");
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let committed = Arc::new(AtomicI64::new(0));
        let sinks = Arc::new(sinks::Sinks::start(settings.sinks.clone()));
        let signals = Arc::new(std::sync::OnceLock::new());
        let writer = Writer {
            signals: signals.clone(),
            store,
            single_process: storage_kind == "sqlite",
            head: None,
            committed: committed.clone(),
            sinks: sinks.clone(),
            detector: signals::Detector::new(settings.thresholds),
        };
        tokio::spawn(writer.run(rx));
        Arc::new(Auditor {
            settings,
            tx,
            committed,
            checkpointed: AtomicI64::new(0),
            sinks,
            signals,
        })
    }

    /// Send every security signal from now on to `tx` as well (the webhook
    /// queue, `service::webhooks`); a full channel drops the signal (its
    /// counter and warning remain). Set once; later calls are ignored.
    pub(crate) fn forward_signals(&self, tx: mpsc::Sender<SignalEvent>) {
        let _ = self.signals.set(tx);
    }

    /// Write one record and wait until it is committed.
    pub async fn record(&self, ev: AuditEvent) -> std::result::Result<(), AuditError> {
        if !self.settings.enabled {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        let values = ev.values;
        let pending = Pending {
            row: row_of(ev),
            values,
            done,
        };
        metrics::gauge!("coffer_audit_queue_depth").set((QUEUE - self.tx.capacity()) as f64);
        match self.tx.try_send(pending) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(AuditError::Unavailable("the audit queue is full".into()));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(AuditError::Unavailable("the audit writer stopped".into()));
            }
        }
        match tokio::time::timeout(self.settings.timeout, wait).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AuditError::Unavailable("the audit writer stopped".into())),
            Err(_) => {
                metrics::counter!("coffer_audit_timeouts_total").increment(1);
                Err(AuditError::Unavailable(format!(
                    "no commit within {} ms",
                    self.settings.timeout.as_millis()
                )))
            }
        }
    }

    /// Reopen the file sink (SIGHUP).
    pub fn reopen_sinks(&self) {
        self.sinks.reopen();
    }

    /// The settings it runs with (whether it records, its secondary sinks).
    pub fn settings(&self) -> &AuditSettings {
        &self.settings
    }
}

fn row_of(ev: AuditEvent) -> AuditRow {
    let detail = if ev.values > 0 {
        format!("{{\"values\":{}}}", ev.values)
    } else {
        "{}".to_owned()
    };
    AuditRow {
        seq: 0,
        time: now_ms(),
        request_id: ev.request_id,
        actor_kind: if ev.actor.kind.is_empty() {
            PrincipalKind::ANONYMOUS.to_owned()
        } else {
            ev.actor.kind.to_owned()
        },
        actor: ev.actor.name,
        accessor: ev.actor.accessor,
        cert_spki: ev.cert_spki,
        source: ev.source,
        method: ev.method,
        action: ev.action,
        resource: ev.resource,
        org: ev.org,
        outcome: ev.outcome.as_str().to_owned(),
        status: i64::from(ev.status),
        reason: ev.reason,
        detail,
        prev_hash: Vec::new(),
        hash: Vec::new(),
    }
}

/// The task that owns the chain head.
struct Writer {
    store: Arc<dyn AuditStore>,
    /// SQLite: no other server appends to this log
    single_process: bool,
    /// (seq, hash) of the newest record; None = read it from the store
    head: Option<(i64, Vec<u8>)>,
    committed: Arc<AtomicI64>,
    sinks: Arc<sinks::Sinks>,
    detector: signals::Detector,
    signals: Arc<std::sync::OnceLock<mpsc::Sender<SignalEvent>>>,
}

/// Attempts of one batch when other writers keep taking its positions.
const APPEND_ATTEMPTS: usize = 5;

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            // Let the requests that are running right now reach their
            // audit point too, so they share this commit (group commit)
            // instead of each paying for one. Costs nothing when idle.
            tokio::task::yield_now().await;
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            metrics::histogram!("coffer_audit_batch_size").record(batch.len() as f64);
            // Requests that gave up waiting are still recorded: they were made.
            let mut rows: Vec<AuditRow> = batch.iter_mut().map(|p| std::mem::take(&mut p.row)).collect();
            let result = self.append(&mut rows).await;
            if result.is_ok() {
                for (row, p) in rows.iter().zip(&batch) {
                    for signal in self.detector.observe(row, p.values) {
                        self.forward(signal, row, p.values);
                    }
                }
                self.sinks.send(rows);
            }
            for p in batch.drain(..) {
                let _ = p.done.send(result.clone());
            }
        }
    }

    /// Hand a signal to the webhook queue, if one listens: names and
    /// counts only.
    fn forward(&self, signal: signals::Signal, row: &AuditRow, values: u64) {
        let Some(tx) = self.signals.get() else { return };
        let limits = self.detector.thresholds();
        let (count, threshold) = match signal {
            signals::Signal::BulkReveal => (values, limits.bulk_reveal),
            signals::Signal::FailedLoginBurst => (limits.failed_logins.saturating_add(1), limits.failed_logins),
            signals::Signal::OutsideCidr => (1, 0),
        };
        let ev = SignalEvent {
            signal: signal.label(),
            org: row.org.clone(),
            actor: if row.actor.is_empty() {
                String::new()
            } else {
                format!("{}:{}", row.actor_kind, row.actor)
            },
            source: row.source.clone(),
            count,
            threshold,
        };
        if tx.try_send(ev).is_err() {
            tracing::warn!(
                signal = signal.label(),
                "security signal: webhook queue full; not queued"
            );
        }
    }

    /// Chain `rows` onto the head and store them; re-chain and retry if
    /// another writer took the positions.
    async fn append(&mut self, rows: &mut [AuditRow]) -> std::result::Result<(), AuditError> {
        let mut last_error = String::new();
        for _ in 0..APPEND_ATTEMPTS {
            let (mut seq, mut prev) = match self.head.take() {
                Some(h) => h,
                None => match self.store.audit_head().await {
                    Ok(Some(h)) => h,
                    Ok(None) => (0, chain::GENESIS.to_vec()),
                    Err(e) => {
                        tracing::error!(error = %e, "audit store unavailable");
                        return Err(AuditError::Unavailable("the audit store is unavailable".into()));
                    }
                },
            };
            for row in rows.iter_mut() {
                seq += 1;
                row.seq = seq;
                row.prev_hash = prev;
                row.hash = chain::record_hash(row).to_vec();
                prev = row.hash.clone();
            }
            match self.store.append_audit(rows).await {
                Ok(()) => {
                    self.head = Some((seq, prev));
                    self.committed.store(seq, Ordering::Relaxed);
                    metrics::counter!("coffer_audit_records_total").increment(rows.len() as u64);
                    return Ok(());
                }
                Err(StorageError::Conflict(_)) => {
                    // Another server appended meanwhile: re-read the head.
                    // SQLite has no other server: someone wrote to the file.
                    if self.single_process {
                        tracing::error!(
                            "the audit log was appended to behind coffer's back; run `coffer audit verify`"
                        );
                        metrics::counter!("coffer_security_signals_total", "signal" => "audit_foreign_append")
                            .increment(1);
                    }
                    last_error = "another writer kept appending".into();
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit store unavailable");
                    metrics::counter!("coffer_audit_write_failures_total").increment(1);
                    return Err(AuditError::Unavailable(if e.is_disk_full() {
                        "the database's disk is full".into()
                    } else {
                        "the audit store is unavailable".into()
                    }));
                }
            }
        }
        Err(AuditError::Unavailable(last_error))
    }
}

/// A record as the API and the file sink show it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordView {
    /// position in the chain
    pub seq: i64,
    /// RFC 3339
    pub time: String,
    /// unix ms
    pub time_ms: i64,
    /// request id
    pub request_id: String,
    /// root | user | service_account | anonymous
    pub actor_kind: String,
    /// name or email
    pub actor: String,
    /// token accessor
    pub accessor: String,
    /// client certificate SPKI SHA-256
    pub cert_spki: String,
    /// client IP
    pub source: String,
    /// HTTP method
    pub method: String,
    /// action
    pub action: String,
    /// path
    pub resource: String,
    /// organization slug
    pub org: String,
    /// allowed | denied | error
    pub outcome: String,
    /// HTTP status
    pub status: i64,
    /// error code
    pub reason: String,
    /// extra facts
    pub detail: serde_json::Value,
    /// hex
    pub prev_hash: String,
    /// hex
    pub hash: String,
}

impl From<&AuditRow> for RecordView {
    fn from(r: &AuditRow) -> Self {
        RecordView {
            seq: r.seq,
            time: rfc3339(r.time),
            time_ms: r.time,
            request_id: r.request_id.clone(),
            actor_kind: r.actor_kind.clone(),
            actor: r.actor.clone(),
            accessor: r.accessor.clone(),
            cert_spki: r.cert_spki.clone(),
            source: r.source.clone(),
            method: r.method.clone(),
            action: r.action.clone(),
            resource: r.resource.clone(),
            org: r.org.clone(),
            outcome: r.outcome.clone(),
            status: r.status,
            reason: r.reason.clone(),
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::String(r.detail.clone())),
            prev_hash: hex::encode(&r.prev_hash),
            hash: hex::encode(&r.hash),
        }
    }
}

/// The first place the chain is broken.
#[derive(Debug, Clone, Serialize)]
pub struct Broken {
    /// the first bad record's seq (or the checkpoint's)
    pub seq: i64,
    /// what is wrong
    pub reason: String,
    /// the bad record as stored, if there is one
    pub record: Option<RecordView>,
}

/// What `audit verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// the whole chain and every checkpoint check out
    pub ok: bool,
    /// records checked
    pub records: u64,
    /// first and last seq checked
    pub first_seq: Option<i64>,
    /// last seq checked
    pub last_seq: Option<i64>,
    /// checkpoints checked
    pub checkpoints: u64,
    /// records before this seq were pruned under a signed checkpoint
    pub pruned_through: i64,
    /// the first problem
    pub broken: Option<Broken>,
}

/// What pruning did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneResult {
    /// the newest record removed (now covered by a prune checkpoint)
    pub through_seq: i64,
    /// records deleted
    pub deleted: u64,
}

fn broken(seq: i64, reason: impl Into<String>, row: Option<&AuditRow>) -> Option<Broken> {
    Some(Broken {
        seq,
        reason: reason.into(),
        record: row.map(RecordView::from),
    })
}

/// The audit trail: query, verify and export (the [`Auditor`] writes it).
#[derive(Debug, Clone)]
pub struct AuditService {
    pub(in crate::service) shared: Arc<crate::service::Shared>,
    pub(in crate::service) audit_store: Arc<dyn AuditStore>,
    pub(in crate::service) access: crate::service::AccessService,
}

impl AuditService {
    /// Record one request (the HTTP audit layer calls this for every
    /// audited route before the response leaves).
    pub async fn audit(&self, ev: AuditEvent) -> Result<()> {
        self.shared
            .auditor
            .record(ev)
            .await
            .map_err(|e| ServiceError::AuditUnavailable(e.to_string()))
    }

    /// Reopen the audit file sink (SIGHUP).
    pub fn reopen_audit_sinks(&self) {
        self.shared.auditor.reopen_sinks();
    }

    /// The audit key in clear (zeroized on drop), made on first use.
    async fn audit_key(&self) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let keyring = self.shared.keyring()?;
        let blob = match self.audit_store.audit_key().await? {
            Some(b) => b,
            None => {
                let fresh = zeroize::Zeroizing::new(random_bytes::<32>()?);
                let wrapped = keyring.seal_account_secret(crate::keys::AUDIT_KEY_AAD, fresh.as_slice());
                self.audit_store.put_audit_key(&wrapped, now_ms()).await?
            }
        };
        keyring
            .open_account_secret(crate::keys::AUDIT_KEY_AAD, &blob)
            .map_err(|_| ServiceError::Internal("the audit key does not decrypt under the root key".into()))
    }

    /// Sign the chain head if it moved since the last checkpoint. Returns
    /// the seq signed. Sealed: nothing to sign with, `Sealed`.
    pub async fn audit_checkpoint(&self) -> Result<Option<i64>> {
        let Some((seq, hash)) = self.audit_store.audit_head().await? else {
            return Ok(None);
        };
        if seq <= self.shared.auditor.checkpointed.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let key = self.audit_key().await?;
        let mut c = CheckpointRow {
            seq,
            hash,
            time: now_ms(),
            kind: "periodic".into(),
            mac: Vec::new(),
        };
        c.mac = chain::checkpoint_mac(&key, &c);
        match self.audit_store.add_audit_checkpoint(&c).await {
            // Another server signed the same head: as good.
            Ok(()) | Err(StorageError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.shared.auditor.checkpointed.fetch_max(seq, Ordering::Relaxed);
        Ok(Some(seq))
    }

    /// Sign the head every `checkpoint_interval` while unsealed.
    pub fn spawn_audit_checkpoints(&self) {
        if !self.shared.auditor.settings.enabled {
            return;
        }
        let me = self.clone();
        let every = self.shared.auditor.settings.checkpoint_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match me.audit_checkpoint().await {
                    Ok(_) | Err(ServiceError::Sealed | ServiceError::NotInitialized) => {}
                    Err(e) => tracing::warn!(error = %e, "audit checkpoint failed"),
                }
            }
        });
    }

    /// Records matching `q`. Root sees every record; an organization's
    /// admin sees that organization's (the query must name it).
    pub async fn audit_search(&self, who: &Unsealed, q: AuditQuery) -> Result<Vec<RecordView>> {
        if who.kind != PrincipalKind::Root {
            let Some(org) = q.org.as_deref() else {
                return Err(ServiceError::Invalid(
                    "org is required: only root may search every organization's records".into(),
                ));
            };
            self.access.org_admin(who, org).await?;
        }
        // None or not positive: 1 000; at most MAX_SEARCH.
        let limit = match q.limit {
            Some(n) if n > 0 => n.min(MAX_SEARCH),
            _ => 1_000,
        };
        let f = AuditFilter {
            actor: q.actor,
            action: q.action,
            resource: q.resource,
            org: q.org,
            outcome: q.outcome,
            since: q.since,
            until: q.until,
            after_seq: q.after_seq,
            before_seq: q.before_seq,
            newest_first: q.newest_first,
            limit,
        };
        let rows = self.audit_store.search_audit(&f).await?;
        Ok(rows.iter().map(RecordView::from).collect())
    }

    /// Check the whole chain and every checkpoint (root only).
    pub async fn audit_verify(&self, who: &Unsealed) -> Result<VerifyReport> {
        who.require_root()?;
        let key = self.audit_key().await?;
        let checkpoints = self.audit_store.audit_checkpoints().await?;
        let mut report = VerifyReport {
            ok: false,
            records: 0,
            first_seq: None,
            last_seq: None,
            checkpoints: checkpoints.len() as u64,
            pruned_through: 0,
            broken: None,
        };
        for c in &checkpoints {
            if !chain::checkpoint_valid(&key, c) {
                report.broken = broken(
                    c.seq,
                    format!("the {} checkpoint of record {} has an invalid signature", c.kind, c.seq),
                    None,
                );
                return Ok(report);
            }
        }
        // The retained log starts after the newest prune checkpoint.
        let (mut seq, mut prev) = checkpoints
            .iter()
            .filter(|c| c.kind == "prune")
            .max_by_key(|c| c.seq)
            .map(|c| (c.seq, c.hash.clone()))
            .unwrap_or((0, chain::GENESIS.to_vec()));
        report.pruned_through = seq;
        let signed: std::collections::HashMap<i64, &CheckpointRow> = checkpoints.iter().map(|c| (c.seq, c)).collect();
        loop {
            let page = self.audit_store.audit_range(seq, VERIFY_PAGE).await?;
            let Some(last) = page.last() else { break };
            let last_seq = last.seq;
            for r in &page {
                let expected = seq + 1;
                if r.seq != expected {
                    report.broken = broken(
                        expected,
                        format!("record {expected} is missing (the next record is {})", r.seq),
                        Some(r),
                    );
                    return Ok(report);
                }
                if r.prev_hash != prev {
                    report.broken = broken(
                        r.seq,
                        format!("record {} does not follow record {}: its prev_hash differs", r.seq, seq),
                        Some(r),
                    );
                    return Ok(report);
                }
                if chain::record_hash(r).as_slice() != r.hash.as_slice() {
                    report.broken = broken(
                        r.seq,
                        format!("record {} was modified: its hash does not match its contents", r.seq),
                        Some(r),
                    );
                    return Ok(report);
                }
                if let Some(c) = signed.get(&r.seq)
                    && c.hash != r.hash
                {
                    report.broken = broken(
                        r.seq,
                        format!("record {} differs from the signed checkpoint of it", r.seq),
                        Some(r),
                    );
                    return Ok(report);
                }
                report.first_seq.get_or_insert(r.seq);
                report.records += 1;
                seq = r.seq;
                prev = r.hash.clone();
            }
            report.last_seq = Some(last_seq);
        }
        // Records cut off the end: a checkpoint or this server saw more.
        let newest_signed = checkpoints.iter().map(|c| c.seq).max().unwrap_or(0);
        let committed = self.shared.auditor.committed.load(Ordering::Relaxed);
        let known = newest_signed.max(committed);
        if known > seq {
            report.broken = broken(
                seq + 1,
                format!(
                    "records {} to {known} are missing (signed or written by this server, not in the store)",
                    seq + 1
                ),
                None,
            );
            return Ok(report);
        }
        report.ok = true;
        Ok(report)
    }

    /// Delete the records up to `through_seq` after signing a prune
    /// checkpoint of it (root only). Refuses records younger than the
    /// retention period.
    pub async fn audit_prune(&self, who: &Unsealed, through_seq: i64) -> Result<PruneResult> {
        who.require_root()?;
        let rows = self.audit_store.audit_range(through_seq - 1, 1).await?;
        let Some(last) = rows.first().filter(|r| r.seq == through_seq) else {
            return Err(ServiceError::NotFound(format!("audit record {through_seq}")));
        };
        let retention = i64::try_from(self.shared.auditor.settings.retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms().saturating_sub(retention);
        // Every record through `through_seq` must be old enough, not only the
        // last: times follow the wall clock and are not monotonic (a clock
        // stepped back stamps later records with earlier times), sequence
        // numbers are. docs/reliability.md, "Clock steps".
        let younger = if last.time > cutoff {
            Some(through_seq)
        } else {
            self.audit_store
                .search_audit(&AuditFilter {
                    since: Some(cutoff.saturating_add(1)),
                    before_seq: Some(through_seq),
                    limit: 1,
                    ..AuditFilter::default()
                })
                .await?
                .first()
                .map(|r| r.seq)
        };
        if let Some(seq) = younger {
            return Err(ServiceError::Invalid(format!(
                "record {seq} is younger than the retention period ({} days); only older records can be pruned \
                 (prune through a record before it)",
                self.shared.auditor.settings.retention.as_secs() / 86_400
            )));
        }
        let key = self.audit_key().await?;
        let mut c = CheckpointRow {
            seq: through_seq,
            hash: last.hash.clone(),
            time: now_ms(),
            kind: "prune".into(),
            mac: Vec::new(),
        };
        c.mac = chain::checkpoint_mac(&key, &c);
        let deleted = self.audit_store.prune_audit(&c).await?;
        tracing::info!(through_seq, deleted, "audit log pruned under a signed checkpoint");
        Ok(PruneResult { through_seq, deleted })
    }
}
