//! `coffer org members|group|grant|revoke|service-account|token`: who may
//! do what in an organization (docs/access.md). Thin wrappers over the
//! native API: human tables by default, `--json` for the raw data.
//!
//! Tokens printed here go to stdout alone (details to stderr), so
//! `TOKEN=$(coffer service-account token ci)` captures exactly the token.

use anyhow::{Context, bail};
use clap::{ArgGroup, Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::Client;
use crate::access::{PermSet, Permission};

/// Which organization a command works on.
#[derive(Debug, Args)]
pub(crate) struct OrgArgs {
    /// Organization slug.
    #[arg(long, env = "COFFER_ORG", default_value = "default", global = true)]
    pub(crate) org: String,
}

/// `coffer org …`
#[derive(Debug, Subcommand)]
pub(crate) enum OrgCmd {
    /// Members of the organization and their roles.
    Members {
        #[command(subcommand)]
        cmd: MembersCmd,
    },
    #[command(flatten)]
    Lifecycle(super::tenants::OrgLifecycleCmd),
}

/// `coffer org members …`
#[derive(Debug, Subcommand)]
pub(crate) enum MembersCmd {
    /// List members and roles.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a user (or change their role).
    Add {
        /// The user's email.
        email: String,
        /// owner, admin or member.
        #[arg(long, value_parser = ["owner", "admin", "member"])]
        role: String,
    },
    /// Remove a user from the organization.
    Remove {
        /// The user's email.
        email: String,
    },
}

/// `coffer group …`
#[derive(Debug, Subcommand)]
pub(crate) enum GroupCmd {
    /// Create a group (name: a slug).
    Create {
        /// Group name.
        name: String,
    },
    /// List groups and their members.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add an org member to a group.
    AddMember {
        /// Group name.
        group: String,
        /// The member's email.
        email: String,
    },
    /// Remove a user from a group.
    RemoveMember {
        /// Group name.
        group: String,
        /// The member's email.
        email: String,
    },
}

/// `coffer grant --user|--service-account|--group … --project … --env … --role|--perms …`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("subject").args(["user", "service_account", "group"]).required(true)))]
#[command(group(ArgGroup::new("what").args(["role", "perms"]).required(true)))]
pub(crate) struct GrantArgs {
    /// Grant to this user (an org member).
    #[arg(long, value_name = "EMAIL")]
    user: Option<String>,
    /// Grant to this service account.
    #[arg(long, value_name = "NAME")]
    service_account: Option<String>,
    /// Grant to this group.
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// Project slug, or '*' for every project of the org (then --env '*').
    #[arg(long, value_name = "PROJECT", required = true)]
    project: Option<String>,
    /// Environment slug, or '*' for every environment of the project.
    #[arg(long = "env", value_name = "ENV", required = true)]
    env: Option<String>,
    /// A preset: viewer (read), developer (read, reveal, create, update), admin (all six).
    #[arg(long, value_parser = ["viewer", "developer", "admin"])]
    role: Option<String>,
    /// Comma-separated permissions: read, reveal, create, update, delete, export.
    #[arg(long, value_name = "PERM,…", value_delimiter = ',', value_parser = parse_permission)]
    perms: Vec<String>,
    /// Print the created grant as JSON.
    #[arg(long)]
    json: bool,
}

/// `coffer grant list`
#[derive(Debug, Subcommand)]
pub(crate) enum GrantCmd {
    /// List the organization's grants.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `coffer service-account …`
#[derive(Debug, Subcommand)]
pub(crate) enum ServiceAccountCmd {
    /// Create a service account (name: a slug).
    Create {
        /// Account name.
        name: String,
        /// Accept requests only from this source network (repeatable), e.g. 10.1.0.0/16.
        #[arg(long = "cidr", value_name = "CIDR")]
        cidrs: Vec<String>,
        /// With mutual TLS: the client certificate's SHA-256 SubjectPublicKeyInfo hash (hex);
        /// the certificate then acts as this account. A certificate maps to at most one
        /// account on the server.
        #[arg(long, value_name = "HEX", value_parser = parse_sha256_hex)]
        cert_spki_sha256: Option<String>,
        /// With --cert-spki-sha256: the certificate's subject common name must also be this.
        #[arg(long, value_name = "CN", requires = "cert_spki_sha256")]
        cert_subject_cn: Option<String>,
        /// With --cert-spki-sha256: the certificate must also carry this DNS subject alternative name.
        #[arg(long, value_name = "NAME", requires = "cert_spki_sha256")]
        cert_dns_san: Option<String>,
        /// Print the created account as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List service accounts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a service account, its tokens and its grants.
    Delete {
        /// Account name.
        name: String,
    },
    /// Issue a token for the account: the token alone on stdout, details on stderr.
    Token {
        /// Account name.
        name: String,
        /// Lifetime, e.g. 15m, 1h, 30d (default: no expiry).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u64>,
        /// Bind the token to the client certificate with this SHA-256 SPKI hash (hex).
        #[arg(long, value_name = "HEX", value_parser = parse_sha256_hex)]
        bind_spki_sha256: Option<String>,
    },
}

/// `coffer token …`
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCmd {
    /// Create a token acting as you: the token alone on stdout, details on stderr.
    Create {
        /// A name to recognise it by in `coffer token list`.
        #[arg(long, default_value = "")]
        name: String,
        /// Lifetime, e.g. 15m, 1h, 30d (default: the server's).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u64>,
        /// Bind the token to the client certificate this request is made with
        /// (--client-cert/--client-key); it is refused on any other connection.
        #[arg(long)]
        bind_certificate: bool,
    },
    /// List your tokens (root: every token).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its accessor.
    Revoke {
        /// The token's accessor (from `coffer token list`).
        accessor: String,
    },
}

/// Run `coffer org …`.
pub(crate) async fn org(client: &Client, org: &OrgArgs, cmd: OrgCmd) -> anyhow::Result<u8> {
    let cmd = match cmd {
        OrgCmd::Members { cmd } => cmd,
        OrgCmd::Lifecycle(cmd) => return super::tenants::org(client, org, cmd).await,
    };
    let base = format!("/orgs/{}/members", seg(&org.org));
    match cmd {
        MembersCmd::List { json } => {
            let data = client.api(Method::GET, &base, None).await?;
            if json {
                print_json(&data)?;
            } else {
                table(
                    &["EMAIL", "ROLE"],
                    rows(&data, |m| vec![text(&m["email"]), text(&m["role"])]),
                );
            }
        }
        MembersCmd::Add { email, role } => {
            let data = client
                .api(Method::POST, &base, Some(&json!({ "email": email, "role": role })))
                .await?;
            println!(
                "{} is now {} of {}.",
                data["email"].as_str().unwrap_or(&email),
                article(data["role"].as_str().unwrap_or(&role)),
                org.org
            );
        }
        MembersCmd::Remove { email } => {
            client
                .api(Method::DELETE, &format!("{base}/{}", seg(&email)), None)
                .await?;
            println!("{email} was removed from {}.", org.org);
        }
    }
    Ok(0)
}

/// Run `coffer group …`.
pub(crate) async fn group(client: &Client, org: &OrgArgs, cmd: GroupCmd) -> anyhow::Result<u8> {
    let base = format!("/orgs/{}/groups", seg(&org.org));
    match cmd {
        GroupCmd::Create { name } => {
            client.api(Method::POST, &base, Some(&json!({ "name": name }))).await?;
            println!("Created group {name} in {}.", org.org);
        }
        GroupCmd::List { json } => {
            let data = client.api(Method::GET, &base, None).await?;
            if json {
                print_json(&data)?;
            } else {
                table(
                    &["GROUP", "MEMBERS"],
                    rows(&data, |g| vec![text(&g["name"]), join(&g["members"])]),
                );
            }
        }
        GroupCmd::AddMember { group, email } => {
            client
                .api(
                    Method::POST,
                    &format!("{base}/{}/members", seg(&group)),
                    Some(&json!({ "email": email })),
                )
                .await?;
            println!("Added {email} to group {group}.");
        }
        GroupCmd::RemoveMember { group, email } => {
            client
                .api(
                    Method::DELETE,
                    &format!("{base}/{}/members/{}", seg(&group), seg(&email)),
                    None,
                )
                .await?;
            println!("Removed {email} from group {group}.");
        }
    }
    Ok(0)
}

/// Run `coffer grant …` (create, or `list`).
pub(crate) async fn grant(
    client: &Client,
    org: &OrgArgs,
    args: GrantArgs,
    cmd: Option<GrantCmd>,
) -> anyhow::Result<u8> {
    let base = format!("/orgs/{}/grants", seg(&org.org));
    if let Some(GrantCmd::List { json }) = cmd {
        if args.user.is_some()
            || args.service_account.is_some()
            || args.group.is_some()
            || args.project.is_some()
            || args.env.is_some()
            || args.role.is_some()
            || !args.perms.is_empty()
        {
            bail!("`coffer grant list` lists every grant of the org; it takes no subject, scope or permissions");
        }
        let data = client.api(Method::GET, &base, None).await?;
        if json {
            print_json(&data)?;
        } else {
            table(
                &["ID", "SUBJECT", "PROJECT", "ENV", "PERMISSIONS"],
                rows(&data, |g| {
                    vec![
                        text(&g["id"]),
                        subject(&g["subject"]),
                        text(&g["project"]),
                        text(&g["environment"]),
                        join(&g["permissions"]),
                    ]
                }),
            );
        }
        return Ok(0);
    }
    let (Some(project), Some(env)) = (args.project, args.env) else {
        bail!("a grant needs --project and --env (each a slug or '*')");
    };
    if project == "*" && env != "*" {
        bail!("--project '*' covers every environment of the org: give --env '*' too");
    }
    let mut body = json!({ "project": project, "environment": env });
    match (args.user, args.service_account, args.group) {
        (Some(u), None, None) => body["user"] = Value::String(u),
        (None, Some(s), None) => body["service_account"] = Value::String(s),
        (None, None, Some(g)) => body["group"] = Value::String(g),
        _ => bail!("give exactly one of --user, --service-account or --group"),
    }
    match (args.role, args.perms.is_empty()) {
        (Some(role), true) => body["role"] = Value::String(role),
        (None, false) => body["permissions"] = json!(args.perms),
        _ => bail!("give either --role or --perms"),
    }
    let data = client.api(Method::POST, &base, Some(&body)).await?;
    if args.json {
        print_json(&data)?;
    } else {
        println!(
            "Granted {} on {}/{} to {} (grant {}; undo with `coffer revoke {}`).",
            join(&data["permissions"]),
            text(&data["project"]),
            text(&data["environment"]),
            subject(&data["subject"]),
            text(&data["id"]),
            text(&data["id"]),
        );
    }
    Ok(0)
}

/// Run `coffer revoke GRANT_ID`.
pub(crate) async fn revoke(client: &Client, org: &OrgArgs, id: &str) -> anyhow::Result<u8> {
    client
        .api(
            Method::DELETE,
            &format!("/orgs/{}/grants/{}", seg(&org.org), seg(id)),
            None,
        )
        .await?;
    println!("Revoked grant {id}.");
    Ok(0)
}

/// Run `coffer service-account …`.
pub(crate) async fn service_account(client: &Client, org: &OrgArgs, cmd: ServiceAccountCmd) -> anyhow::Result<u8> {
    let base = format!("/orgs/{}/service-accounts", seg(&org.org));
    match cmd {
        ServiceAccountCmd::Create {
            name,
            cidrs,
            cert_spki_sha256,
            cert_subject_cn,
            cert_dns_san,
            json,
        } => {
            let mut body = json!({ "name": name });
            if !cidrs.is_empty() {
                body["cidrs"] = json!(cidrs);
            }
            let mut cert = serde_json::Map::new();
            for (k, v) in [
                ("spki_sha256", cert_spki_sha256),
                ("subject_cn", cert_subject_cn),
                ("dns_san", cert_dns_san),
            ] {
                if let Some(v) = v {
                    cert.insert(k.to_owned(), Value::String(v));
                }
            }
            if !cert.is_empty() {
                body["certificate"] = Value::Object(cert);
            }
            let data = client.api(Method::POST, &base, Some(&body)).await?;
            if json {
                print_json(&data)?;
            } else {
                println!(
                    "Created service account {name} in {}. Give it access with `coffer grant --service-account {name} …` \
                     and a token with `coffer service-account token {name}`.",
                    org.org
                );
            }
        }
        ServiceAccountCmd::List { json } => {
            let data = client.api(Method::GET, &base, None).await?;
            if json {
                print_json(&data)?;
            } else {
                table(
                    &["NAME", "CIDRS", "CERTIFICATE", "CREATED"],
                    rows(&data, |s| {
                        vec![
                            text(&s["name"]),
                            join(&s["cidrs"]),
                            certificate(&s["certificate"]),
                            text(&s["created_at"]),
                        ]
                    }),
                );
            }
        }
        ServiceAccountCmd::Delete { name } => {
            client
                .api(Method::DELETE, &format!("{base}/{}", seg(&name)), None)
                .await?;
            println!("Deleted service account {name}, with its tokens and grants.");
        }
        ServiceAccountCmd::Token {
            name,
            ttl,
            bind_spki_sha256,
        } => {
            let mut body = json!({});
            if let Some(ttl) = ttl {
                body["ttl_seconds"] = json!(ttl);
            }
            if let Some(h) = bind_spki_sha256 {
                body["bind_spki_sha256"] = Value::String(h);
            }
            let data = client
                .api(Method::POST, &format!("{base}/{}/tokens", seg(&name)), Some(&body))
                .await?;
            print_token(&data, &format!("service account {name}"))?;
        }
    }
    Ok(0)
}

/// Run `coffer token …`.
pub(crate) async fn token(client: &Client, cmd: TokenCmd) -> anyhow::Result<u8> {
    match cmd {
        TokenCmd::Create {
            name,
            ttl,
            bind_certificate,
        } => {
            let mut body = json!({ "name": name, "bind_certificate": bind_certificate });
            if let Some(ttl) = ttl {
                body["ttl_seconds"] = json!(ttl);
            }
            let data = client.api(Method::POST, "/tokens", Some(&body)).await?;
            print_token(&data, "you")?;
            if let (Some(ttl), Some(expires)) = (ttl, data["expires_at"].as_str())
                && expires_sooner(expires, ttl)
            {
                eprintln!(
                    "note: the server shortened the token's life to that of the session creating it (a token \
                     never outlives its parent). For a long-lived token, use a service account: \
                     `coffer service-account token NAME --ttl …`."
                );
            }
        }
        TokenCmd::List { json } => {
            let data = client.api(Method::GET, "/tokens", None).await?;
            if json {
                print_json(&data)?;
            } else {
                table(
                    &["ACCESSOR", "NAME", "KIND", "CREATED", "EXPIRES", "CERT-BOUND"],
                    rows(&data, |t| {
                        vec![
                            text(&t["accessor"]),
                            text(&t["name"]),
                            text(&t["kind"]),
                            text(&t["created_at"]),
                            t["expires_at"].as_str().unwrap_or("never").to_owned(),
                            yes_no(&t["certificate_bound"]),
                        ]
                    }),
                );
            }
        }
        TokenCmd::Revoke { accessor } => {
            client
                .api(Method::DELETE, &format!("/tokens/{}", seg(&accessor)), None)
                .await?;
            println!("Revoked token {accessor}.");
        }
    }
    Ok(0)
}

/// The token alone on stdout; accessor and expiry on stderr.
fn print_token(data: &Value, acts_as: &str) -> anyhow::Result<()> {
    let token = data["token"].as_str().context("the server's answer has no token")?;
    println!("{token}");
    eprintln!(
        "Token acting as {acts_as}: accessor {}, expires {}. It is shown once; revoke it with `coffer token revoke {}`.",
        text(&data["accessor"]),
        data["expires_at"].as_str().unwrap_or("never"),
        text(&data["accessor"]),
    );
    Ok(())
}

/// Whether `expires_at` (RFC 3339, UTC) is more than two minutes earlier
/// than `ttl` seconds from now. Both sides compare as fixed-width
/// `YYYY-MM-DDTHH:MM:SS` text.
fn expires_sooner(expires_at: &str, ttl: u64) -> bool {
    let ttl = i64::try_from(ttl).unwrap_or(i64::MAX).saturating_sub(120);
    let Some(asked) = time::OffsetDateTime::now_utc().checked_add(time::Duration::seconds(ttl)) else {
        return false;
    };
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    match (asked.format(format), expires_at.get(..19)) {
        (Ok(asked), Some(got)) => got < asked.as_str(),
        _ => false,
    }
}

/// clap parser for one `--perms` item: a known permission name.
fn parse_permission(s: &str) -> Result<String, String> {
    let s = s.trim();
    match Permission::parse(s) {
        Some(p) => Ok(p.as_str().to_owned()),
        None => Err(format!(
            "unknown permission {s:?}; use {} (or --role viewer|developer|admin)",
            PermSet::ALL.names().join(", ")
        )),
    }
}

/// clap parser for `--ttl`: a number with a unit (s, m, h, d, w), or several
/// (`1h30m`); returns seconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration {s:?}: use a number with a unit, e.g. 90s, 15m, 1h, 30d, 2w or 1h30m");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
    }
    if !digits.is_empty() || total == 0 {
        return Err(
            if total == 0 && digits.chars().all(|c| c == '0') && !s.trim().is_empty() {
                format!("duration {s:?} is zero or lacks a unit; use e.g. 1h or 30d")
            } else {
                bad()
            },
        );
    }
    Ok(total)
}

/// clap parser for a SHA-256 hash in hex (64 digits; colons allowed).
fn parse_sha256_hex(s: &str) -> Result<String, String> {
    let h: String = s.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{s:?} is not a SHA-256 hash in hex (64 hex digits), e.g. from \
             `openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der | sha256sum`"
        ));
    }
    Ok(h)
}

/// A path segment: percent-encode everything but unreserved characters and
/// `@`, so emails and names never change the path.
pub(super) fn seg(s: &str) -> String {
    // "." and ".." (even encoded) would be resolved away by the URL parser.
    if s.bytes().all(|b| b == b'.') {
        return "_".repeat(s.len().max(1));
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn print_json(data: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(data)?);
    Ok(())
}

/// Rows of a list answer.
pub(super) fn rows(data: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    data.as_array().into_iter().flatten().map(row).collect()
}

/// Print a table with columns as wide as their widest cell.
pub(super) fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r);
    }
}

/// A string field, or `-`.
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A list of strings as `a,b`, or `-` when empty.
fn join(v: &Value) -> String {
    let items: Vec<String> = v.as_array().into_iter().flatten().map(text).collect();
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

pub(super) fn yes_no(v: &Value) -> String {
    if v.as_bool() == Some(true) { "yes" } else { "no" }.to_owned()
}

/// `{"service_account": "ci"}` → `service_account:ci`.
fn subject(v: &Value) -> String {
    match v.as_object().and_then(|o| o.iter().next()) {
        Some((kind, name)) => format!("{kind}:{}", text(name)),
        None => text(v),
    }
}

/// `{"spki_sha256": …, "subject_cn": …}` → `cn=…,spki=…`, or `-`.
fn certificate(v: &Value) -> String {
    let mut parts = Vec::new();
    for (key, label) in [("subject_cn", "cn"), ("dns_san", "dns"), ("spki_sha256", "spki")] {
        if let Some(s) = v[key].as_str() {
            parts.push(format!("{label}={s}"));
        }
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(",")
    }
}

/// "an owner", "an admin", "a member".
fn article(role: &str) -> String {
    if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {role}")
    } else {
        format!("a {role}")
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("45s"), Ok(45));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("30d"), Ok(2_592_000));
        assert_eq!(parse_ttl("2w"), Ok(1_209_600));
        assert_eq!(parse_ttl("1h30m"), Ok(5400));
        for bad in ["", "h", "1x", "10", "1.5h", "-1h", "0h", "99999999999999999999w"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse_ttl("1y").unwrap_err().contains("e.g. 90s"));
    }

    #[test]
    fn permissions_are_checked_by_name() {
        assert_eq!(parse_permission("reveal"), Ok("reveal".to_owned()));
        let err = parse_permission("write").unwrap_err();
        assert!(err.contains("\"write\"") && err.contains("export"), "{err}");
    }

    #[test]
    fn spki_hashes() {
        let h = "AB".repeat(32);
        assert_eq!(parse_sha256_hex(&h), Ok("ab".repeat(32)));
        assert!(parse_sha256_hex("abcd").is_err());
        assert!(parse_sha256_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn shortened_lifetimes_are_noticed() {
        let in_an_hour = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let f =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        let in_an_hour = in_an_hour.format(f).unwrap();
        assert!(expires_sooner(&in_an_hour, 30 * 86_400));
        assert!(!expires_sooner(&in_an_hour, 3600));
        assert!(!expires_sooner("garbage", 3600));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("a.b+c@x.io"), "a.b%2Bc@x.io");
        assert_eq!(seg("../x?y#z%"), "..%2Fx%3Fy%23z%25");
        assert_eq!(
            (seg(".."), seg(""), seg("a b")),
            ("__".to_owned(), "_".to_owned(), "a%20b".to_owned())
        );
    }
}
