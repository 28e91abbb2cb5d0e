//! `coffer database …`: database credentials (issue 21,
//! docs/database-credentials.md) over the native API: connections (the
//! admin URL is read from stdin or a hidden prompt, never from the command
//! line, and never printed back), dynamic and static roles, fresh
//! credentials, and leases (list, renew, revoke, revoke by prefix).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::access::seg;
use super::client::Client;
use super::context::Target;

/// Database credentials commands (the organization is `--org`; a new
/// connection is bound to `--project/--env`).
#[derive(Debug, Subcommand)]
pub(crate) enum DatabaseCmd {
    /// Connections to target PostgreSQL databases (org admins).
    Connection {
        #[command(subcommand)]
        cmd: ConnectionCmd,
    },
    /// Dynamic and static roles (org admins).
    Role {
        #[command(subcommand)]
        cmd: RoleCmd,
    },
    /// Fresh credentials of a dynamic role (needs reveal on the
    /// connection's environment): username, password and lease id as env
    /// lines, or JSON.
    Creds {
        /// Role name.
        role: String,
        /// Lease TTL (e.g. 10m, 1h; default: the role's), capped at its max TTL.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<i64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Leases of dynamic credentials.
    Lease {
        #[command(subcommand)]
        cmd: LeaseCmd,
    },
}

/// `coffer database connection …`
#[derive(Debug, Subcommand)]
pub(crate) enum ConnectionCmd {
    /// Add a connection, bound to the environment `--project/--env`; the
    /// admin URL `postgres://user:password@host:port/db` is read from stdin
    /// (`printf %s "$URL" | coffer database connection add main --url-stdin`)
    /// or a hidden prompt. It is verified (connect + SELECT 1) before saving.
    Add {
        /// Connection name.
        name: String,
        /// Read the admin URL from stdin (required when stdin is not a terminal).
        #[arg(long)]
        url_stdin: bool,
        /// Admin user (overrides the URL's).
        #[arg(long)]
        username: Option<String>,
    },
    /// The organization's connections (never a password).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a connection (its roles must be removed first).
    Remove {
        /// Connection name.
        name: String,
    },
}

/// `coffer database role add` arguments.
#[derive(Debug, Args)]
pub(crate) struct RoleAddArgs {
    /// Role name.
    name: String,
    /// The connection's name.
    #[arg(long)]
    connection: String,
    /// A dynamic role: a fresh PostgreSQL user per lease.
    #[arg(long, conflicts_with = "static_", required_unless_present = "static_")]
    dynamic: bool,
    /// A static role: an existing user whose password coffer rotates.
    #[arg(long = "static")]
    static_: bool,
    /// Dynamic: the default templates, read-only or read-write.
    #[arg(long, value_parser = ["read-only", "read-write"], conflicts_with_all = ["creation_sql_file", "static_"])]
    template: Option<String>,
    /// Dynamic: file with the creation SQL ({{name}}, {{password}}, {{expiration}}).
    #[arg(long, conflicts_with = "static_")]
    creation_sql_file: Option<PathBuf>,
    /// Dynamic: file with the revocation SQL ({{name}}).
    #[arg(long, conflicts_with = "static_")]
    revocation_sql_file: Option<PathBuf>,
    /// Dynamic: default lease TTL (e.g. 1h; default 1h).
    #[arg(long, value_parser = parse_duration, conflicts_with = "static_")]
    ttl: Option<i64>,
    /// Dynamic: max TTL, renewals stop there (default 24h).
    #[arg(long, value_parser = parse_duration, conflicts_with = "static_")]
    max_ttl: Option<i64>,
    /// Static: the existing database user.
    #[arg(long, conflicts_with = "dynamic")]
    username: Option<String>,
    /// Static: the secret holding its password, `<env>/<KEY>` or `KEY`, in
    /// the connection's environment.
    #[arg(long, conflicts_with = "dynamic")]
    secret: Option<String>,
    /// Static: rotation period (e.g. 24h; default: on demand only).
    #[arg(long, value_parser = parse_period, conflicts_with = "dynamic")]
    every: Option<i64>,
}

/// `coffer database role …`
#[derive(Debug, Subcommand)]
pub(crate) enum RoleCmd {
    /// Add a dynamic or static role (a static role is rotated at once).
    Add(Box<RoleAddArgs>),
    /// The organization's roles.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a role (its active leases stay until they expire).
    Remove {
        /// Role name.
        name: String,
    },
    /// Rotate a static role's password now.
    Rotate {
        /// Role name.
        name: String,
    },
}

/// `coffer database lease …`
#[derive(Debug, Subcommand)]
pub(crate) enum LeaseCmd {
    /// The organization's leases, newest first.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Renew a lease (up to its role's max TTL).
    Renew {
        /// Lease id (`database/creds/<org>/<role>/<id>`).
        lease_id: String,
        /// New time to live from now (default: the role's TTL).
        #[arg(long, value_parser = parse_duration)]
        increment: Option<i64>,
    },
    /// Revoke a lease now (the database user is dropped).
    Revoke {
        /// Lease id.
        lease_id: String,
    },
    /// Revoke every lease under a prefix (`database/creds/<org>[/<role>]`).
    RevokePrefix {
        /// Lease id prefix.
        prefix: String,
    },
}

/// `90s`, `30m`, `1h`, `7d`, or plain seconds → seconds (positive).
fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 =
        num.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!("{text:?} is not a duration: expected a positive number and s, m, h or d (e.g. 1h)")
        })?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{text:?} is too long"))
}

/// A rotation period: a duration, or 0 (on demand only).
fn parse_period(text: &str) -> Result<i64, String> {
    if text.trim() == "0" {
        Ok(0)
    } else {
        parse_duration(text)
    }
}

fn read_file(flag: &str, path: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{flag} {}: cannot read it", path.display()))?;
    if text.trim().is_empty() {
        bail!("{flag} {}: the file is empty", path.display());
    }
    Ok(text)
}

/// The admin URL: stdin with `--url-stdin`, else a hidden prompt.
fn read_url(url_stdin: bool) -> anyhow::Result<zeroize::Zeroizing<String>> {
    if !url_stdin && !std::io::stdin().is_terminal() {
        bail!(
            "the admin URL is read from stdin: pass --url-stdin, e.g. `printf %s \"$URL\" | coffer database connection add NAME --url-stdin` (it is never taken from the command line)"
        );
    }
    super::secrets::read_hidden(
        "Admin URL postgres://user:password@host:port/db (input hidden): ",
        "coffer database connection add NAME --url-stdin",
    )
}

/// `'…'` for a shell or a .env file.
fn quoted(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// The role name of a lease id `database/creds/<org>/<role>/<id>`.
fn lease_role(lease_id: &str) -> &str {
    lease_id.split('/').nth(3).unwrap_or("")
}

async fn role_body(client: &Client, base: &str, a: RoleAddArgs) -> anyhow::Result<Value> {
    let mut b = json!({ "name": a.name, "connection": a.connection });
    if a.dynamic {
        b["kind"] = json!("dynamic");
        if let Some(t) = a.template {
            b["defaults"] = json!(t);
        }
        match (&a.creation_sql_file, &a.revocation_sql_file) {
            (Some(c), r) => {
                b["creation_sql"] = json!(read_file("--creation-sql-file", c)?);
                if let Some(r) = r {
                    b["revocation_sql"] = json!(read_file("--revocation-sql-file", r)?);
                }
            }
            (None, Some(r)) => {
                b["revocation_sql"] = json!(read_file("--revocation-sql-file", r)?);
            }
            (None, None) => {}
        }
        if let Some(t) = a.ttl {
            b["default_ttl"] = json!(t);
        }
        if let Some(t) = a.max_ttl {
            b["max_ttl"] = json!(t);
        }
        return Ok(b);
    }
    b["kind"] = json!("static");
    let username = a
        .username
        .context("a static role needs --username (the existing database user)")?;
    let secret = a
        .secret
        .context("a static role needs --secret <env>/<KEY> (where its password is published)")?;
    let key = match secret.rsplit_once('/') {
        None => secret.clone(),
        Some((env, key)) => {
            // The secret lives in the connection's environment: say so
            // rather than publish somewhere unexpected.
            let conns = client.api(Method::GET, &format!("{base}/connections"), None).await?;
            let conn = conns
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == json!(a.connection))
                .with_context(|| format!("--connection {}: no such database connection", a.connection))?;
            let (project, environment) = (s(conn, "project"), s(conn, "environment"));
            if env != environment && env != format!("{project}/{environment}") {
                bail!(
                    "--secret {secret}: connection {} is bound to {project}/{environment}; a static role's secret lives there (use {environment}/{key})",
                    a.connection
                );
            }
            key.to_owned()
        }
    };
    if key.is_empty() {
        bail!("--secret {secret}: the key is empty");
    }
    b["username"] = json!(username);
    b["secret_key"] = json!(key);
    b["rotation_period"] = json!(a.every.unwrap_or(0));
    Ok(b)
}

fn print_lease_line(l: &Value) {
    println!(
        "{}  {:<8} role {}  user {}  expires {}  ({} s left){}",
        s(l, "lease_id"),
        s(l, "status"),
        lease_role(s(l, "lease_id")),
        s(l, "username"),
        s(l, "expires_at"),
        l["lease_duration"].as_i64().unwrap_or(0),
        l["last_error"]
            .as_str()
            .map(|e| format!("  last error: {e}"))
            .unwrap_or_default()
    );
}

/// Run a database command.
pub(crate) async fn run(client: &Client, t: &Target, cmd: DatabaseCmd) -> anyhow::Result<u8> {
    let base = format!("/orgs/{}/database", seg(&t.org));
    match cmd {
        DatabaseCmd::Connection { cmd } => match cmd {
            ConnectionCmd::Add {
                name,
                url_stdin,
                username,
            } => {
                let url = read_url(url_stdin)?;
                let mut b = json!({ "name": name, "project": t.project, "environment": t.env });
                if let Some(u) = username {
                    b["username"] = json!(u);
                }
                b["url"] = json!(url.as_str());
                let data = client.api(Method::POST, &format!("{base}/connections"), Some(&b)).await;
                // The request body held the admin URL: wipe our copy.
                if let Some(v) = b.get_mut("url") {
                    *v = Value::Null;
                }
                let data = data.with_context(|| format!("database connection {name} was not added"))?;
                println!(
                    "database connection {} added ({}), bound to {}/{}/{}",
                    s(&data, "name"),
                    s(&data, "url"),
                    t.org,
                    s(&data, "project"),
                    s(&data, "environment")
                );
            }
            ConnectionCmd::List { json } => {
                let data = client.api(Method::GET, &format!("{base}/connections"), None).await?;
                if json {
                    return print_json(&data).map(|()| 0);
                }
                let list = data.as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    println!("no database connections in {}", t.org);
                }
                for c in &list {
                    println!(
                        "{}  {}  env {}/{}  by {} at {}",
                        s(c, "name"),
                        s(c, "url"),
                        s(c, "project"),
                        s(c, "environment"),
                        s(c, "created_by"),
                        s(c, "created_at")
                    );
                }
            }
            ConnectionCmd::Remove { name } => {
                client
                    .api(Method::DELETE, &format!("{base}/connections/{}", seg(&name)), None)
                    .await?;
                println!("database connection {name} removed");
            }
        },
        DatabaseCmd::Role { cmd } => match cmd {
            RoleCmd::Add(a) => {
                let b = role_body(client, &base, *a).await?;
                let r = client.api(Method::POST, &format!("{base}/roles"), Some(&b)).await?;
                if r["kind"] == "static" {
                    println!(
                        "static role {} added: user {} rotated, password in secret {}{}",
                        s(&r, "name"),
                        s(&r, "username"),
                        s(&r, "secret_key"),
                        match r["rotation_period"].as_i64().unwrap_or(0) {
                            0 => " (rotated on demand only)".to_owned(),
                            p => format!(" (rotated every {p} s)"),
                        }
                    );
                } else {
                    println!(
                        "dynamic role {} added on connection {}: ttl {} s, max ttl {} s",
                        s(&r, "name"),
                        s(&r, "connection"),
                        r["default_ttl"].as_i64().unwrap_or(0),
                        r["max_ttl"].as_i64().unwrap_or(0)
                    );
                }
            }
            RoleCmd::List { json } => {
                let data = client.api(Method::GET, &format!("{base}/roles"), None).await?;
                if json {
                    return print_json(&data).map(|()| 0);
                }
                let list = data.as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    println!("no database roles in {}", t.org);
                }
                for r in &list {
                    if r["kind"] == "static" {
                        println!(
                            "{}  static   connection {}  user {}  secret {}  every {} s  next {}",
                            s(r, "name"),
                            s(r, "connection"),
                            s(r, "username"),
                            s(r, "secret_key"),
                            r["rotation_period"].as_i64().unwrap_or(0),
                            r["next_rotation"].as_str().unwrap_or("on demand")
                        );
                    } else {
                        println!(
                            "{}  dynamic  connection {}  ttl {} s  max ttl {} s",
                            s(r, "name"),
                            s(r, "connection"),
                            r["default_ttl"].as_i64().unwrap_or(0),
                            r["max_ttl"].as_i64().unwrap_or(0)
                        );
                    }
                }
            }
            RoleCmd::Remove { name } => {
                client
                    .api(Method::DELETE, &format!("{base}/roles/{}", seg(&name)), None)
                    .await?;
                println!("database role {name} removed");
            }
            RoleCmd::Rotate { name } => {
                let r = client
                    .api(
                        Method::POST,
                        &format!("{base}/roles/{}/rotate", seg(&name)),
                        Some(&json!({})),
                    )
                    .await?;
                println!(
                    "role {} rotated: user {}, secret {} version {}",
                    s(&r, "role"),
                    s(&r, "username"),
                    s(&r, "secret_key"),
                    r["version"].as_i64().unwrap_or(0)
                );
            }
        },
        DatabaseCmd::Creds { role, ttl, json } => {
            let mut b = json!({});
            if let Some(t) = ttl {
                b["ttl"] = json!(t);
            }
            let mut data = client
                .api(Method::POST, &format!("{base}/creds/{}", seg(&role)), Some(&b))
                .await?;
            if json {
                print_json(&data)?;
            } else {
                println!("DB_USERNAME={}", quoted(s(&data, "username")));
                println!("DB_PASSWORD={}", quoted(s(&data, "password")));
                println!("DATABASE_URL={}", quoted(s(&data, "database_url")));
                println!("DB_LEASE_ID={}", quoted(s(&data, "lease_id")));
                println!("DB_LEASE_DURATION={}", data["lease_duration"].as_i64().unwrap_or(0));
            }
            for k in ["password", "database_url"] {
                if let Some(v) = data.get_mut(k) {
                    *v = Value::Null;
                }
            }
        }
        DatabaseCmd::Lease { cmd } => match cmd {
            LeaseCmd::List { json } => {
                let data = client.api(Method::GET, &format!("{base}/leases"), None).await?;
                if json {
                    return print_json(&data).map(|()| 0);
                }
                let list = data.as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    println!("no database leases in {}", t.org);
                }
                for l in &list {
                    print_lease_line(l);
                }
            }
            LeaseCmd::Renew { lease_id, increment } => {
                let mut b = json!({ "lease_id": lease_id });
                if let Some(i) = increment {
                    b["increment"] = json!(i);
                }
                let l = client
                    .api(Method::POST, &format!("{base}/leases/renew"), Some(&b))
                    .await?;
                println!(
                    "lease {} renewed: expires {} ({} s){}",
                    s(&l, "lease_id"),
                    s(&l, "expires_at"),
                    l["lease_duration"].as_i64().unwrap_or(0),
                    if l["renewable"] == json!(false) {
                        "; it reached its max TTL"
                    } else {
                        ""
                    }
                );
            }
            LeaseCmd::Revoke { lease_id } => {
                client
                    .api(
                        Method::POST,
                        &format!("{base}/leases/revoke"),
                        Some(&json!({ "lease_id": lease_id })),
                    )
                    .await?;
                println!("lease {lease_id} revoked");
            }
            LeaseCmd::RevokePrefix { prefix } => {
                let out = client
                    .api(
                        Method::POST,
                        &format!("{base}/leases/revoke-prefix"),
                        Some(&json!({ "prefix": prefix })),
                    )
                    .await?;
                let revoked = out["revoked"].as_array().map_or(0, Vec::len);
                let failed: Vec<&str> = out["failed"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!("{revoked} leases under {prefix} revoked");
                if !failed.is_empty() {
                    eprintln!(
                        "{} leases were not revoked (the expiry job retries them): {}",
                        failed.len(),
                        failed.join(", ")
                    );
                    return Ok(1);
                }
            }
        },
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("24h"), Ok(86400));
        assert_eq!(parse_duration("600"), Ok(600));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_period("0"), Ok(0));
        assert_eq!(parse_period("2d"), Ok(172_800));
    }

    #[test]
    fn env_lines_are_quoted() {
        assert_eq!(quoted("a'b"), "'a'\\''b'");
        assert_eq!(lease_role("database/creds/acme/app-rw/abc"), "app-rw");
    }
}
