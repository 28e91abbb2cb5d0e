//! `coffer operator rotate-root|rotate-kek|rewrap|keks|destroy-kek`: the
//! root key's and an organization's KEK lifecycle (root token in
//! `COFFER_TOKEN`).
//!
//! `rewrap` drives the server one batch per request, so a crash (of either
//! side) loses at most one batch, and running it again resumes; it draws a
//! progress bar on stderr and prints the final count on stdout.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::Client;

/// Key lifecycle commands (flattened into `coffer operator`).
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCmd {
    /// Rotate the root key: every KEK is re-wrapped in one transaction, the old root is zeroized.
    /// Shamir mode: each custodian runs it with a share (stdin or hidden prompt); the K-th rotates.
    RotateRoot,
    /// Make a new KEK version the organization's active one (lazy rotation).
    RotateKek {
        /// Organization slug.
        #[arg(long)]
        org: String,
    },
    /// Re-wrap every DEK still under an older KEK version (resumable).
    Rewrap {
        /// Organization slug.
        #[arg(long)]
        org: String,
        /// DEKs per batch (one transaction each).
        #[arg(long, default_value_t = 2000)]
        batch: usize,
    },
    /// List an organization's KEK versions and how many secret versions each wraps.
    Keks {
        /// Organization slug.
        #[arg(long)]
        org: String,
    },
    /// Create the HSM key of `seal "pkcs11"` (first setup, run on the server host):
    /// an AES-256 key, sensitive and non-extractable, labelled as the config says.
    HsmKeygen {
        /// Server config file with the [seal] section.
        #[arg(long, short = 'c', env = "COFFER_CONFIG")]
        config: std::path::PathBuf,
    },
    /// Destroy (crypto-shred) an unreferenced, inactive KEK version.
    DestroyKek {
        /// Organization slug.
        #[arg(long)]
        org: String,
        /// KEK version to destroy.
        #[arg(long)]
        version: i64,
    },
}

/// Run a key lifecycle command.
pub(crate) async fn run(client: &Client, cmd: KeysCmd) -> anyhow::Result<u8> {
    match cmd {
        KeysCmd::RotateRoot => {
            client.require_token()?;
            let status = client.call(Method::GET, "/v1/sys/seal-status", None).await?;
            let body = if status["type"] == "pkcs11" {
                json!({})
            } else {
                let share = super::operator::read_share()?;
                json!({ "key": share.as_str() })
            };
            let out = client.call(Method::PUT, "/v1/sys/rotate-root", Some(&body)).await?;
            if out["complete"] == Value::Bool(true) {
                println!(
                    "Root key rotated: {} KEKs re-wrapped under the new root; the old root key was dropped.",
                    out["keks_rewrapped"]
                );
            } else {
                println!(
                    "Share accepted: {}/{} for the root rotation.",
                    out["progress"], out["required"]
                );
            }
        }
        KeysCmd::RotateKek { org } => {
            let k = client
                .api(Method::POST, &format!("/orgs/{org}/keks/rotate"), None)
                .await?;
            println!(
                "KEK version {} is now active for {org}; run `coffer operator rewrap --org {org}` to move older DEKs to it.",
                k["version"]
            );
        }
        KeysCmd::Keks { org } => {
            let keks = client.api(Method::GET, &format!("/orgs/{org}/keks"), None).await?;
            println!("VERSION  ACTIVE  REFERENCES  CREATED");
            for k in keks.as_array().cloned().unwrap_or_default() {
                println!(
                    "{:<8} {:<7} {:<11} {}",
                    k["version"],
                    k["active"],
                    k["references"],
                    k["created_at"].as_str().unwrap_or("")
                );
            }
        }
        KeysCmd::DestroyKek { org, version } => {
            client
                .api(Method::DELETE, &format!("/orgs/{org}/keks/{version}"), None)
                .await?;
            println!("KEK version {version} of {org} destroyed: what it wrapped can never be decrypted again.");
        }
        KeysCmd::Rewrap { org, batch } => rewrap(client, &org, batch).await?,
        KeysCmd::HsmKeygen { config } => {
            let settings = crate::config::Settings::load(Some(&config))?;
            let cfg = settings
                .pkcs11
                .context("the config has no [seal] type = \"pkcs11\" section")?
                .hsm;
            let (token, key) = (cfg.token_label.clone(), cfg.key_label.clone());
            tokio::task::spawn_blocking(move || hsm::Hsm::new(cfg).generate_key()).await??;
            println!(
                "Created AES-256 key {key:?} in token {token:?} (sensitive, non-extractable). \
                 Start the server, then run `coffer operator init`: custodians get recovery shares."
            );
        }
    }
    Ok(0)
}

async fn rewrap(client: &Client, org: &str, batch: usize) -> anyhow::Result<()> {
    let keks = client.api(Method::GET, &format!("/orgs/{org}/keks"), None).await?;
    let total: i64 = keks
        .as_array()
        .context("unexpected answer listing KEK versions")?
        .iter()
        .filter(|k| k["active"] != Value::Bool(true))
        .filter_map(|k| k["references"].as_i64())
        .sum();
    let start = Instant::now();
    let mut done_count: u64 = 0;
    // Credentials sealed under the KEK: webhook secrets, CI sync tokens,
    // SSO client secrets, database connections.
    let mut creds = [0u64; 4];
    let active = loop {
        let b = client
            .api(
                Method::POST,
                &format!("/orgs/{org}/keks/rewrap"),
                Some(&json!({ "batch": batch })),
            )
            .await?;
        done_count += b["rewrapped"].as_u64().unwrap_or(0);
        for (n, k) in creds.iter_mut().zip([
            "webhook_secrets",
            "ci_sync_tokens",
            "sso_client_secrets",
            "database_connections",
        ]) {
            *n += b["credentials"][k].as_u64().unwrap_or(0);
        }
        progress(done_count + creds.iter().sum::<u64>(), total, start);
        if b["done"].as_bool() != Some(false) {
            break b["active_version"].clone();
        }
    };
    eprintln!();
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "Re-wrapped {done_count} DEKs of {org} to KEK version {active} in {secs:.2} s ({:.0} DEKs/s).",
        done_count as f64 / secs
    );
    println!(
        "Credentials moved to KEK version {active}: {} webhook secrets, {} CI sync tokens, {} SSO client secrets, \
         {} database connections.",
        creds[0], creds[1], creds[2], creds[3]
    );
    Ok(())
}

/// `rewrap acme [#######.............]  12000/50000` on stderr.
fn progress(done: u64, total: i64, start: Instant) {
    const WIDTH: u64 = 30;
    let total = u64::try_from(total).unwrap_or(0).max(done).max(1);
    let filled = (done * WIDTH / total).min(WIDTH);
    let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-9);
    let bar: String = (0..WIDTH).map(|i| if i < filled { '#' } else { '.' }).collect();
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\rrewrap [{bar}] {done}/{total} ({rate:.0} DEKs/s)");
    let _ = err.flush();
}
