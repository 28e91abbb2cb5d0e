//! coffer's entry point: parse the command line, set up logging, dispatch.
//! Exit codes: 0 success, 1 error, 2 sealed (`operator status`).

use std::process::ExitCode;

use clap::Parser;

/// Malloc arenas coffer's process may use (glibc); see [`cap_malloc_arenas`].
#[cfg(target_env = "gnu")]
const MALLOC_ARENAS: libc::c_int = 2;

/// glibc gives each thread that finds the arenas in use an arena of its own,
/// up to 8 per core, and an arena keeps what was freed into it: after a load
/// run with 8 tokio workers a SQLite server held 15 arenas and 25 MiB of
/// anonymous memory, 17 MiB with two arenas (`TOKIO_WORKER_THREADS=8
/// bench/memory.sh`). Contention stays low: small blocks come from glibc's
/// per-thread caches without taking an arena lock. An operator's
/// `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES=glibc.malloc.arena_max=…` wins.
/// Called first thing in `main`, before any other thread exists.
#[cfg(target_env = "gnu")]
#[allow(unsafe_code)]
fn cap_malloc_arenas() {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() || tunables.contains("arena_max") {
        return;
    }
    // SAFETY: mallopt takes two integers and changes allocator tuning only;
    // no other thread is allocating yet.
    let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) };
}

#[cfg(not(target_env = "gnu"))]
fn cap_malloc_arenas() {}

fn main() -> ExitCode {
    cap_malloc_arenas();
    let cli = coffer::cli::Cli::parse();
    // One crypto provider for every rustls user in the process (server TLS,
    // the CLI's HTTPS client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    coffer::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(coffer::cli::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
