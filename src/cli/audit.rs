//! `coffer audit verify|search|prune`: the audit log through the server's
//! API (root token, or an organization admin's for `search --org`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::Client;

/// Audit log commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCmd {
    /// Check the whole hash chain and every signed checkpoint; exit 1 and
    /// name the first bad record if anything was changed, removed or inserted.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Search records (oldest first).
    Search {
        #[command(flatten)]
        filter: Filter,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Export the records older than a time to a file, then delete them
    /// from the store under a signed prune checkpoint.
    Prune {
        /// Records before this time: RFC 3339, or a number of days ago (`400d`).
        #[arg(long)]
        before: String,
        /// JSON-lines file to export them to first (must not exist).
        #[arg(long)]
        export: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Search criteria.
#[derive(Debug, Args)]
pub(crate) struct Filter {
    /// Actor (email, service-account name, root).
    #[arg(long)]
    actor: Option<String>,
    /// Action, or a prefix ending in `.` (`secret.`).
    #[arg(long)]
    action: Option<String>,
    /// Resource path prefix.
    #[arg(long)]
    resource: Option<String>,
    /// Organization slug (required unless root).
    #[arg(long)]
    org: Option<String>,
    /// allowed, denied, error or begun (write-ahead records of mutations).
    #[arg(long)]
    outcome: Option<String>,
    /// From this time (RFC 3339 or unix ms).
    #[arg(long)]
    since: Option<String>,
    /// Before this time (RFC 3339 or unix ms).
    #[arg(long)]
    until: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 100)]
    limit: i64,
}

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// aligned columns
    Table,
    /// one JSON array
    Json,
    /// one JSON object per line
    Jsonl,
}

/// Records fetched per request when exporting.
const PAGE: i64 = 5_000;

fn query(pairs: &[(&str, Option<String>)]) -> anyhow::Result<String> {
    let set: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
        .collect();
    serde_urlencoded::to_string(set).context("cannot encode the query")
}

/// Run an audit command.
pub(crate) async fn run(client: &Client, cmd: AuditCmd) -> anyhow::Result<u8> {
    match cmd {
        AuditCmd::Verify { json } => verify(client, json).await,
        AuditCmd::Search { filter, output } => search(client, filter, output).await,
        AuditCmd::Prune { before, export, yes } => prune(client, &before, &export, yes).await,
    }
}

async fn verify(client: &Client, as_json: bool) -> anyhow::Result<u8> {
    let r = client.api(Method::GET, "/audit/verify", None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if r["ok"] == Value::Bool(true) {
        let mut line = format!(
            "audit log OK: {} records ({}–{}), {} signed checkpoints",
            r["records"], r["first_seq"], r["last_seq"], r["checkpoints"]
        );
        if r["pruned_through"].as_i64().unwrap_or(0) > 0 {
            line.push_str(&format!(
                "; records through {} were pruned under a signed checkpoint",
                r["pruned_through"]
            ));
        }
        println!("{line}");
    } else {
        let b = &r["broken"];
        let mut line = format!(
            "audit log BROKEN at record {}: {}",
            b["seq"],
            b["reason"].as_str().unwrap_or("")
        );
        if let Some(rec) = b.get("record").filter(|v| !v.is_null()) {
            line.push_str(&format!(
                "\n  stored record: {} {} {} {} ({})",
                rec["time"].as_str().unwrap_or(""),
                rec["actor"].as_str().unwrap_or(""),
                rec["action"].as_str().unwrap_or(""),
                rec["resource"].as_str().unwrap_or(""),
                rec["outcome"].as_str().unwrap_or("")
            ));
        }
        line.push_str(&format!("\n  {} records before it check out", r["records"]));
        println!("{line}");
    }
    Ok(if r["ok"] == Value::Bool(true) { 0 } else { 1 })
}

async fn search(client: &Client, f: Filter, output: Format) -> anyhow::Result<u8> {
    let q = query(&[
        ("actor", f.actor),
        ("action", f.action),
        ("resource", f.resource),
        ("org", f.org),
        ("outcome", f.outcome),
        ("since", f.since),
        ("until", f.until),
        ("limit", Some(f.limit.to_string())),
    ])?;
    let records = client.api(Method::GET, &format!("/audit/records?{q}"), None).await?;
    let rows = records.as_array().cloned().unwrap_or_default();
    let mut out = std::io::stdout().lock();
    match output {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&records)?)?,
        Format::Jsonl => {
            for r in &rows {
                writeln!(out, "{r}")?;
            }
        }
        Format::Table => {
            writeln!(
                out,
                "{:>7}  {:<24}  {:<24}  {:<22}  {:<8}  {:>3}  RESOURCE",
                "SEQ", "TIME", "ACTOR", "ACTION", "OUTCOME", "ST"
            )?;
            for r in &rows {
                writeln!(
                    out,
                    "{:>7}  {:<24}  {:<24}  {:<22}  {:<8}  {:>3}  {}",
                    r["seq"].as_i64().unwrap_or(0),
                    r["time"].as_str().unwrap_or(""),
                    r["actor"].as_str().unwrap_or(""),
                    r["action"].as_str().unwrap_or(""),
                    r["outcome"].as_str().unwrap_or(""),
                    r["status"].as_i64().unwrap_or(0),
                    r["resource"].as_str().unwrap_or("")
                )?;
            }
        }
    }
    Ok(0)
}

/// `400d` → that many days ago; anything else must be RFC 3339. Unix ms.
fn cutoff(before: &str) -> anyhow::Result<i64> {
    let t = if let Some(days) = before.strip_suffix('d') {
        let days: i64 = days
            .parse()
            .with_context(|| format!("--before {before:?}: expected RFC 3339 or a number of days like 400d"))?;
        time::OffsetDateTime::now_utc() - time::Duration::days(days)
    } else {
        time::OffsetDateTime::parse(before, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("--before {before:?}: expected RFC 3339 or a number of days like 400d"))?
    };
    Ok(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MIN))
}

async fn prune(client: &Client, before: &str, export: &PathBuf, yes: bool) -> anyhow::Result<u8> {
    let until = cutoff(before)?;
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(export)
            .with_context(|| format!("cannot create {} (it must not exist yet)", export.display()))?
    };
    // By sequence, not by time: record times follow the wall clock, which
    // may have been stepped back (a later record stamped earlier). A prune
    // removes a prefix of the sequence, so the export is that prefix: every
    // record up to the first one at or after the cutoff, which stays with
    // everything after it (docs/reliability.md, "Clock steps").
    let mut after: Option<i64> = None;
    let mut last_seq: Option<i64> = None;
    let mut count = 0u64;
    'pages: loop {
        let q = query(&[
            ("after_seq", Some(after.unwrap_or(0).to_string())),
            ("limit", Some(PAGE.to_string())),
        ])?;
        let page = client.api(Method::GET, &format!("/audit/records?{q}"), None).await?;
        let rows = page.as_array().cloned().unwrap_or_default();
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let (Some(seq), Some(t)) = (r["seq"].as_i64(), r["time_ms"].as_i64()) else {
                bail!("unexpected audit record from the server (no seq or time_ms)");
            };
            if t >= until {
                break 'pages;
            }
            writeln!(file, "{r}").context("cannot write the export file")?;
            last_seq = Some(seq);
            count += 1;
        }
        after = last_seq;
        eprint!("\rexported {count} records");
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    eprintln!();
    file.sync_all().context("cannot sync the export file")?;
    let Some(through) = last_seq else {
        println!("no audit record is older than {before}; nothing to prune");
        return Ok(0);
    };
    if !yes {
        eprint!(
            "{count} records (through record {through}) are in {}; delete them from the store? [y/N] ",
            export.display()
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("not pruned; the export file is kept");
        }
    }
    let r = client
        .api(Method::POST, "/audit/prune", Some(&json!({ "through_seq": through })))
        .await?;
    println!(
        "pruned {} records through record {} under a signed checkpoint; exported to {}",
        r["deleted"],
        r["through_seq"],
        export.display()
    );
    Ok(0)
}
