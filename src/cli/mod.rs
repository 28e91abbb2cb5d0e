//! Command-line interface: clap types and dispatch. One module per command
//! group; the server command hands over to `crate::server`.

mod client;
mod keys;
mod operator;
mod secrets;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Settings;

/// coffer: a self-hosted secrets manager.
#[derive(Debug, Parser)]
#[command(name = "coffer", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (sealed at start; see `coffer operator`).
    Server {
        /// Config file (TOML).
        #[arg(long, short = 'c', env = "COFFER_CONFIG", conflicts_with = "dev")]
        config: Option<PathBuf>,
        /// Throw-away dev server: temp SQLite, plain HTTP, auto-init and unseal.
        #[arg(long)]
        dev: bool,
        /// Address of the dev server.
        #[arg(long, default_value = crate::config::DEFAULT_ADDRESS, requires = "dev")]
        dev_listen_address: SocketAddr,
    },
    /// Key custodian commands: init, unseal, seal, status.
    Operator {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        cmd: operator::OperatorCmd,
    },
    /// Read and write secrets of one environment.
    Secrets {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        env: secrets::EnvArgs,
        #[command(subcommand)]
        cmd: secrets::SecretsCmd,
    },
}

/// Run the parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Server {
            dev: true,
            dev_listen_address,
            ..
        } => {
            crate::server::run_dev(dev_listen_address).await?;
            Ok(0)
        }
        Command::Server { config, .. } => {
            let settings = Settings::load(config.as_deref())?;
            crate::server::run(settings).await?;
            Ok(0)
        }
        Command::Operator { server, cmd } => operator::run(&client::Client::new(&server)?, cmd).await,
        Command::Secrets { server, env, cmd } => secrets::run(&client::Client::new(&server)?, &env, cmd).await,
    }
}
