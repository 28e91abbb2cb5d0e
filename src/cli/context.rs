//! Context defaults: which server, org, project and environment a command
//! acts on when the command line does not say.
//!
//! Precedence, per value: flag > environment variable (`COFFER_ORG`,
//! `COFFER_PROJECT`, `COFFER_ENV`, `COFFER_ADDR`) > the project-local
//! `.coffer.toml` (found by walking up from the working directory) > the
//! current named context > built-in defaults.
//!
//! - Named contexts live in `$XDG_CONFIG_HOME/coffer/config.toml` (default
//!   `~/.config/coffer/config.toml`), the directory of the stored logins:
//!   the directory is created 0700 and the file 0600 at creation (a fresh
//!   temp file renamed over the old one); a file that group or others may
//!   access, or a directory they may enter, is refused with the `chmod` that
//!   fixes it, before a byte is parsed. The file holds no secret, but it says
//!   which server receives the token, so it is guarded like one.
//! - `.coffer.toml` is meant to be committed: it may hold `org`, `project`
//!   and `env` only; any other key (a token, an address) is refused.
//! - Everything here works offline: no command of this module talks to a
//!   server.

use std::collections::BTreeMap;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use super::credentials::{Store, create_private};
use super::secrets::EnvArgs;

/// File name of the named contexts inside `$XDG_CONFIG_HOME/coffer/`.
const CONFIG_NAME: &str = "config.toml";
/// The project-local defaults file.
pub(crate) const PROJECT_FILE: &str = ".coffer.toml";
/// Built-in defaults.
const DEFAULT_ORG: &str = "default";
const DEFAULT_PROJECT: &str = "default";
const DEFAULT_ENV: &str = "dev";
/// Server address when nothing else says.
pub(crate) const DEFAULT_ADDRESS: &str = "http://127.0.0.1:8200";

/// `coffer context …`
#[derive(Debug, Subcommand)]
pub(crate) enum ContextCmd {
    /// Create or replace a named context and make it the current one.
    Set {
        /// Context name.
        #[arg(long, default_value = "default")]
        name: String,
        /// Organization slug.
        #[arg(long)]
        org: String,
        /// Project slug.
        #[arg(long)]
        project: String,
        /// Environment slug.
        #[arg(long)]
        env: String,
        /// Server address for this context.
        #[arg(long)]
        address: Option<String>,
    },
    /// Show the effective org, project, environment and address, and where
    /// each comes from.
    Show,
    /// Make a named context the current one.
    Use {
        /// Context name.
        name: String,
    },
    /// List the named contexts (`*` marks the current one).
    List,
}

/// `config.toml`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// Name of the current context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current: Option<String>,
    #[serde(default)]
    contexts: BTreeMap<String, NamedContext>,
}

/// One named context.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedContext {
    org: Option<String>,
    project: Option<String>,
    env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
}

/// `.coffer.toml`: no secret, no address.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectFile {
    org: Option<String>,
    project: Option<String>,
    env: Option<String>,
}

/// Where an effective value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A command-line flag.
    Flag,
    /// An environment variable, by name.
    Env(&'static str),
    /// A `.coffer.toml`, by path.
    ProjectFile(PathBuf),
    /// A named context.
    Context(String),
    /// Built in.
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(name) => write!(f, "${name}"),
            Source::ProjectFile(p) => write!(f, "{}", p.display()),
            Source::Context(n) => write!(f, "context {n}"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// The environment a command acts on, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) org: String,
    pub(crate) project: String,
    pub(crate) env: String,
    sources: [Source; 3],
}

/// Resolve org, project and environment by the precedence above.
pub(crate) fn resolve(flags: &EnvArgs) -> anyhow::Result<Target> {
    let given = |flag: &Option<String>, var: &str| flag.is_some() || std::env::var(var).is_ok_and(|v| !v.is_empty());
    // Files are read only when a value is still open: a full command line
    // does not depend on them.
    let (project, context) = if given(&flags.org, "COFFER_ORG")
        && given(&flags.project, "COFFER_PROJECT")
        && given(&flags.env, "COFFER_ENV")
    {
        (None, None)
    } else {
        let cwd = std::env::current_dir().context("cannot read the working directory")?;
        (find_project_file(&cwd)?, current_context()?)
    };
    let pick = |flag: &Option<String>,
                var: &'static str,
                from_file: fn(&ProjectFile) -> &Option<String>,
                from_ctx: fn(&NamedContext) -> &Option<String>,
                default: &str|
     -> (String, Source) {
        if let Some(v) = flag {
            return (v.clone(), Source::Flag);
        }
        if let Some(v) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
            return (v, Source::Env(var));
        }
        if let Some((path, pf)) = &project
            && let Some(v) = from_file(pf)
        {
            return (v.clone(), Source::ProjectFile(path.clone()));
        }
        if let Some((name, ctx)) = &context
            && let Some(v) = from_ctx(ctx)
        {
            return (v.clone(), Source::Context(name.clone()));
        }
        (default.to_owned(), Source::Default)
    };
    let (org, s_org) = pick(&flags.org, "COFFER_ORG", |p| &p.org, |c| &c.org, DEFAULT_ORG);
    let (project, s_project) = pick(
        &flags.project,
        "COFFER_PROJECT",
        |p| &p.project,
        |c| &c.project,
        DEFAULT_PROJECT,
    );
    let (env, s_env) = pick(&flags.env, "COFFER_ENV", |p| &p.env, |c| &c.env, DEFAULT_ENV);
    Ok(Target {
        org,
        project,
        env,
        sources: [s_org, s_project, s_env],
    })
}

/// The server address: flag or `COFFER_ADDR` (given), else the current
/// context's, else the default.
pub(crate) fn address(given: Option<&str>) -> anyhow::Result<(String, Source)> {
    if let Some(a) = given {
        let source = if std::env::var("COFFER_ADDR").is_ok_and(|v| v == a) {
            Source::Env("COFFER_ADDR")
        } else {
            Source::Flag
        };
        return Ok((a.to_owned(), source));
    }
    if let Some((name, ctx)) = current_context()?
        && let Some(a) = ctx.address
    {
        return Ok((a, Source::Context(name)));
    }
    Ok((DEFAULT_ADDRESS.to_owned(), Source::Default))
}

/// Run a context command (offline).
pub(crate) fn run(cmd: ContextCmd, address_flag: Option<&str>) -> anyhow::Result<u8> {
    match cmd {
        ContextCmd::Set {
            name,
            org,
            project,
            env,
            address,
        } => {
            check_name(&name)?;
            let dir = config_dir()?;
            let mut file = load(&dir)?;
            file.contexts.insert(
                name.clone(),
                NamedContext {
                    org: Some(org),
                    project: Some(project),
                    env: Some(env),
                    address,
                },
            );
            file.current = Some(name.clone());
            save(&dir, &file)?;
            println!(
                "context {name} saved and now current ({})",
                dir.join(CONFIG_NAME).display()
            );
        }
        ContextCmd::Use { name } => {
            let dir = config_dir()?;
            let mut file = load(&dir)?;
            if !file.contexts.contains_key(&name) {
                bail!("no context named {name:?}; create it with `coffer context set --name {name} …`");
            }
            file.current = Some(name.clone());
            save(&dir, &file)?;
            println!("context {name} is now current");
        }
        ContextCmd::List => {
            let file = load(&config_dir()?)?;
            for (name, ctx) in &file.contexts {
                let mark = if file.current.as_deref() == Some(name) {
                    '*'
                } else {
                    ' '
                };
                println!(
                    "{mark} {name:<16} {}/{}/{}  {}",
                    ctx.org.as_deref().unwrap_or("-"),
                    ctx.project.as_deref().unwrap_or("-"),
                    ctx.env.as_deref().unwrap_or("-"),
                    ctx.address.as_deref().unwrap_or("")
                );
            }
        }
        ContextCmd::Show => {
            let t = resolve(&EnvArgs::default())?;
            let (address, s_address) = address(address_flag)?;
            match current_context()? {
                Some((name, _)) => println!("{:<9} {name}", "context"),
                None => println!("{:<9} (none)", "context"),
            }
            println!("{:<9} {:<24} ({})", "org", t.org, t.sources[0]);
            println!("{:<9} {:<24} ({})", "project", t.project, t.sources[1]);
            println!("{:<9} {:<24} ({})", "env", t.env, t.sources[2]);
            println!("{:<9} {:<24} ({})", "address", address, s_address);
        }
    }
    Ok(0)
}

/// Context names: short, and safe to print.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        bail!("context name {name:?}: use letters, digits, '-', '_' or '.' (at most 64)");
    }
    Ok(())
}

/// `$XDG_CONFIG_HOME/coffer`, the directory of the stored logins.
fn config_dir() -> anyhow::Result<PathBuf> {
    Ok(Store::locate()?.dir().to_path_buf())
}

/// The current named context, if any (none without HOME or config file).
fn current_context() -> anyhow::Result<Option<(String, NamedContext)>> {
    let Ok(dir) = config_dir() else { return Ok(None) };
    let mut file = load(&dir)?;
    let Some(name) = file.current.take() else {
        return Ok(None);
    };
    Ok(file.contexts.remove(&name).map(|c| (name, c)))
}

/// The nearest `.coffer.toml` from `start` upwards, parsed.
fn find_project_file(start: &Path) -> anyhow::Result<Option<(PathBuf, ProjectFile)>> {
    for dir in start.ancestors() {
        let path = dir.join(PROJECT_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let pf = toml::from_str(&text).with_context(|| {
                    format!(
                        "{} is not valid: it may hold org, project and env only (never a token)",
                        path.display()
                    )
                })?;
                return Ok(Some((path, pf)));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    Ok(None)
}

/// Read `config.toml`; missing is empty. Refuses loose modes and symlinks.
fn load(dir: &Path) -> anyhow::Result<ConfigFile> {
    let path = dir.join(CONFIG_NAME);
    let mut file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            bail!("{} is a symbolic link; coffer refuses to use it", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if mode & 0o077 != 0 {
        bail!(
            "{path} has mode {mode:04o}: other users may read or change which server gets your token, so coffer \
             refuses to use it. Fix it with `chmod 600 {path}`",
            path = path.display()
        );
    }
    check_dir(dir)?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid coffer config", path.display()))
}

/// Refuse a config directory that group or others may enter.
fn check_dir(dir: &Path) -> anyhow::Result<()> {
    if let Ok(meta) = std::fs::metadata(dir)
        && meta.permissions().mode() & 0o077 != 0
    {
        bail!(
            "{dir} has mode {mode:04o}: coffer keeps its config and logins there for you alone. \
             Fix it with `chmod 700 {dir}`",
            dir = dir.display(),
            mode = meta.permissions().mode() & 0o7777
        );
    }
    Ok(())
}

/// Replace `config.toml` atomically with a fresh 0600 file.
fn save(dir: &Path, file: &ConfigFile) -> anyhow::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    check_dir(dir)?;
    let text = toml::to_string(file).context("cannot encode the config")?;
    let tmp = dir.join(format!("{CONFIG_NAME}.tmp"));
    let mut out = match create_private(&tmp) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
            create_private(&tmp)
        }
        other => other,
    }
    .with_context(|| format!("cannot create {}", tmp.display()))?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(out);
    let path = dir.join(CONFIG_NAME);
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))
}

/// `coffer status`: in one screen, the environment commands act on (and
/// where each part comes from), the server and its seal state, and who the
/// CLI acts as. A server that cannot be reached, or no login, is shown as
/// such, not an error: this is the first command to run when something is
/// off.
pub(crate) async fn status(server: &super::client::ServerArgs, flags: &EnvArgs, json: bool) -> anyhow::Result<u8> {
    use reqwest::Method;
    use serde_json::{Value, json};
    let t = resolve(flags)?;
    let (address, s_address) = address(server.address.as_deref())?;
    let context = current_context()?.map(|(name, _)| name);
    let client = super::client::Client::new(server)?;
    let seal = match client.send(Method::GET, "/v1/sys/seal-status", None).await {
        Ok((st, v)) if st.is_success() => v,
        Ok((st, v)) => json!({ "error": format!("{st}: {}", super::client::error_message(&v)) }),
        Err(e) => json!({ "error": format!("{e:#}") }),
    };
    let identity = if client.require_token().is_err() {
        json!({ "error": "not logged in (coffer login, or COFFER_TOKEN)" })
    } else {
        let sealed = seal["sealed"].as_bool() == Some(true);
        match client.api_raw(Method::GET, "/auth/whoami", None).await {
            Ok((st, _, v)) if st.is_success() => v["data"].clone(),
            Ok((st, _, v)) if sealed => {
                json!({ "error": format!("unknown while sealed ({st}: {})", super::client::error_message(&v)) })
            }
            Ok((st, _, v)) => json!({ "error": format!("{st}: {}", super::client::error_message(&v)) }),
            Err(e) => json!({ "error": format!("{e:#}") }),
        }
    };
    if json {
        let out = json!({
            "context": context,
            "org": { "value": t.org, "from": t.sources[0].to_string() },
            "project": { "value": t.project, "from": t.sources[1].to_string() },
            "env": { "value": t.env, "from": t.sources[2].to_string() },
            "server": { "address": address, "from": s_address.to_string(), "seal": seal },
            "identity": identity,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    println!("{:<10} {}", "context", context.as_deref().unwrap_or("(none)"));
    println!("{:<10} {}/{}/{}", "target", t.org, t.project, t.env);
    println!("{:<10} {:<24} ({})", "  org", t.org, t.sources[0]);
    println!("{:<10} {:<24} ({})", "  project", t.project, t.sources[1]);
    println!("{:<10} {:<24} ({})", "  env", t.env, t.sources[2]);
    println!("{:<10} {:<24} ({})", "server", address, s_address);
    let state = if let Some(e) = seal.get("error") {
        format!("unreachable: {}", text(e))
    } else if seal["initialized"].as_bool() == Some(false) {
        "not initialized (coffer operator init)".to_owned()
    } else if seal["sealed"].as_bool() == Some(true) {
        format!(
            "sealed ({}/{} unseal shares given; coffer operator unseal)",
            text(&seal["progress"]),
            text(&seal["t"])
        )
    } else {
        "unsealed".to_owned()
    };
    println!("{:<10} {state}", "seal");
    if let Some(e) = identity.get("error") {
        println!("{:<10} {}", "identity", text(e));
    } else {
        let org = match &identity["org"] {
            Value::Null => String::new(),
            o => format!(" in {}", text(o)),
        };
        println!(
            "{:<10} {} {}{org} (token {}, expires {})",
            "identity",
            text(&identity["kind"]),
            text(&identity["name"]),
            text(&identity["accessor"]),
            match &identity["expires_at"] {
                Value::Null => "never".to_owned(),
                v => text(v),
            }
        );
    }
    Ok(0)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_with_private_modes_and_refuses_loose_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("coffer");
        let mut file = ConfigFile::default();
        file.contexts.insert(
            "prod".into(),
            NamedContext {
                org: Some("acme".into()),
                ..NamedContext::default()
            },
        );
        file.current = Some("prod".into());
        save(&dir, &file).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(CONFIG_NAME)), 0o600);
        let back = load(&dir).unwrap();
        assert_eq!(back.current.as_deref(), Some("prod"));
        assert_eq!(back.contexts["prod"].org.as_deref(), Some("acme"));

        std::fs::set_permissions(dir.join(CONFIG_NAME), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:#}", load(&dir).unwrap_err());
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(dir.join(CONFIG_NAME), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = format!("{:#}", load(&dir).unwrap_err());
        assert!(err.contains("chmod 700"), "{err}");
    }

    #[test]
    fn project_file_is_found_upwards_and_holds_no_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(tmp.path().join(PROJECT_FILE), "org = \"acme\"\nenv = \"staging\"\n").unwrap();
        let (path, pf) = find_project_file(&deep).unwrap().unwrap();
        assert_eq!(path, tmp.path().join(PROJECT_FILE));
        assert_eq!(pf.env.as_deref(), Some("staging"));
        std::fs::write(tmp.path().join(PROJECT_FILE), "token = \"cfr_x\"\n").unwrap();
        assert!(find_project_file(&deep).is_err());
    }
}
