//! `coffer pull`, `coffer push FILE`, `coffer diff FILE`: an environment to
//! and from a local `.env` file (dialect in `dotenv`).
//!
//! - `pull` prints to stdout unless `-o FILE`; a file is created 0600 (never
//!   over an existing one's looser mode: the file is replaced by a fresh one)
//!   and coffer warns that it holds plaintext.
//! - `push` parses the whole file first: a bad line fails with its number
//!   and nothing is written. It then compares with the environment's values
//!   (one inject call, export permission) and shows the plan key by key:
//!   created, updated, unchanged, errors. Any error refuses the whole push.
//!   On a terminal it asks before writing; `--yes` is for scripts;
//!   `--dry-run` stops after the plan.
//! - `diff` names keys only (added, removed, changed); it compares values
//!   one by one through reveal, so a key the user may not reveal is listed
//!   as "cannot compare", and no value is ever printed.

use std::collections::BTreeMap;
use std::io::{BufRead, ErrorKind, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use reqwest::{Method, StatusCode};
use serde_json::json;
use zeroize::Zeroizing;

use super::client::Client;
use super::context::Target;
use super::credentials::create_private;
use super::dotenv;
use super::secrets::env_base;
use crate::env_policy::is_dangerous;

/// Output formats of `pull`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// `KEY="value"` lines (the `.env` dialect push reads).
    Env,
    /// One JSON object.
    Json,
    /// One YAML mapping (double-quoted scalars).
    Yaml,
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
    /// The `.env` file.
    file: PathBuf,
    /// Show the plan, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation (scripts).
    #[arg(long)]
    yes: bool,
}

/// The values of the environment (one inject call).
async fn current(client: &Client, target: &Target) -> anyhow::Result<BTreeMap<String, Zeroizing<String>>> {
    let data = client
        .api(Method::POST, &format!("{}/inject", env_base(target)), None)
        .await?;
    let values: BTreeMap<String, String> =
        serde_json::from_value(data).context("the server's inject answer is not a map of strings")?;
    Ok(values.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect())
}

/// Read and parse a `.env` file; errors carry the path and line number.
fn read_env_file(path: &Path) -> anyhow::Result<BTreeMap<String, (String, usize)>> {
    let bytes = Zeroizing::new(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?);
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
    dotenv::parse(text).with_context(|| format!("{}: nothing was written", path.display()))
}

/// `coffer pull`
pub(crate) async fn pull(client: &Client, target: &Target, args: PullArgs) -> anyhow::Result<u8> {
    let values = current(client, target).await?;
    let plain: BTreeMap<String, String> = values.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
    let text = Zeroizing::new(match args.format {
        Format::Env => dotenv::render(&plain),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&plain)?;
            s.push('\n');
            s
        }
        // A JSON string is a valid YAML double-quoted scalar.
        Format::Yaml if plain.is_empty() => "{}\n".to_owned(),
        Format::Yaml => plain
            .iter()
            .map(|(k, v)| {
                Ok(format!(
                    "{}: {}\n",
                    serde_json::to_string(k)?,
                    serde_json::to_string(v)?
                ))
            })
            .collect::<serde_json::Result<String>>()?,
    });
    drop(plain);
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
                values.len()
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

/// One key of a push plan.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Create,
    Update,
    Unchanged,
    Error(String),
}

/// Compare the file's values with the environment's.
fn plan(
    file: &BTreeMap<String, (String, usize)>,
    current: &BTreeMap<String, Zeroizing<String>>,
) -> Vec<(String, usize, Step)> {
    file.iter()
        .map(|(key, (value, line))| {
            let step = if is_dangerous(key) {
                Step::Error("refused: it changes how programs load or start, and coffer never injects it".into())
            } else {
                match current.get(key) {
                    None => Step::Create,
                    Some(v) if v.as_str() == value => Step::Unchanged,
                    Some(_) => Step::Update,
                }
            };
            (key.clone(), *line, step)
        })
        .collect()
}

/// `coffer push FILE`
pub(crate) async fn push(client: &Client, target: &Target, args: PushArgs) -> anyhow::Result<u8> {
    let file = read_env_file(&args.file)?;
    let current = current(client, target).await?;
    let steps = plan(&file, &current);
    let count = |f: fn(&Step) -> bool| steps.iter().filter(|(_, _, s)| f(s)).count();
    let (created, updated, unchanged, errors) = (
        count(|s| *s == Step::Create),
        count(|s| *s == Step::Update),
        count(|s| *s == Step::Unchanged),
        count(|s| matches!(s, Step::Error(_))),
    );
    let where_ = format!("{}/{}/{}", target.org, target.project, target.env);
    println!("plan for {where_} from {}:", args.file.display());
    for (key, line, step) in &steps {
        match step {
            Step::Create => println!("  + {key}  (create)"),
            Step::Update => println!("  ~ {key}  (update)"),
            Step::Unchanged => println!("  = {key}  (unchanged)"),
            Step::Error(e) => println!("  ! {key}  (line {line}: {e})"),
        }
    }
    println!("{created} created, {updated} updated, {unchanged} unchanged, {errors} errors");
    if errors > 0 {
        bail!("{errors} error(s) in the plan: nothing was written");
    }
    if args.dry_run || created + updated == 0 {
        return Ok(0);
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
    let base = env_base(target);
    for (key, _, step) in &steps {
        if matches!(step, Step::Create | Step::Update) {
            let value = &file[key].0;
            client
                .api(
                    Method::POST,
                    &format!("{base}/secrets/{key}"),
                    Some(&json!({ "value": value })),
                )
                .await
                .with_context(|| format!("writing {key} (keys before it in the plan were written)"))?;
        }
    }
    println!("applied: {created} created, {updated} updated");
    Ok(0)
}

/// `coffer diff FILE`: 0 when the file matches, 1 when it differs.
pub(crate) async fn diff(client: &Client, target: &Target, path: &Path) -> anyhow::Result<u8> {
    let file = read_env_file(path)?;
    let base = env_base(target);
    let list = client.api(Method::GET, &format!("{base}/secrets"), None).await?;
    let remote: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["key"].as_str().map(str::to_owned))
        .collect();
    let mut differs = false;
    for key in file.keys().filter(|k| !remote.contains(k)) {
        println!("+ {key}  (in the file, not in the environment)");
        differs = true;
    }
    for key in remote.iter().filter(|k| !file.contains_key(*k)) {
        println!("- {key}  (in the environment, not in the file)");
        differs = true;
    }
    for key in remote.iter().filter(|k| file.contains_key(*k)) {
        let (status, body) = client
            .send(Method::GET, &format!("/api/v1{base}/secrets/{key}?reveal=true"), None)
            .await?;
        if status == StatusCode::FORBIDDEN {
            println!("? {key}  (cannot compare: no reveal permission)");
            differs = true;
            continue;
        }
        if !status.is_success() {
            bail!("{key}: {} ({})", super::client::error_message(&body), status.as_u16());
        }
        let value = Zeroizing::new(body["data"]["value"].as_str().unwrap_or_default().to_owned());
        if value.as_str() != file[key].0 {
            println!("~ {key}  (value differs)");
            differs = true;
        }
    }
    if !differs {
        println!("no differences");
    }
    Ok(u8::from(differs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_compares_values() {
        let file: BTreeMap<String, (String, usize)> = [("A", "1"), ("B", "2"), ("C", "3"), ("LD_PRELOAD", "x")]
            .into_iter()
            .enumerate()
            .map(|(i, (k, v))| (k.to_owned(), (v.to_owned(), i + 1)))
            .collect();
        let current: BTreeMap<String, Zeroizing<String>> = [("A", "1"), ("B", "old")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Zeroizing::new(v.to_owned())))
            .collect();
        let steps: Vec<_> = plan(&file, &current).into_iter().map(|(k, _, s)| (k, s)).collect();
        assert_eq!(steps[0], ("A".into(), Step::Unchanged));
        assert_eq!(steps[1], ("B".into(), Step::Update));
        assert_eq!(steps[2], ("C".into(), Step::Create));
        assert!(matches!(steps[3].1, Step::Error(_)));
    }
}
