//! `coffer secrets …`: daily secret operations on one environment, over the
//! native API. Values are read from stdin or a hidden prompt, never argv, so
//! they stay out of shell history and `ps`.

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::client::Client;
use super::context::Target;

/// Which environment a command works on. Each value falls back, in order,
/// to its environment variable, `.coffer.toml`, the current context and a
/// built-in default (see `context`).
#[derive(Debug, Default, Args)]
pub(crate) struct EnvArgs {
    /// Organization slug [env: COFFER_ORG] [default: default].
    #[arg(long, global = true)]
    pub(crate) org: Option<String>,
    /// Project slug [env: COFFER_PROJECT] [default: default].
    #[arg(long, global = true)]
    pub(crate) project: Option<String>,
    /// Environment slug [env: COFFER_ENV] [default: dev].
    #[arg(long, global = true)]
    pub(crate) env: Option<String>,
}

/// Secrets commands.
#[derive(Debug, Subcommand)]
pub(crate) enum SecretsCmd {
    /// List secrets (metadata only; nothing is decrypted).
    List {
        /// Print JSON (same as `-o json`).
        #[arg(long)]
        json: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print a secret's value (or only its metadata with --meta).
    Get {
        /// Secret key.
        key: String,
        /// Metadata only; do not reveal the value.
        #[arg(long)]
        meta: bool,
        /// Resolve the value's `${…}` references (reveal on every
        /// environment they read).
        #[arg(long, conflicts_with = "meta")]
        resolve: bool,
        /// Print JSON (same as `-o json`).
        #[arg(long)]
        json: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Create or update a secret; the value is read from stdin or a hidden prompt.
    Set {
        /// Secret key.
        key: String,
        /// Value type: text, json, yaml, boolean, integer, password.
        #[arg(long = "type")]
        value_type: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Soft-delete a secret (restorable), or purge it with --permanent.
    Delete {
        /// Secret key.
        key: String,
        /// Remove every version for good.
        #[arg(long)]
        permanent: bool,
    },
    /// List the versions of a secret.
    History {
        /// Secret key.
        key: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Make a new version holding an old version's value.
    Rollback {
        /// Secret key.
        key: String,
        /// The version to bring back.
        version: i64,
    },
    /// Undo a soft delete.
    Restore {
        /// Secret key.
        key: String,
    },
    /// Compare a local .env file with the environment (keys only, like `coffer diff`).
    Diff {
        /// The .env file.
        file: std::path::PathBuf,
    },
    /// Copy (promote) values from one environment of the project to another:
    /// the server makes a plan (created / updated / unchanged) and applies it
    /// in one transaction, all or nothing. Needs reveal on --from, and read
    /// plus create/update on --to. --dry-run prints the plan only.
    Copy {
        /// Source environment.
        #[arg(long)]
        from: String,
        /// Target environment.
        #[arg(long)]
        to: String,
        /// The keys to copy.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        keys: Vec<String>,
        /// Every key of the source.
        #[arg(long)]
        all: bool,
        /// Print the plan, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let `coffer run` set one variable it refuses by default (LD_PRELOAD,
    /// EDITOR, GIT_SSH_COMMAND…) in this environment; environment admins
    /// only, audited. `--remove` refuses it again; without NAME, list.
    AllowVar {
        /// The variable name; none lists the allowed names.
        name: Option<String>,
        /// Withdraw the allowance.
        #[arg(long, requires = "name")]
        remove: bool,
    },
}

/// Output format of the listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

fn seg(s: &str) -> String {
    // Slugs and keys are validated by the server; still never let a
    // separator change the path.
    s.replace(['/', '?', '#', '%'], "_")
}

/// The native API path of an environment (below `/api/v1`).
pub(crate) fn env_base(env: &Target) -> String {
    format!(
        "/orgs/{}/projects/{}/environments/{}",
        seg(&env.org),
        seg(&env.project),
        seg(&env.env)
    )
}

/// Run a secrets command.
pub(crate) async fn run(client: &Client, env: &Target, cmd: SecretsCmd) -> anyhow::Result<u8> {
    let base = env_base(env);
    let secret = |key: &str| format!("{base}/secrets/{}", seg(key));
    match cmd {
        SecretsCmd::List { json, output } => {
            let json = json || output == Output::Json;
            let data = client.api(Method::GET, &format!("{base}/secrets"), None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                println!("{:<32} {:<9} {:>7}  UPDATED", "KEY", "TYPE", "VERSION");
                for s in data.as_array().into_iter().flatten() {
                    println!(
                        "{:<32} {:<9} {:>7}  {}",
                        s["key"].as_str().unwrap_or(""),
                        s["type"].as_str().unwrap_or(""),
                        s["version"],
                        s["updated_at"].as_str().unwrap_or("")
                    );
                }
            }
        }
        SecretsCmd::Get {
            key,
            meta,
            resolve,
            json,
            output,
        } => {
            let json = json || output == Output::Json;
            let path = if meta {
                secret(&key)
            } else if resolve {
                format!("{}?reveal=true&resolve=true", secret(&key))
            } else {
                format!("{}?reveal=true", secret(&key))
            };
            let data = client.api(Method::GET, &path, None).await?;
            if json || meta {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                println!("{}", data["value"].as_str().unwrap_or(""));
            }
        }
        SecretsCmd::Set {
            key,
            value_type,
            description,
        } => {
            let value = read_value(&key)?;
            let mut body = json!({ "value": value.as_str() });
            if let Some(t) = value_type {
                body["type"] = Value::String(t);
            }
            if let Some(d) = description {
                body["description"] = Value::String(d);
            }
            let data = client.api(Method::POST, &secret(&key), Some(&body)).await?;
            if !super::approvals::pending_note(&data, &env.org, &key) {
                println!("{key}: version {}", data["version"]);
            }
            // The server's warnings (a password found in a breach corpus).
            for w in data["warnings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                eprintln!("coffer: warning: {w}");
            }
        }
        SecretsCmd::Delete { key, permanent } => {
            if permanent {
                client
                    .api(Method::DELETE, &format!("{}/permanent", secret(&key)), None)
                    .await?;
                println!("{key}: purged (every version removed)");
            } else {
                let data = client.api(Method::DELETE, &secret(&key), None).await?;
                if !super::approvals::pending_note(&data, &env.org, &key) {
                    println!("{key}: deleted (restore with `coffer secrets restore {key}`)");
                }
            }
        }
        SecretsCmd::History { key, output } => {
            let data = client
                .api(Method::GET, &format!("{}/history", secret(&key)), None)
                .await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&data)?);
                return Ok(0);
            }
            println!("{:>7}  {:<9} {:<26} BY", "VERSION", "TYPE", "CREATED");
            for v in data.as_array().into_iter().flatten() {
                println!(
                    "{:>7}  {:<9} {:<26} {}",
                    v["version"],
                    v["type"].as_str().unwrap_or(""),
                    v["created_at"].as_str().unwrap_or(""),
                    match (v["created_by"].as_str(), v["created_by_kind"].as_str()) {
                        (Some(name), Some("service_account")) => format!("{name} (service account)"),
                        (Some(accessor), Some("accessor")) => format!("token {accessor}"),
                        (name, _) => name.unwrap_or("").to_owned(),
                    }
                );
            }
        }
        SecretsCmd::Rollback { key, version } => {
            let data = client
                .api(
                    Method::POST,
                    &format!("{}/rollback", secret(&key)),
                    Some(&json!({ "version": version })),
                )
                .await?;
            if !super::approvals::pending_note(&data, &env.org, &key) {
                println!(
                    "{key}: version {} now holds the value of version {version}",
                    data["version"]
                );
            }
        }
        SecretsCmd::Restore { key } => {
            client
                .api(Method::POST, &format!("{}/restore", secret(&key)), None)
                .await?;
            println!("{key}: restored");
        }
        SecretsCmd::Copy {
            from,
            to,
            keys,
            all,
            dry_run,
            json,
        } => {
            let path = format!("/orgs/{}/projects/{}/copy", seg(&env.org), seg(&env.project));
            let body = json!({ "from": from, "to": to, "keys": keys, "all": all, "dry_run": dry_run });
            let data = client.api(Method::POST, &path, Some(&body)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
                return Ok(0);
            }
            let plan = data["plan"].as_array().cloned().unwrap_or_default();
            for item in &plan {
                println!(
                    "{:<10} {}",
                    item["action"].as_str().unwrap_or("?"),
                    item["key"].as_str().unwrap_or("?")
                );
            }
            let count = |a: &str| plan.iter().filter(|i| i["action"] == a).count();
            println!(
                "{} {from} -> {to}: {} created, {} updated, {} unchanged{}",
                if dry_run { "Plan" } else { "Copied" },
                count("created"),
                count("updated"),
                count("unchanged"),
                if dry_run { " (dry run: nothing written)" } else { "" }
            );
        }
        SecretsCmd::Diff { file } => {
            return super::files::diff(client, env, &file, super::files::Format::Env).await;
        }
        SecretsCmd::AllowVar { name: None, .. } => {
            let data = client
                .api(Method::GET, &format!("{base}/allowed-variables"), None)
                .await?;
            for v in data.as_array().into_iter().flatten() {
                println!(
                    "{:<32} {:<32} {}",
                    v["name"].as_str().unwrap_or(""),
                    v["allowed_by"].as_str().unwrap_or(""),
                    v["allowed_at"].as_str().unwrap_or("")
                );
            }
        }
        SecretsCmd::AllowVar {
            name: Some(name),
            remove,
        } => {
            let path = format!("{base}/allowed-variables/{}", seg(&name));
            if remove {
                let data = client.api(Method::DELETE, &path, None).await?;
                if data["removed"] == Value::Bool(true) {
                    println!("{name}: refused again by coffer run");
                } else {
                    println!("{name}: was not allowed");
                }
            } else {
                client.api(Method::PUT, &path, None).await?;
                println!("{name}: coffer run may now set it in this environment");
            }
        }
    }
    Ok(0)
}

/// The value to store: a hidden prompt on a terminal, else all of stdin
/// (one trailing newline removed, as `echo` adds it).
fn read_value(key: &str) -> anyhow::Result<Zeroizing<String>> {
    read_hidden(
        &format!("Value of {key} (input hidden): "),
        &format!("coffer secrets set {key}"),
    )
}

/// A value from a hidden prompt on a terminal, else all of stdin (one
/// trailing newline dropped); `example` is the command the error suggests
/// piping into.
pub(super) fn read_hidden(prompt: &str, example: &str) -> anyhow::Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        let v = rpassword::prompt_password(prompt).context("cannot read the value")?;
        return Ok(Zeroizing::new(v));
    }
    let mut v = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut v)
        .context("cannot read the value from stdin (is it UTF-8?)")?;
    if v.ends_with('\n') {
        v.pop();
        if v.ends_with('\r') {
            v.pop();
        }
    }
    if v.is_empty() {
        bail!("empty value on stdin; pipe the value in, e.g. `printf %s \"$VALUE\" | {example}`");
    }
    Ok(v)
}
