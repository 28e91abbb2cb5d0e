//! Secondary audit sinks: a JSON-lines file (reopened on SIGHUP, for
//! logrotate) and syslog. They get each committed batch after the database
//! has it, on a thread of their own: a slow or failing sink never delays a
//! request. A failure counts `coffer_audit_sink_failures_total{sink}` and
//! logs a warning (at most one per sink every 10 s); the primary store
//! stays the record of truth.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use super::RecordView;
use crate::storage::audit::AuditRow;

/// Batches waiting for the sinks before new ones are dropped (and counted).
const SINK_QUEUE: usize = 1_024;
/// `<86>` = facility authpriv (10) × 8 + severity info (6).
const SYSLOG_PRI: &str = "<86>";

/// Where committed records are copied.
#[derive(Debug, Clone, Default)]
pub struct SinkSettings {
    /// JSON-lines file, appended to
    pub file: Option<PathBuf>,
    /// the local syslog socket (`/dev/log`), when set
    pub syslog: Option<PathBuf>,
}

/// Hand-off to the sink thread.
#[derive(Debug)]
pub(super) struct Sinks {
    tx: Option<SyncSender<Vec<AuditRow>>>,
    reopen: Arc<AtomicBool>,
}

impl Sinks {
    /// Start the sink thread if any sink is configured.
    pub(super) fn start(settings: SinkSettings) -> Sinks {
        let reopen = Arc::new(AtomicBool::new(false));
        if settings.file.is_none() && settings.syslog.is_none() {
            return Sinks { tx: None, reopen };
        }
        let (tx, rx) = sync_channel(SINK_QUEUE);
        let flag = reopen.clone();
        let spawned = std::thread::Builder::new()
            .name("audit-sinks".into())
            .spawn(move || run(settings, rx, flag));
        match spawned {
            Ok(_) => Sinks { tx: Some(tx), reopen },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the audit sink thread; secondary sinks are off");
                metrics::counter!("coffer_audit_sink_failures_total", "sink" => "thread").increment(1);
                Sinks { tx: None, reopen }
            }
        }
    }

    /// Queue a committed batch; never blocks.
    pub(super) fn send(&self, rows: Vec<AuditRow>) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(rows) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("coffer_audit_sink_failures_total", "sink" => "queue").increment(1);
                tracing::warn!("audit sinks are behind; a batch was not copied to them (the database has it)");
            }
            Err(TrySendError::Disconnected(_)) => {
                metrics::counter!("coffer_audit_sink_failures_total", "sink" => "thread").increment(1);
            }
        }
    }

    /// Reopen the file sink before the next write (SIGHUP after logrotate).
    pub(super) fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }
}

/// Warn about one sink at most every 10 s.
struct Throttle(Option<Instant>);

impl Throttle {
    fn fail(&mut self, sink: &'static str, what: &str) {
        metrics::counter!("coffer_audit_sink_failures_total", "sink" => sink).increment(1);
        if self.0.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            tracing::warn!(sink, "audit sink failed: {what}");
            self.0 = Some(Instant::now());
        }
    }
}

fn open_file(path: &PathBuf) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn run(settings: SinkSettings, rx: Receiver<Vec<AuditRow>>, reopen: Arc<AtomicBool>) {
    let mut file = None;
    let mut file_throttle = Throttle(None);
    let mut syslog_throttle = Throttle(None);
    let syslog = settings.syslog.as_ref().and_then(|_| UnixDatagram::unbound().ok());
    let pid = std::process::id();
    while let Ok(rows) = rx.recv() {
        let lines: Vec<String> = rows
            .iter()
            .filter_map(|r| serde_json::to_string(&RecordView::from(r)).ok())
            .collect();
        if let Some(path) = &settings.file {
            if reopen.swap(false, Ordering::Relaxed) {
                file = None;
            }
            if file.is_none() {
                match open_file(path) {
                    Ok(f) => file = Some(f),
                    Err(e) => file_throttle.fail("file", &format!("cannot open {}: {e}", path.display())),
                }
            }
            if let Some(f) = &mut file {
                let mut buf = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
                for l in &lines {
                    buf.push_str(l);
                    buf.push('\n');
                }
                if let Err(e) = f.write_all(buf.as_bytes()) {
                    file_throttle.fail("file", &format!("cannot write {}: {e}", path.display()));
                    file = None;
                }
            }
        }
        if let (Some(path), Some(sock)) = (&settings.syslog, &syslog) {
            for l in &lines {
                let msg = format!("{SYSLOG_PRI}coffer-audit[{pid}]: {l}");
                if let Err(e) = sock.send_to(msg.as_bytes(), path) {
                    syslog_throttle.fail("syslog", &format!("cannot send to {}: {e}", path.display()));
                    break;
                }
            }
        }
    }
}
