//! Command-line interface: clap types and dispatch. One module per command
//! group; the server command hands over to `crate::server`.

mod access;
mod approvals; // protected environments (issue 17)
mod audit;
mod auth;
mod backup;
mod ci_sync; // CI sync targets: GitHub Actions, GitLab CI/CD (issue 19)
mod client;
mod context;
mod credentials;
mod database; // database credentials (issue 21)
mod fallback;
mod files;
mod jwt; // JWT/OIDC workload-identity login (issue 19)
mod keys;
mod operator;
mod pin;
mod run;
mod secrets;
mod share;
mod sso; // single sign-on (issue 20)
mod tenants;
mod webhooks; // signed webhooks (issue 17)

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
    /// Protected environments: change and access requests, approve/reject,
    /// the break-glass review queue, the approval policy.
    Approvals {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        env: secrets::EnvArgs,
        #[command(subcommand)]
        cmd: approvals::ApprovalsCmd,
    },
    /// Signed webhooks of the organization: add (shows the secret once),
    /// list, remove, and a hook's delivery log.
    Webhooks {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        org: access::OrgArgs,
        #[command(subcommand)]
        cmd: webhooks::WebhooksCmd,
    },
    /// JWT/OIDC login for CI: the organization's trusted token issuers and
    /// login roles (`coffer login --jwt "$ID_TOKEN" --role NAME`).
    Jwt {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        org: access::OrgArgs,
        #[command(subcommand)]
        cmd: jwt::JwtCmd,
    },
    /// CI sync targets of an environment: GitHub Actions secrets, GitLab
    /// CI/CD variables (add, status, run, jobs, remove). Not the .env file
    /// sync, which is `coffer push|pull|diff`.
    Sync {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        env: secrets::EnvArgs,
        #[command(subcommand)]
        cmd: ci_sync::SyncCmd,
    },
    /// Database credentials: connections, dynamic and static roles, fresh
    /// credentials (`creds ROLE`), leases (list, renew, revoke, revoke-prefix).
    Database {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        env: secrets::EnvArgs,
        #[command(subcommand)]
        cmd: database::DatabaseCmd,
    },
    /// Break glass on a protected environment: act at once for a while,
    /// with a mandatory reason (audited, reviewed by an approver).
    BreakGlass {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        env: secrets::EnvArgs,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
    /// Run a program with the secrets of an environment in its environment:
    /// `coffer run -- CMD ARGS…` (no shell; exit status is the program's).
    Run {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        env: secrets::EnvArgs,
        #[command(flatten)]
        args: run::RunArgs,
    },
    /// Print an environment's values (env, json or yaml), or write them to a 0600 file.
    Pull {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        env: secrets::EnvArgs,
        #[command(flatten)]
        args: files::PullArgs,
    },
    /// Write a .env file's values to an environment, after showing the plan.
    Push {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        env: secrets::EnvArgs,
        #[command(flatten)]
        args: files::PushArgs,
    },
    /// Compare a .env file with an environment: keys only, never values
    /// (exit 0: same, 1: different).
    Diff {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        env: secrets::EnvArgs,
        /// The file (`.env` unless --format says otherwise).
        file: PathBuf,
        /// The file's format.
        #[arg(long, value_enum, default_value = "env")]
        format: files::Format,
    },
    /// Default org, project, environment and server: named contexts (offline).
    Context {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        cmd: context::ContextCmd,
    },
    /// Log in and store the session (device approval, or --email with a password).
    Login {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        args: auth::LoginArgs,
    },
    /// Print a shell completion script: `coffer completion bash > /etc/bash_completion.d/coffer`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (coffer.1, coffer-run.1, …) into a directory.
    Man {
        /// Output directory (created when missing).
        #[arg(long, short = 'o', value_name = "DIR")]
        out: PathBuf,
    },
    /// Revoke the stored session and delete it from this machine.
    Logout {
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// One screen: the org/project/env commands act on (and where each
    /// comes from), the server and its seal state, and who you are.
    Status {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        env: secrets::EnvArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show who the CLI acts as: kind, name, org, accessor, expiry.
    Whoami {
        #[command(flatten)]
        server: client::ServerArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Users: create, list, show, sessions, password, two-factor login, disable, delete.
    User {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        cmd: auth::UserCmd,
    },
    /// Organizations: create, list, show, rename, delete, restore, purge; membership.
    Org {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        org: access::OrgArgs,
        #[command(subcommand)]
        cmd: access::OrgCmd,
    },
    /// Projects of an organization: create, list, show, rename, delete, restore, purge.
    Project {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        env: secrets::EnvArgs,
        #[command(subcommand)]
        cmd: tenants::ProjectCmd,
    },
    /// Environments of a project: create, list, show, update, delete, restore, purge.
    Env {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        env: secrets::EnvArgs,
        #[command(subcommand)]
        cmd: tenants::EnvCmd,
    },
    /// Groups of org members, to grant to many users at once.
    Group {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        org: access::OrgArgs,
        #[command(subcommand)]
        cmd: access::GroupCmd,
    },
    /// Grant permissions on environments to a user, service account or group; `grant list` lists them.
    #[command(subcommand_negates_reqs = true)]
    Grant {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        org: access::OrgArgs,
        #[command(flatten)]
        args: access::GrantArgs,
        #[command(subcommand)]
        cmd: Option<access::GrantCmd>,
    },
    /// Revoke a grant by its ID (from `coffer grant list`).
    Revoke {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        org: access::OrgArgs,
        /// The grant's ID.
        grant_id: String,
    },
    /// Service accounts: machine identities with their own grants and tokens.
    ServiceAccount {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        org: access::OrgArgs,
        #[command(subcommand)]
        cmd: access::ServiceAccountCmd,
    },
    /// Your tokens: create (acting as you), list, revoke.
    Token {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        cmd: access::TokenCmd,
    },
    /// Show the fingerprint of an https server's certificate and, once you
    /// confirm it, pin it for that address (trust on first use).
    Trust {
        #[command(flatten)]
        server: client::ServerArgs,
        /// The fingerprint you expect (`sha256:<hex>`): confirms without a prompt.
        #[arg(long)]
        expect: Option<String>,
    },
    /// One-time share links: create (encrypted here, key only in the URL's
    /// `#…`), open, list, revoke; the organization's share policy.
    Share {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        env: secrets::EnvArgs,
        #[command(subcommand)]
        cmd: share::ShareCmd,
    },
    /// The audit log: verify the hash chain, search records, prune old ones.
    Audit {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        cmd: audit::AuditCmd,
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
        Command::Secrets { server, env, cmd } => {
            secrets::run(&client::Client::new(&server)?, &context::resolve(&env)?, cmd).await
        }
        Command::Approvals { server, env, cmd } => {
            approvals::run(&client::Client::new(&server)?, &context::resolve(&env)?, cmd).await
        }
        Command::Webhooks { server, org, cmd } => webhooks::run(&client::Client::new(&server)?, &org, cmd).await,
        Command::Jwt { server, org, cmd } => jwt::run(&client::Client::new(&server)?, &org, cmd).await,
        Command::Sync { server, env, cmd } => {
            ci_sync::run(&client::Client::new(&server)?, &context::resolve(&env)?, cmd).await
        }
        Command::Database { server, env, cmd } => {
            database::run(&client::Client::new(&server)?, &context::resolve(&env)?, cmd).await
        }
        Command::BreakGlass { server, env, reason } => {
            approvals::break_glass(&client::Client::new(&server)?, &context::resolve(&env)?, &reason).await
        }
        Command::Run { server, env, args } => {
            run::run(&client::Client::new(&server)?, &context::resolve(&env)?, args).await
        }
        Command::Pull { server, env, args } => {
            files::pull(&client::Client::new(&server)?, &context::resolve(&env)?, args).await
        }
        Command::Push { server, env, args } => {
            files::push(&client::Client::new(&server)?, &context::resolve(&env)?, args).await
        }
        Command::Diff {
            server,
            env,
            file,
            format,
        } => files::diff(&client::Client::new(&server)?, &context::resolve(&env)?, &file, format).await,
        Command::Context { server, cmd } => context::run(cmd, server.address.as_deref()),
        Command::Login { server, args } => auth::login(&server, args).await,
        Command::Logout { server } => auth::logout(&server).await,
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into a buffer first: clap_complete panics on a failed write
            // (`coffer completion zsh | head`).
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "coffer", &mut buf);
            match std::io::Write::write_all(&mut std::io::stdout(), &buf) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow::Error::new(e).context("cannot write the completion script"))
                }
                _ => Ok(0),
            }
        }
        Command::Man { out } => {
            anyhow::Context::with_context(std::fs::create_dir_all(&out), || {
                format!("cannot create {}", out.display())
            })?;
            anyhow::Context::with_context(
                clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &out),
                || format!("cannot write the man pages into {}", out.display()),
            )?;
            println!("man pages written to {}", out.display());
            Ok(0)
        }
        Command::Status { server, env, json } => context::status(&server, &env, json).await,
        Command::Whoami { server, json } => auth::whoami(&client::Client::new(&server)?, json).await,
        Command::User { server, cmd } => auth::user(&client::Client::new(&server)?, cmd).await,
        Command::Org { server, org, cmd } => access::org(&client::Client::new(&server)?, &org, cmd).await,
        Command::Project { server, env, cmd } => {
            tenants::project(&client::Client::new(&server)?, &context::resolve(&env)?, cmd).await
        }
        Command::Env { server, env, cmd } => {
            tenants::env(&client::Client::new(&server)?, &context::resolve(&env)?, cmd).await
        }
        Command::Group { server, org, cmd } => access::group(&client::Client::new(&server)?, &org, cmd).await,
        Command::Grant { server, org, args, cmd } => {
            access::grant(&client::Client::new(&server)?, &org, args, cmd).await
        }
        Command::Revoke { server, org, grant_id } => {
            access::revoke(&client::Client::new(&server)?, &org, &grant_id).await
        }
        Command::ServiceAccount { server, org, cmd } => {
            access::service_account(&client::Client::new(&server)?, &org, cmd).await
        }
        Command::Token { server, cmd } => access::token(&client::Client::new(&server)?, cmd).await,
        Command::Trust { server, expect } => {
            let (address, _) = context::address(server.address.as_deref())?;
            pin::trust(&address, expect.as_deref()).await
        }
        Command::Audit { server, cmd } => audit::run(&client::Client::new(&server)?, cmd).await,
        Command::Share { server, env, cmd } => {
            // `open` needs no context: the link names its server.
            let target = match cmd {
                share::ShareCmd::Open { .. } => None,
                _ => Some(context::resolve(&env)?),
            };
            share::run(&server, target.as_ref(), cmd).await
        }
    }
}
