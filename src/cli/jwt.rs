//! `coffer jwt issuer|role …`: an organization's JWT/OIDC login (issue 19,
//! docs/jwt-auth.md): trusted token issuers and the roles CI jobs log in
//! with (`coffer login --jwt "$ID_TOKEN" --role deploy`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::access::{OrgArgs, seg};
use super::client::Client;

/// `coffer jwt …` (org admins; the organization is `--org`).
#[derive(Debug, Subcommand)]
pub(crate) enum JwtCmd {
    /// Trusted token issuers: where their signing keys are.
    Issuer {
        #[command(subcommand)]
        cmd: IssuerCmd,
    },
    /// Login roles: which tokens act as which service account.
    Role {
        #[command(subcommand)]
        cmd: RoleCmd,
    },
}

/// `coffer jwt issuer …`
#[derive(Debug, Subcommand)]
pub(crate) enum IssuerCmd {
    /// Add an issuer; its keys are fetched (or read) and checked now.
    Add {
        /// Issuer name in the organization (e.g. github).
        name: String,
        /// github (issuer https://token.actions.githubusercontent.com) or gitlab (https://gitlab.com);
        /// a preset also checks the claims its roles bind.
        #[arg(long, value_parser = ["github", "gitlab"])]
        preset: Option<String>,
        /// The tokens' exact `iss` (default: the preset's).
        #[arg(long)]
        issuer: Option<String>,
        /// OIDC discovery URL (default: ISSUER/.well-known/openid-configuration).
        #[arg(long, conflicts_with_all = ["jwks_url", "jwks_file"])]
        discovery_url: Option<String>,
        /// Fetch the keys from this JWKS URL instead of discovery.
        #[arg(long, conflicts_with = "jwks_file")]
        jwks_url: Option<String>,
        /// A static JWKS file (JSON) instead of fetching keys.
        #[arg(long)]
        jwks_file: Option<PathBuf>,
    },
    /// List the issuers.
    List,
    /// Remove an issuer (no role may use it).
    Remove {
        /// Issuer name.
        name: String,
    },
}

/// `coffer jwt role …`
#[derive(Debug, Subcommand)]
pub(crate) enum RoleCmd {
    /// Add a role.
    Add {
        /// Role name (what `coffer login --role` names).
        name: String,
        /// Issuer name.
        #[arg(long)]
        issuer: String,
        /// The audience (`aud`) tokens must carry (required).
        #[arg(long)]
        audience: String,
        /// The service account logins act as (its grants are the token's).
        #[arg(long)]
        service_account: String,
        /// A bound claim CLAIM=PATTERN (`*` globs); repeat it; the same claim
        /// twice means either value.
        #[arg(long = "bound-claim", value_name = "CLAIM=PATTERN", required = true)]
        bound_claims: Vec<String>,
        /// Lifetime of an issued token (default 15m, at most 12h).
        #[arg(long)]
        max_ttl: Option<String>,
    },
    /// List the roles.
    List,
    /// Remove a role (tokens it issued live out their TTL).
    Remove {
        /// Role name.
        name: String,
    },
}

/// `claim=pattern` pairs as `{claim: [patterns]}`.
fn bound(pairs: &[String]) -> anyhow::Result<Value> {
    let mut out = Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--bound-claim {p:?} is not CLAIM=PATTERN");
        };
        let entry = out.entry(k.trim().to_owned()).or_insert_with(|| json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(Value::String(v.to_owned()));
        }
    }
    Ok(Value::Object(out))
}

/// Run a `coffer jwt` command.
pub(crate) async fn run(client: &Client, org: &OrgArgs, cmd: JwtCmd) -> anyhow::Result<u8> {
    let base = format!("/orgs/{}/jwt", seg(&org.org));
    match cmd {
        JwtCmd::Issuer { cmd } => match cmd {
            IssuerCmd::Add {
                name,
                preset,
                issuer,
                discovery_url,
                jwks_url,
                jwks_file,
            } => {
                let jwks = match jwks_file {
                    Some(path) => {
                        let text = std::fs::read_to_string(&path)
                            .with_context(|| format!("cannot read {}", path.display()))?;
                        Some(
                            serde_json::from_str::<Value>(&text)
                                .with_context(|| format!("{} is not JSON", path.display()))?,
                        )
                    }
                    None => None,
                };
                let body = json!({ "name": name, "preset": preset, "issuer": issuer,
                    "discovery_url": discovery_url, "jwks_url": jwks_url, "jwks": jwks });
                let d = client
                    .api(Method::POST, &format!("{base}/issuers"), Some(&body))
                    .await?;
                println!(
                    "JWT issuer {} added: {} (keys from {})",
                    d["name"].as_str().unwrap_or(""),
                    d["issuer"].as_str().unwrap_or(""),
                    d["source"].as_str().unwrap_or("")
                );
            }
            IssuerCmd::List => {
                let d = client.api(Method::GET, &format!("{base}/issuers"), None).await?;
                for i in d.as_array().into_iter().flatten() {
                    let from = match i["source"].as_str() {
                        Some("discovery") => i["discovery_url"].as_str().unwrap_or("").to_owned(),
                        Some("jwks_url") => i["jwks_url"].as_str().unwrap_or("").to_owned(),
                        _ => "static JWKS".to_owned(),
                    };
                    println!(
                        "{:<16} {:<7} {}  keys: {}",
                        i["name"].as_str().unwrap_or(""),
                        i["preset"].as_str().unwrap_or(""),
                        i["issuer"].as_str().unwrap_or(""),
                        from
                    );
                }
            }
            IssuerCmd::Remove { name } => {
                client
                    .api(Method::DELETE, &format!("{base}/issuers/{}", seg(&name)), None)
                    .await?;
                println!("JWT issuer {name} removed");
            }
        },
        JwtCmd::Role { cmd } => match cmd {
            RoleCmd::Add {
                name,
                issuer,
                audience,
                service_account,
                bound_claims,
                max_ttl,
            } => {
                let body = json!({ "name": name, "issuer": issuer, "audience": audience,
                    "service_account": service_account, "bound_claims": bound(&bound_claims)?,
                    "max_ttl": max_ttl });
                let d = client.api(Method::POST, &format!("{base}/roles"), Some(&body)).await?;
                println!(
                    "JWT role {} added: tokens of {} for {} act as service account {} for {} s",
                    d["name"].as_str().unwrap_or(""),
                    d["issuer"].as_str().unwrap_or(""),
                    d["audience"].as_str().unwrap_or(""),
                    d["service_account"].as_str().unwrap_or(""),
                    d["max_ttl"].as_i64().unwrap_or(0)
                );
            }
            RoleCmd::List => {
                let d = client.api(Method::GET, &format!("{base}/roles"), None).await?;
                for r in d.as_array().into_iter().flatten() {
                    let claims: Vec<String> = r["bound_claims"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| {
                            let ps: Vec<&str> = v.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                            format!("{k}={}", ps.join("|"))
                        })
                        .collect();
                    println!(
                        "{:<16} issuer {}  aud {}  -> {}  ttl {} s  {}",
                        r["name"].as_str().unwrap_or(""),
                        r["issuer"].as_str().unwrap_or(""),
                        r["audience"].as_str().unwrap_or(""),
                        r["service_account"].as_str().unwrap_or(""),
                        r["max_ttl"].as_i64().unwrap_or(0),
                        claims.join(" ")
                    );
                }
            }
            RoleCmd::Remove { name } => {
                client
                    .api(Method::DELETE, &format!("{base}/roles/{}", seg(&name)), None)
                    .await?;
                println!("JWT role {name} removed");
            }
        },
    }
    Ok(0)
}
