//! `coffer run -- CMD ARGS…`: start a program with the secrets of one
//! environment in its environment, and nowhere else.
//!
//! Guarantees:
//! - one `POST …/inject` call, then the program is started directly with
//!   `execve` semantics (`std::process::Command`), never through a shell, so
//!   no argument is re-parsed;
//! - values live in this process's memory and the child's environment only:
//!   nothing is written to disk, nothing is printed;
//! - variables that change how programs load or start
//!   ([`crate::env_policy`]) are never set, each skipped with a warning;
//! - a value holding a NUL byte (which no environment variable can carry)
//!   is skipped with a warning naming it, so the program still starts;
//! - the exit status is the child's: its exit code, or 128+N when signal N
//!   killed it, as a POSIX shell reports it; SIGINT, SIGTERM, SIGHUP and
//!   SIGQUIT sent to coffer are forwarded to the child.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use anyhow::{Context, bail};
use clap::Args;
use reqwest::Method;
use tokio::signal::unix::{SignalKind, signal};
use zeroize::Zeroizing;

use super::client::Client;
use super::context::Target;
use super::secrets::env_base;
use crate::env_policy::is_dangerous;

/// Options of `coffer run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Inject only these keys (comma-separated); a missing one is an error.
    #[arg(long, value_delimiter = ',', value_name = "KEY,…")]
    only: Vec<String>,
    /// Prepend P to every injected variable name (KEY becomes PKEY).
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
    /// Keep variables already set in coffer's environment instead of
    /// overriding them with the secret.
    #[arg(long)]
    no_override: bool,
    /// Start $SHELL (default /bin/sh) interactively with the secrets.
    #[arg(long, conflicts_with = "command")]
    shell: bool,
    /// Keep an encrypted local snapshot of this inject, and use it (with a
    /// warning) when the server cannot be reached.
    #[arg(long)]
    fallback: bool,
    /// Oldest snapshot --fallback may use (30m, 24h, 7d…).
    #[arg(long, value_name = "AGE", default_value = "24h", value_parser = super::fallback::parse_age, requires = "fallback")]
    max_age: i64,
    /// Also set DATABASE_URL from a fresh lease of this dynamic database
    /// role of the organization; the lease is revoked when the program exits.
    #[arg(long, value_name = "ROLE")]
    db_role: Option<String>,
    /// The program and its arguments, after `--` (run without a shell).
    #[arg(last = true, required_unless_present = "shell", value_name = "CMD ARGS")]
    command: Vec<OsString>,
}

/// A variable to set in the child: name and value.
type Var = (String, Zeroizing<String>);

/// Fetch the environment, start the program, wait for it; returns its exit
/// status the way a shell reports it.
pub(crate) async fn run(client: &Client, env: &Target, args: RunArgs) -> anyhow::Result<u8> {
    let (program, rest) = if args.shell {
        let shell = std::env::var_os("SHELL")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| OsString::from("/bin/sh"));
        (shell, vec![OsString::from("-i")])
    } else {
        let mut it = args.command.clone().into_iter();
        let program = it.next().context("no command given: `coffer run -- CMD ARGS…`")?;
        (program, it.collect())
    };
    if let Some(p) = &args.prefix {
        check_prefix(p)?;
    }

    client.require_token()?;
    let fetched = client
        .call(Method::POST, &format!("/api/v1{}/inject", env_base(env)), None)
        .await;
    // Names the server says this environment allows although the
    // program-loading policy refuses them (an admin's audited decision).
    let mut allowed = Vec::new();
    let values = match fetched {
        Ok(mut answer) => {
            let data = answer.get_mut("data").map(serde_json::Value::take).unwrap_or_default();
            let values: BTreeMap<String, Zeroizing<String>> =
                serde_json::from_value(data).context("the server's inject answer is not a map of strings")?;
            if let Some(names) = answer.get("allowed_variables").and_then(serde_json::Value::as_array) {
                allowed = names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect();
            }
            if args.fallback {
                super::fallback::save(client.base(), env, &values)?;
            }
            values
        }
        // Only an unreachable server; a refusal (401/403…) is never bypassed.
        // A snapshot carries no allowances: refused names stay refused.
        Err(e) if args.fallback && super::fallback::is_unreachable(&e) => {
            super::fallback::load(client.base(), env, args.max_age).with_context(|| format!("{e:#}"))?
        }
        Err(e) => return Err(e),
    };
    let selected = select(values, &args, &allowed, |name| std::env::var_os(name).is_some())?;
    for name in &selected.refused {
        eprintln!("warning: not injecting {name}: it changes how programs load or start");
    }
    for name in &selected.nul {
        eprintln!(
            "warning: not injecting {name}: its value contains a NUL byte, which no environment variable can hold"
        );
    }
    let mut vars = selected.vars;
    // A fresh database lease (docs/database-credentials.md), revoked below.
    let lease = match &args.db_role {
        Some(role) => Some(db_lease(client, env, role).await?),
        None => None,
    };
    if let Some((_, url)) = &lease {
        vars.retain(|(name, _)| name != "DATABASE_URL");
        vars.push(("DATABASE_URL".to_owned(), url.clone()));
    }

    // Handle the forwarded signals from before the child exists, so one
    // arriving in between is delivered to it rather than killing coffer.
    let handle = |kind: SignalKind| signal(kind).context("cannot handle signals");
    let (mut int, mut term, mut hup, mut quit) = (
        handle(SignalKind::interrupt())?,
        handle(SignalKind::terminate())?,
        handle(SignalKind::hangup())?,
        handle(SignalKind::quit())?,
    );

    let mut cmd = std::process::Command::new(&program);
    cmd.args(&rest);
    for (name, value) in &vars {
        cmd.env(name, value.as_str());
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        // The codes a shell uses for a missing or non-executable program.
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("coffer run: {}: command not found", program.to_string_lossy());
            revoke_lease(client, env, lease.as_ref()).await;
            return Ok(127);
        }
        Err(e) => {
            eprintln!("coffer run: {}: {e}", program.to_string_lossy());
            revoke_lease(client, env, lease.as_ref()).await;
            return Ok(126);
        }
    };
    // Our copies of the values go now (the child has its own).
    drop(cmd);
    drop(vars);
    let pid = child.id();
    let mut wait = tokio::task::spawn_blocking(move || child.wait());
    let status = loop {
        let raw = tokio::select! {
            // Reaped first: never signal a pid that may have been reused.
            biased;
            done = &mut wait => break done.context("waiting for the child failed")?
                .context("waiting for the child failed")?,
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
            _ = hup.recv() => libc::SIGHUP,
            _ = quit.recv() => libc::SIGQUIT,
        };
        // The child may have exited in between: nothing to deliver then.
        let _ = crate::secure_mem::send_signal(pid, raw);
    };
    revoke_lease(client, env, lease.as_ref()).await;
    Ok(shell_status(status))
}

/// Take a lease of the dynamic database role `role`: (lease id, DATABASE_URL).
async fn db_lease(client: &Client, env: &Target, role: &str) -> anyhow::Result<(String, Zeroizing<String>)> {
    let mut answer = client
        .call(
            Method::POST,
            &format!("/api/v1/orgs/{}/database/creds/{role}", env.org),
            Some(&serde_json::json!({})),
        )
        .await
        .with_context(|| format!("--db-role {role}: no database credentials"))?;
    /// What `coffer run` needs of the answer (the URL wiped when dropped).
    #[derive(serde::Deserialize)]
    struct Lease {
        lease_id: String,
        database_url: Zeroizing<String>,
    }
    let data = answer.get_mut("data").map(serde_json::Value::take).unwrap_or_default();
    let lease: Lease = serde_json::from_value(data)
        .with_context(|| format!("--db-role {role}: the server's answer holds no lease"))?;
    Ok((lease.lease_id, lease.database_url))
}

/// Revoke the lease of `--db-role` (a failure leaves it to expire at its TTL).
async fn revoke_lease(client: &Client, env: &Target, lease: Option<&(String, Zeroizing<String>)>) {
    let Some((lease_id, _)) = lease else {
        return;
    };
    let revoked = client
        .call(
            Method::POST,
            &format!("/api/v1/orgs/{}/database/leases/revoke", env.org),
            Some(&serde_json::json!({ "lease_id": lease_id })),
        )
        .await;
    if let Err(e) = revoked {
        eprintln!("warning: database lease {lease_id} was not revoked ({e:#}); it expires at the end of its TTL");
    }
}

/// The exit status as a shell reports it: the exit code, or 128+N for a
/// child killed by signal N.
fn shell_status(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        // Exit codes are 0..=255 on Unix (the low byte of the status).
        return u8::try_from(code & 0xff).unwrap_or(1);
    }
    match status.signal() {
        Some(sig) => u8::try_from(128 + sig).unwrap_or(255),
        None => 1,
    }
}

/// A prefix must keep the names valid variable names.
fn check_prefix(p: &str) -> anyhow::Result<()> {
    let ok =
        !p.is_empty() && p.bytes().all(|b| b == b'_' || b.is_ascii_alphanumeric()) && !p.as_bytes()[0].is_ascii_digit();
    if !ok {
        bail!("--prefix {p:?}: must match [A-Za-z_][A-Za-z0-9_]*");
    }
    Ok(())
}

/// What [`select`] chose.
#[derive(Default)]
struct Selected {
    /// to set in the child
    vars: Vec<Var>,
    /// names refused by the program-loading policy
    refused: Vec<String>,
    /// names whose value holds a NUL byte (an environment cannot carry it)
    nul: Vec<String>,
}

/// Choose the variables to set: `--only`, then `--prefix`, then the
/// program-loading refusal (on the final name, unless the server said the
/// environment allows exactly that name), then values with a NUL byte, then
/// `--no-override` (`is_set` says whether a name is already in the
/// environment).
fn select(
    values: BTreeMap<String, Zeroizing<String>>,
    args: &RunArgs,
    allowed: &[String],
    is_set: impl Fn(&str) -> bool,
) -> anyhow::Result<Selected> {
    let prefix = args.prefix.as_deref().unwrap_or("");
    let mut values = values;
    if !args.only.is_empty() {
        let mut kept = BTreeMap::new();
        for key in &args.only {
            // A refused name is reported below, not as missing (the server
            // drops it from inject).
            match values.remove(key) {
                Some(v) => {
                    kept.insert(key.clone(), v);
                }
                None if is_dangerous(&format!("{prefix}{key}")) => {
                    kept.insert(key.clone(), Zeroizing::new(String::new()));
                }
                None => bail!("--only {key}: no such secret in this environment"),
            }
        }
        values = kept;
    }
    let mut out = Selected::default();
    for (key, value) in values {
        let name = format!("{prefix}{key}");
        if is_dangerous(&name) && !allowed.contains(&name) {
            out.refused.push(name);
        } else if value.as_bytes().contains(&0) || name.as_bytes().contains(&0) {
            out.nul.push(name.replace('\0', "\\0"));
        } else if !(args.no_override && is_set(&name)) {
            out.vars.push((name, value));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    fn args(only: &[&str], prefix: Option<&str>, no_override: bool) -> RunArgs {
        RunArgs {
            only: only.iter().map(|s| (*s).to_owned()).collect(),
            prefix: prefix.map(str::to_owned),
            no_override,
            shell: false,
            fallback: false,
            max_age: 86_400,
            db_role: None,
            command: vec!["true".into()],
        }
    }

    fn values() -> BTreeMap<String, Zeroizing<String>> {
        [("A", "1"), ("B", "2"), ("LD_PRELOAD", "x.so"), ("PATH", "/evil")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Zeroizing::new(v.to_owned())))
            .collect()
    }

    fn names(vars: &[Var]) -> Vec<&str> {
        vars.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn refuses_loader_variables_and_applies_options() {
        let s = select(values(), &args(&[], None, false), &[], |_| false).unwrap();
        assert_eq!(names(&s.vars), ["A", "B"]);
        assert_eq!(s.refused, ["LD_PRELOAD", "PATH"]);

        let s = select(values(), &args(&["B", "PATH"], None, false), &[], |_| false).unwrap();
        assert_eq!(names(&s.vars), ["B"]);
        assert_eq!(s.refused, ["PATH"]);
        assert!(select(values(), &args(&["C"], None, false), &[], |_| false).is_err());

        let s = select(values(), &args(&[], Some("APP_"), false), &[], |_| false).unwrap();
        assert_eq!(names(&s.vars), ["APP_A", "APP_B", "APP_LD_PRELOAD", "APP_PATH"]);
        // The refusal applies to the final name.
        let s = select(values(), &args(&["A"], Some("LD_"), false), &[], |_| false).unwrap();
        assert!(s.vars.is_empty());
        assert_eq!(s.refused, ["LD_A"]);

        let s = select(values(), &args(&[], None, true), &[], |n| n == "A").unwrap();
        assert_eq!(names(&s.vars), ["B"]);
    }

    #[test]
    fn the_server_may_allow_a_refused_name() {
        let allowed = ["PATH".to_owned()];
        let s = select(values(), &args(&[], None, false), &allowed, |_| false).unwrap();
        assert_eq!(names(&s.vars), ["A", "B", "PATH"]);
        assert_eq!(s.refused, ["LD_PRELOAD"]);
        // Only that exact final name: a prefix that makes another refused
        // name is still refused.
        let s = select(values(), &args(&["A"], Some("LD_"), false), &allowed, |_| false).unwrap();
        assert_eq!(s.refused, ["LD_A"]);
    }

    #[test]
    fn skips_values_with_a_nul_byte() {
        let mut v = values();
        v.insert("NUL".into(), Zeroizing::new("a\0b".into()));
        let s = select(v, &args(&[], None, false), &[], |_| false).unwrap();
        assert_eq!(names(&s.vars), ["A", "B"]);
        assert_eq!(s.nul, ["NUL"]);
    }

    #[test]
    fn prefixes_and_statuses() {
        assert!(check_prefix("APP_").is_ok());
        for bad in ["", "1A", "A-B", "A B", "A="] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
        assert_eq!(shell_status(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(shell_status(ExitStatus::from_raw(libc::SIGTERM)), 143);
    }
}
