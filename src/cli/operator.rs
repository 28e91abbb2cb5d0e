//! `coffer operator init|unseal|seal|status`: the key custodians' commands,
//! over the Vault-compatible `/v1/sys/*` endpoints.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::client::Client;

/// Operator commands.
#[derive(Debug, Subcommand)]
pub(crate) enum OperatorCmd {
    /// Initialize a new server: prints the unseal shares and the root token, once.
    Init {
        /// Number of shares (N).
        #[arg(long = "shares", default_value_t = 5)]
        shares: u8,
        /// Shares needed to unseal (K).
        #[arg(long = "threshold", default_value_t = 3)]
        threshold: u8,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Encrypt share i to the i-th custodian: an age X25519 recipient (age1…)
        /// or a file holding one. Give it once per share, in order.
        #[arg(long = "age-recipient")]
        age_recipients: Vec<String>,
    },
    /// Submit one unseal share, read without echo from the terminal, or from stdin.
    Unseal {
        /// Throw away the shares submitted so far instead.
        #[arg(long)]
        reset: bool,
        /// The share given is age-encrypted: decrypt it locally with this
        /// identity file (AGE-SECRET-KEY-1…) and submit the plaintext share.
        #[arg(long)]
        identity: Option<std::path::PathBuf>,
        /// Seal migration (Shamir <-> HSM, see `migration` in status): submit with migrate=true.
        #[arg(long)]
        migrate: bool,
    },
    /// Seal the server: every key is dropped from memory (needs COFFER_TOKEN).
    Seal,
    /// Show the seal status. Exit code 0 unsealed, 2 sealed, 1 error.
    Status,
    /// Write a signed backup of the whole store to FILE (needs the root
    /// token; the server must be unsealed, it signs with its root key).
    Backup {
        /// Output file (created with mode 0600; refuses to overwrite).
        #[arg(short = 'o', long = "output")]
        output: std::path::PathBuf,
    },
    /// Restore a backup FILE into an EMPTY store, offline (no server runs
    /// on it yet). Reads K unseal shares (prompt, or one per line on stdin)
    /// to verify the file's signature before writing anything.
    Restore {
        /// The backup file.
        file: std::path::PathBuf,
        /// Target store URL (sqlite://PATH or postgres://…).
        #[arg(long = "storage", conflicts_with = "config", required_unless_present = "config")]
        storage: Option<String>,
        /// Or the server config file whose [storage] url is the target.
        #[arg(long, short = 'c')]
        config: Option<std::path::PathBuf>,
    },
    #[command(flatten)]
    Keys(super::keys::KeysCmd),
}

/// Exit code of `status` when sealed, as Vault's CLI.
pub(crate) const EXIT_SEALED: u8 = 2;

/// Run an operator command; returns the process exit code.
pub(crate) async fn run(client: &Client, cmd: OperatorCmd) -> anyhow::Result<u8> {
    match cmd {
        OperatorCmd::Init {
            shares,
            threshold,
            json,
            age_recipients,
        } => {
            let recipients = age_recipients
                .iter()
                .map(|r| recipient_arg(r))
                .collect::<anyhow::Result<Vec<String>>>()?;
            let out = client
                .call(
                    Method::PUT,
                    "/v1/sys/init",
                    Some(&json!({
                        "secret_shares": shares,
                        "secret_threshold": threshold,
                        "pgp_keys": recipients,
                    })),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_init(&out, threshold);
            }
            Ok(0)
        }
        OperatorCmd::Unseal {
            reset,
            identity,
            migrate,
        } => {
            let body = if reset {
                json!({ "reset": true })
            } else {
                let mut share = read_share()?;
                if let Some(path) = identity {
                    let id = Zeroizing::new(
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("cannot read identity file {}", path.display()))?,
                    );
                    share = crate::keys::shares::decrypt_share(&id, &share).map_err(anyhow::Error::msg)?;
                }
                json!({ "key": share.as_str(), "migrate": migrate })
            };
            let status = client.call(Method::PUT, "/v1/sys/unseal", Some(&body)).await?;
            print_status(&status);
            Ok(0)
        }
        OperatorCmd::Seal => {
            client.require_token()?;
            client.call(Method::PUT, "/v1/sys/seal", None).await?;
            println!("Sealed: every key was dropped from the server's memory.");
            Ok(0)
        }
        OperatorCmd::Keys(cmd) => super::keys::run(client, cmd).await,
        OperatorCmd::Backup { output } => super::backup::backup(client, &output).await,
        OperatorCmd::Restore { file, storage, config } => {
            super::backup::restore(&file, storage.as_deref(), config.as_deref()).await
        }
        OperatorCmd::Status => {
            let status = client.call(Method::GET, "/v1/sys/seal-status", None).await?;
            print_status(&status);
            Ok(if status["sealed"].as_bool() == Some(false) {
                0
            } else {
                EXIT_SEALED
            })
        }
    }
}

fn print_init(out: &Value, threshold: u8) {
    let mut keys = out["keys"].as_array().cloned().unwrap_or_default();
    let mut what = "Unseal";
    if keys.is_empty() {
        // seal "pkcs11": the HSM unseals; custodians hold recovery shares.
        keys = out["recovery_keys"].as_array().cloned().unwrap_or_default();
        what = "Recovery";
    }
    for (i, k) in keys.iter().enumerate() {
        println!("{what} share {}: {}", i + 1, k.as_str().unwrap_or(""));
    }
    println!("\nInitial root token: {}", out["root_token"].as_str().unwrap_or(""));
    println!(
        "\nGive each share to a different custodian. Any {threshold} of them unseal the server; \
         fewer reveal nothing. coffer keeps no copy: if more than {} are lost, the data is lost.",
        keys.len().saturating_sub(usize::from(threshold))
    );
}

fn print_status(s: &Value) {
    let sealed = s["sealed"].as_bool().unwrap_or(true);
    println!("Initialized   {}", s["initialized"]);
    println!("Sealed        {sealed}");
    println!("Shares        {}", s["n"]);
    println!("Threshold     {}", s["t"]);
    if sealed {
        println!("Progress      {}/{}", s["progress"], s["t"]);
    }
    println!("Storage       {}", s["storage_type"].as_str().unwrap_or(""));
    println!("Version       {}", s["version"].as_str().unwrap_or(""));
}

/// An `--age-recipient` value: the recipient itself, or a file holding one.
fn recipient_arg(arg: &str) -> anyhow::Result<String> {
    if arg.starts_with("age1") {
        return Ok(arg.to_owned());
    }
    let text = std::fs::read_to_string(arg).with_context(|| format!("cannot read recipient file {arg}"))?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("age1"))
        .map(str::to_owned)
        .with_context(|| format!("{arg} holds no age1… recipient"))
}

/// Read one share: a prompt without echo on a terminal, else one line of stdin.
pub(crate) fn read_share() -> anyhow::Result<Zeroizing<String>> {
    let share = if std::io::stdin().is_terminal() {
        Zeroizing::new(rpassword::prompt_password("Unseal share (input hidden): ").context("cannot read the share")?)
    } else {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the share from stdin")?;
        line
    };
    let trimmed = Zeroizing::new(share.trim().to_owned());
    if trimmed.is_empty() {
        bail!("no share given");
    }
    Ok(trimmed)
}
