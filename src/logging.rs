//! Logging: `tracing` to stderr, human-readable on a terminal and JSON lines
//! otherwise. The format comes from `COFFER_LOG_FORMAT` or the config's
//! `log_format`; the level from `COFFER_LOG` (wins) or the config's
//! `log_level` (default `info`), which SIGHUP reloads. Nothing secret is ever
//! logged: key types have redacting `Debug`, and values never reach a log
//! call; JSON lines carry the request's `request_id` span field.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::LogFormat;

type Filtered = tracing_subscriber::layer::Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type FmtLayer = Box<dyn Layer<Filtered> + Send + Sync>;

struct Handles {
    filter: reload::Handle<EnvFilter, Registry>,
    format: reload::Handle<FmtLayer, Filtered>,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

fn fmt_layer(json: bool) -> FmtLayer {
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json { Box::new(layer.json()) } else { Box::new(layer) }
}

fn env_format() -> Option<LogFormat> {
    match std::env::var("COFFER_LOG_FORMAT").as_deref() {
        Ok("json") => Some(LogFormat::Json),
        Ok("text") => Some(LogFormat::Text),
        _ => None,
    }
}

/// Install the global subscriber (environment settings only; the server
/// applies its config with [`apply`]).
pub fn init() {
    let filter = EnvFilter::try_from_env("COFFER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match env_format() {
        Some(f) => f == LogFormat::Json,
        None => !std::io::stderr().is_terminal(),
    };
    let (filter, filter_handle) = reload::Layer::new(filter);
    let (format, format_handle) = reload::Layer::new(fmt_layer(json));
    if tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init()
        .is_ok()
    {
        let _ = HANDLES.set(Handles {
            filter: filter_handle,
            format: format_handle,
        });
    }
}

/// Apply the config's `log_level` (unless `COFFER_LOG` is set) and
/// `log_format` (unless `COFFER_LOG_FORMAT` is set). Called at start and on
/// SIGHUP.
pub fn apply(level: &str, format: Option<LogFormat>) {
    let Some(h) = HANDLES.get() else { return };
    if std::env::var_os("COFFER_LOG").is_none() {
        match EnvFilter::try_new(level) {
            Ok(f) => {
                if h.filter.reload(f).is_ok() {
                    tracing::info!(level, "log level set");
                }
            }
            Err(e) => tracing::warn!(level, error = %e, "log_level is not a valid filter; keeping the old one"),
        }
    }
    if env_format().is_none()
        && let Some(f) = format
    {
        let _ = h.format.reload(fmt_layer(f == LogFormat::Json));
    }
}
