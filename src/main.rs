//! coffer's entry point: parse the command line, set up logging, dispatch.
//! Exit codes: 0 success, 1 error, 2 sealed (`operator status`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
