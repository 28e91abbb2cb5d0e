//! Logging: `tracing` to stderr, human-readable on a terminal and JSON lines
//! otherwise (`COFFER_LOG_FORMAT=json|text` overrides); level from
//! `COFFER_LOG` (default `info`). Nothing secret is ever logged: key types
//! have redacting `Debug`, and values never reach a log call.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Install the global subscriber.
pub fn init() {
    let filter = EnvFilter::try_from_env("COFFER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("COFFER_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
