//! Operations glue: Prometheus metrics, the request-id/metrics middleware,
//! and systemd notifications (`Type=notify`).
//!
//! Metrics go through the `metrics` facade (any module may add its own);
//! [`install_metrics`] installs the Prometheus recorder once per process.
//! Labels are route templates (axum's `MatchedPath`), methods and status
//! classes only — never a raw path, a token or a value.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use crate::service::Coffer;

/// Request latency histogram buckets (seconds).
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often the Prometheus recorder's histogram samples are drained.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Install the process-wide Prometheus recorder (idempotent).
pub(crate) fn install_metrics() -> anyhow::Result<()> {
    if PROMETHEUS.get().is_some() {
        return Ok(());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .install_recorder()?;
    // The recorder keeps every histogram sample (one per request for the
    // request-duration histogram) until its upkeep folds them into the
    // buckets, and `/metrics` is off unless an operator sets a token file:
    // without this task a server nobody scraped grew by about 24 bytes per
    // request, without bound (`bench/memory.sh`).
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(METRICS_UPKEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let _ = PROMETHEUS.set(handle);
    metrics::describe_counter!(
        "coffer_http_requests_total",
        "HTTP requests by route template, method and status class"
    );
    metrics::describe_histogram!(
        "coffer_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by route template and method"
    );
    metrics::describe_gauge!(
        "coffer_sealed",
        "1 when the server holds no keys (sealed or uninitialized)"
    );
    metrics::describe_gauge!("coffer_initialized", "1 once an init ran");
    metrics::describe_gauge!(
        "coffer_unseal_progress",
        "unseal shares collected in the current ceremony"
    );
    metrics::describe_gauge!("coffer_unseal_threshold", "unseal shares needed (K)");
    metrics::describe_counter!(
        "coffer_kek_cache_hits_total",
        "KEK lookups served from the in-memory cache"
    );
    metrics::describe_counter!(
        "coffer_kek_cache_misses_total",
        "KEK lookups that had to unwrap from storage"
    );
    metrics::describe_counter!(
        "coffer_decryption_failures_total",
        "stored ciphertexts that failed authentication"
    );
    metrics::describe_counter!("coffer_auth_failures_total", "failed authentications by reason");
    metrics::describe_counter!(
        "coffer_password_hash_refused_total",
        "logins and password changes refused with 503 because too many password hashes were running or queued"
    );
    metrics::describe_counter!(
        "coffer_kek_cache_evictions_total",
        "unwrapped KEKs evicted from the bounded cache (their pages zeroized)"
    );
    metrics::describe_counter!(
        "coffer_cluster_messages_rejected_total",
        "cluster notifications refused (forged, replayed, stale or malformed) by reason"
    );
    // database credentials (service::dbcreds)
    metrics::describe_gauge!(
        crate::service::dbcreds::METRIC_ACTIVE_LEASES,
        "active dynamic database leases (refreshed by the database_credentials job)"
    );
    metrics::describe_counter!(
        crate::service::dbcreds::METRIC_LEASES,
        "dynamic database leases created"
    );
    metrics::describe_counter!(
        crate::service::dbcreds::METRIC_ROTATIONS,
        "static database role rotations committed"
    );
    metrics::describe_counter!(
        crate::service::dbcreds::METRIC_ROTATION_FAILURES,
        "static database role rotations that failed and were rolled back"
    );
    metrics::describe_counter!(
        crate::service::dbcreds::METRIC_REVOCATION_FAILURES,
        "database lease revocations that failed (retried by the job)"
    );
    // Series that may stay at zero for a long time exist from the start,
    // so alerts and ratios need no `absent()`.
    for name in [
        "coffer_kek_cache_hits_total",
        "coffer_kek_cache_misses_total",
        "coffer_kek_cache_evictions_total",
        "coffer_decryption_failures_total",
        "coffer_password_hash_refused_total",
        crate::service::dbcreds::METRIC_LEASES,
        crate::service::dbcreds::METRIC_ROTATIONS,
        crate::service::dbcreds::METRIC_ROTATION_FAILURES,
        crate::service::dbcreds::METRIC_REVOCATION_FAILURES,
    ] {
        metrics::counter!(name).increment(0);
    }
    Ok(())
}

/// The Prometheus text of every series, seal gauges refreshed first.
pub(crate) fn render(coffer: &Coffer) -> String {
    let s = coffer.operator.seal_status_cached();
    metrics::gauge!("coffer_sealed").set(if s.sealed { 1.0 } else { 0.0 });
    metrics::gauge!("coffer_initialized").set(if s.initialized { 1.0 } else { 0.0 });
    metrics::gauge!("coffer_unseal_progress").set(f64::from(s.progress));
    metrics::gauge!("coffer_unseal_threshold").set(f64::from(s.threshold));
    PROMETHEUS.get().map(PrometheusHandle::render).unwrap_or_default()
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, in its extensions for the layers inside (audit).
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

/// A client's `X-Request-Id` if it is short and plain (letters, digits,
/// `-_.:`), else a fresh one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(fresh_request_id, str::to_owned)
}

/// `<random per process>-<counter>`: unique across servers and restarts
/// without a system call per request (request ids are not secrets).
pub(crate) fn fresh_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        let mut b = [0u8; 6];
        // Without randomness ids still differ within this process.
        let _ = getrandom::fill(&mut b);
        hex::encode(b)
    });
    format!("{prefix}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Outer layer: a request id (span field `request_id`, echoed in
/// `X-Request-Id`, in the extensions as [`RequestId`]) around everything,
/// including unmatched routes.
pub(crate) async fn request_id_layer(mut req: Request, next: Next) -> Response {
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id);
    let mut res = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    res
}

/// Route layer: count and time each request by its route template.
pub(crate) async fn metrics_layer(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned()); // not reached: a route layer
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let res = next.run(req).await;
    let elapsed = start.elapsed();
    let status = match res.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    tracing::debug!(%method, %route, status = res.status().as_u16(), ms = elapsed.as_millis() as u64, "request");
    metrics::counter!("coffer_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("coffer_http_request_duration_seconds", "route" => route, "method" => method)
        .record(elapsed.as_secs_f64());
    res
}

/// The STATUS= text for systemd.
pub(crate) fn status_line(coffer: &Coffer) -> String {
    let s = coffer.operator.seal_status_cached();
    match (s.initialized, s.sealed) {
        (false, _) => "uninitialized: run coffer operator init".to_owned(),
        (true, false) => "unsealed".to_owned(),
        (true, true) => match &s.reason {
            Some(reason) => format!("sealed: {reason}"),
            None => format!("sealed, {}/{} shares", s.progress, s.threshold),
        },
    }
}

/// Tell systemd we listen (sealed counts as ready), then keep STATUS= in
/// step with the seal state. A no-op without `NOTIFY_SOCKET`.
pub(crate) fn spawn_notify(coffer: std::sync::Arc<Coffer>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let mut last = status_line(&coffer);
    notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&last)]);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let now = status_line(&coffer);
            if now != last {
                notify(&[sd_notify::NotifyState::Status(&now)]);
                last = now;
            }
        }
    });
}

/// One notification; failures are logged, never fatal.
pub(crate) fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}
