//! `coffer pull`, `coffer push FILE`, `coffer diff FILE`: an environment to
//! and from a local file (`.env` by default, or JSON or YAML). The server
//! parses, plans and compares (`…/sync/push`, `…/sync/pull`, `…/sync/diff`,
//! in `service::sync`); this side reads and writes files and talks to the
//! person.
//!
//! - `pull` prints to stdout unless `-o FILE`; a file is created 0600 (never
//!   over an existing one's looser mode: the file is replaced by a fresh one)
//!   and coffer warns that it holds plaintext.
//! - `push` sends the whole file for a plan: a bad line fails with its
//!   number and nothing is written. The plan is shown key by key: created,
//!   updated, unchanged, errors. Any error refuses the whole push; a
//!   breached `password` value is a warning, or, when the organization
//!   refuses breached passwords, that key alone is refused. On a
//!   terminal it asks before writing; `--yes` is for scripts; `--dry-run`
//!   stops after the plan. Applying writes exactly the plan shown, in one
//!   transaction: if a key changed meanwhile, nothing is written.
//! - `diff` names keys only (added, removed, changed); no value is ever
//!   printed.

use std::collections::BTreeMap;
use std::io::{BufRead, ErrorKind, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::client::Client;
use super::context::Target;
use super::credentials::create_private;
use super::secrets::env_base;

/// File formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// `KEY="value"` lines (the `.env` dialect push reads).
    Env,
    /// One JSON object.
    Json,
    /// One YAML mapping (double-quoted scalars).
    Yaml,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::Env => "env",
            Format::Json => "json",
            Format::Yaml => "yaml",
        }
    }
}

/// `coffer pull`
#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "env")]
    format: Format,
    /// Write to FILE (created 0600) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `coffer push FILE`
#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// The file (`.env` unless --format says otherwise).
    file: PathBuf,
    /// The file's format.
    #[arg(long, value_enum, default_value = "env")]
    format: Format,
    /// Show the plan, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation (scripts).
    #[arg(long)]
    yes: bool,
}

/// A file's text (UTF-8), wiped when dropped.
fn read_file(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            bail!("{} is not UTF-8", path.display())
        }
    }
}

/// `coffer pull`
pub(crate) async fn pull(client: &Client, target: &Target, args: PullArgs) -> anyhow::Result<u8> {
    let data = client
        .api(
            Method::GET,
            &format!("{}/sync/pull?format={}", env_base(target), args.format.as_str()),
            None,
        )
        .await?;
    let pulled: Pulled = serde_json::from_value(data).context("the server's pull answer is not a file")?;
    let text = pulled.content;
    match args.output {
        None => {
            std::io::stdout()
                .write_all(text.as_bytes())
                .context("cannot write to stdout")?;
        }
        Some(path) => {
            write_private(&path, text.as_bytes())?;
            eprintln!(
                "warning: {} holds {} secret value(s) in plaintext (mode 0600); delete it when done, and never commit it",
                path.display(),
                pulled.count
            );
        }
    }
    Ok(0)
}

/// Write `bytes` to a fresh 0600 file at `path` (replacing an existing one,
/// whose mode is not kept).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().context("-o needs a file name")?;
    let tmp = dir.join(format!(".{}.coffer-tmp", name.to_string_lossy()));
    let mut out = match create_private(&tmp) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
            create_private(&tmp)
        }
        other => other,
    }
    .with_context(|| format!("cannot create {}", tmp.display()))?;
    if let Err(e) = out.write_all(bytes).and_then(|()| out.sync_all()) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    drop(out);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The server's pull answer. No Debug: it holds the values.
#[derive(Deserialize)]
struct Pulled {
    count: usize,
    content: Zeroizing<String>,
}

/// One key of the server's push plan (never a value).
#[derive(Debug, Deserialize)]
struct PlanItem {
    key: String,
    action: String,
    version: i64,
    #[serde(default)]
    line: Option<usize>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warning: Option<String>,
}

/// The server's push plan.
#[derive(Debug, Deserialize)]
struct Plan {
    keys: Vec<PlanItem>,
    created: usize,
    updated: usize,
    unchanged: usize,
    errors: usize,
    #[serde(default)]
    refused: usize,
}

/// `coffer push FILE`
pub(crate) async fn push(client: &Client, target: &Target, args: PushArgs) -> anyhow::Result<u8> {
    let content = read_file(&args.file)?;
    let url = format!("{}/sync/push", env_base(target));
    let body = |apply: bool, base: Option<BTreeMap<&str, i64>>| json!({ "content": content.as_str(), "format": args.format.as_str(), "apply": apply, "base": base });
    let data = client
        .api(Method::POST, &url, Some(&body(false, None)))
        .await
        .with_context(|| format!("{}: nothing was written", args.file.display()))?;
    let plan: Plan = serde_json::from_value(data).context("the server's answer is not a push plan")?;
    let where_ = format!("{}/{}/{}", target.org, target.project, target.env);
    println!("plan for {where_} from {}:", args.file.display());
    for k in &plan.keys {
        let key = &k.key;
        match (k.action.as_str(), &k.error) {
            ("create", _) => println!("  + {key}  (create)"),
            ("update", _) => println!("  ~ {key}  (update)"),
            ("unchanged", _) => println!("  = {key}  (unchanged)"),
            ("refused", e) => println!(
                "  x {key}  (refused, not written: {})",
                e.as_deref().unwrap_or("a breached password")
            ),
            (_, e) => {
                let e = e.as_deref().unwrap_or("cannot be written");
                match k.line {
                    Some(line) => println!("  ! {key}  (line {line}: {e})"),
                    None => println!("  ! {key}  ({e})"),
                }
            }
        }
        if let Some(w) = &k.warning {
            eprintln!("warning: {w}");
        }
    }
    let (created, updated) = (plan.created, plan.updated);
    println!(
        "{created} created, {updated} updated, {} unchanged, {} errors{}",
        plan.unchanged,
        plan.errors,
        if plan.refused > 0 {
            format!(", {} refused (breached passwords, not written)", plan.refused)
        } else {
            String::new()
        }
    );
    if plan.errors > 0 {
        bail!("{} error(s) in the plan: nothing was written", plan.errors);
    }
    if args.dry_run || created + updated == 0 {
        return Ok(u8::from(plan.refused > 0 && !args.dry_run));
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!("not on a terminal: pass --yes to apply the plan (or --dry-run to only show it)");
        }
        eprint!("apply {} change(s) to {where_}? [y/N] ", created + updated);
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("cannot read the answer")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing written");
            return Ok(1);
        }
    }
    // Exactly the plan shown: the server refuses (409) if a key moved since.
    let base = plan.keys.iter().map(|k| (k.key.as_str(), k.version)).collect();
    client
        .api(Method::POST, &url, Some(&body(true, Some(base))))
        .await
        .context("applying the plan")?;
    println!("applied: {created} created, {updated} updated");
    if plan.refused > 0 {
        eprintln!(
            "{} key(s) refused by the organization's breach policy were not written",
            plan.refused
        );
        return Ok(1);
    }
    Ok(0)
}

/// One key of the server's file comparison.
#[derive(Debug, Deserialize)]
struct DiffItem {
    key: String,
    status: String,
}

/// `coffer diff FILE`: 0 when the file matches, 1 when it differs.
pub(crate) async fn diff(client: &Client, target: &Target, path: &Path, format: Format) -> anyhow::Result<u8> {
    let content = read_file(path)?;
    let mut data = client
        .api(
            Method::POST,
            &format!("{}/sync/diff", env_base(target)),
            Some(&json!({ "content": content.as_str(), "format": format.as_str() })),
        )
        .await
        .with_context(|| path.display().to_string())?;
    let keys: Vec<DiffItem> =
        serde_json::from_value(data["keys"].take()).context("the server's answer is not a comparison")?;
    let mut differs = false;
    for k in &keys {
        let key = &k.key;
        match k.status.as_str() {
            "same" => continue,
            "only_in_file" => println!("+ {key}  (in the file, not in the environment)"),
            "only_in_coffer" => println!("- {key}  (in the environment, not in the file)"),
            _ => println!("~ {key}  (value differs)"),
        }
        differs = true;
    }
    if !differs {
        println!("no differences");
    }
    Ok(u8::from(differs))
}
