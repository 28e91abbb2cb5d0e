//! `coffer sync …`: CI sync targets of an environment (issue 19,
//! docs/ci-sync.md): add a GitHub Actions or GitLab CI/CD target, status
//! (last success, last error, pending, dead letters, drift), run (sync now,
//! requeue dead letters, reconcile), jobs (the queue), remove. The target's
//! token is read from a hidden prompt or stdin, never from the command line.
//! (`coffer push`/`pull`/`diff` are the .env file sync; this is another verb.)

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::access::seg;
use super::client::Client;
use super::context::Target;

/// Sync commands (org admins; the environment is `--org/--project/--env`).
#[derive(Debug, Subcommand)]
pub(crate) enum SyncCmd {
    /// Add a target to the environment; its token is read from a hidden
    /// prompt or stdin (`printf %s "$TOKEN" | coffer sync add github …`).
    Add {
        #[command(subcommand)]
        provider: AddCmd,
    },
    /// The environment's targets and their status.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sync now: queue differences, retry pending jobs and dead letters,
    /// reconcile at the next run (every target of the environment, or one).
    Run {
        /// Target id (default: every target of the environment).
        id: Option<String>,
    },
    /// A target's queue: pending jobs and dead letters first.
    Jobs {
        /// Target id.
        id: String,
    },
    /// Replace a target's token; the target must accept the new token
    /// (checked first) or the old one stays. The token is read from stdin
    /// (`--token-stdin`) or a hidden prompt, never from the command line.
    SetToken {
        /// Target id.
        id: String,
        /// Read the token from stdin (`printf %s "$TOKEN" | coffer sync set-token ID --token-stdin`).
        #[arg(long)]
        token_stdin: bool,
    },
    /// Authenticate a GitHub target as a GitHub App instead of a token:
    /// coffer signs an App JWT with the private key and uses short-lived
    /// installation tokens. Checked against the target first.
    SetApp {
        /// Target id.
        id: String,
        /// The GitHub App's id.
        #[arg(long)]
        app_id: u64,
        /// The App's installation id (on the repository's owner).
        #[arg(long)]
        installation_id: u64,
        /// The App's private key, PEM (`-`: stdin).
        #[arg(long)]
        private_key_file: String,
    },
    /// Remove a target (what it wrote stays at the provider).
    Remove {
        /// Target id.
        id: String,
    },
}

/// Options every target has.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    /// The provider's API base URL (default https://api.github.com, https://gitlab.com).
    #[arg(long)]
    api_url: Option<String>,
    /// Write the coffer value again over a value changed at the target.
    #[arg(long)]
    overwrite_drift: bool,
    /// Per-request timeout in ms.
    #[arg(long)]
    timeout_ms: Option<i64>,
}

/// The provider of a new target.
#[derive(Debug, Subcommand)]
pub(crate) enum AddCmd {
    /// GitHub Actions secrets: `--repo OWNER/REPO` (repository secrets),
    /// plus `--environment NAME` (environment secrets), or `--org-secrets
    /// OWNER` (organization secrets).
    Github {
        /// Repository, as OWNER/REPO.
        #[arg(long, conflicts_with = "org_secrets")]
        repo: Option<String>,
        /// The repository's deployment environment (environment secrets).
        #[arg(long, requires = "repo")]
        environment: Option<String>,
        /// A GitHub organization (organization secrets).
        #[arg(long)]
        org_secrets: Option<String>,
        /// Organization secrets' visibility: all, private or selected.
        #[arg(long, default_value = "private")]
        visibility: String,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// GitLab CI/CD variables of a project (`--project-id`) or group (`--group-id`).
    Gitlab {
        /// Project id or full path.
        #[arg(long, conflicts_with = "group_id", required_unless_present = "group_id")]
        project_id: Option<String>,
        /// Group id or full path.
        #[arg(long)]
        group_id: Option<String>,
        /// The variables' environment scope.
        #[arg(long, default_value = "*")]
        environment_scope: String,
        /// Do not mask the values in job logs.
        #[arg(long)]
        unmasked: bool,
        /// Expose the variables to protected branches and tags only.
        #[arg(long)]
        protected: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
}

fn body(t: &Target, provider: AddCmd) -> anyhow::Result<(Value, String)> {
    let mut b = json!({ "project": t.project, "environment": t.env });
    let common = match provider {
        AddCmd::Github {
            repo,
            environment,
            org_secrets,
            visibility,
            common,
        } => {
            b["provider"] = json!("github");
            if let Some(owner) = org_secrets {
                b["scope"] = json!("organization");
                b["owner"] = json!(owner);
                b["visibility"] = json!(visibility);
            } else {
                let repo = repo.ok_or_else(|| anyhow::anyhow!("give --repo OWNER/REPO or --org-secrets OWNER"))?;
                let (owner, name) = repo
                    .split_once('/')
                    .ok_or_else(|| anyhow::anyhow!("--repo must be OWNER/REPO, got {repo:?}"))?;
                b["owner"] = json!(owner);
                b["repo"] = json!(name);
                b["scope"] = json!("repository");
                if let Some(e) = environment {
                    b["scope"] = json!("environment");
                    b["github_environment"] = json!(e);
                }
            }
            common
        }
        AddCmd::Gitlab {
            project_id,
            group_id,
            environment_scope,
            unmasked,
            protected,
            common,
        } => {
            b["provider"] = json!("gitlab");
            match (project_id, group_id) {
                (Some(p), _) => {
                    b["scope"] = json!("project");
                    b["gitlab_id"] = json!(p);
                }
                (None, Some(g)) => {
                    b["scope"] = json!("group");
                    b["gitlab_id"] = json!(g);
                }
                (None, None) => anyhow::bail!("give --project-id or --group-id"),
            }
            b["environment_scope"] = json!(environment_scope);
            b["masked"] = json!(!unmasked);
            b["protected"] = json!(protected);
            common
        }
    };
    if let Some(u) = common.api_url {
        b["api_url"] = json!(u);
    }
    b["overwrite_drift"] = json!(common.overwrite_drift);
    if let Some(ms) = common.timeout_ms {
        b["timeout_ms"] = json!(ms);
    }
    let provider = b["provider"].as_str().unwrap_or_default().to_owned();
    Ok((b, provider))
}

fn status_line(t: &Value) -> String {
    let s = |k: &str| t[k].as_str().unwrap_or("-").to_owned();
    let loc = &t["location"];
    let place = match t["provider"].as_str() {
        Some("github") if t["scope"] == "organization" => format!("org {}", loc["owner"].as_str().unwrap_or("")),
        Some("github") => {
            let env = loc["github_environment"]
                .as_str()
                .map(|e| format!(" env {e}"))
                .unwrap_or_default();
            format!(
                "{}/{}{env}",
                loc["owner"].as_str().unwrap_or(""),
                loc["repo"].as_str().unwrap_or("")
            )
        }
        _ => format!(
            "{} {} scope {}",
            t["scope"].as_str().unwrap_or(""),
            loc["gitlab_id"].as_str().unwrap_or(""),
            loc["environment_scope"].as_str().unwrap_or("*")
        ),
    };
    let drift: Vec<String> = t["drift"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{} ({})",
                d["key"].as_str().unwrap_or(""),
                d["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    format!(
        "{}  {:<6} {}\n  last success {}  pending {}  dead {}  drift {}\n  last error {} {}",
        s("id"),
        s("provider"),
        place,
        s("last_success_at"),
        t["pending"].as_i64().unwrap_or(0),
        t["dead"].as_i64().unwrap_or(0),
        if drift.is_empty() {
            "none".to_owned()
        } else {
            drift.join(", ")
        },
        s("last_error_at"),
        s("last_error"),
    )
}

/// Run a sync command.
pub(crate) async fn run(client: &Client, t: &Target, cmd: SyncCmd) -> anyhow::Result<u8> {
    let base = format!("/orgs/{}/ci-sync", seg(&t.org));
    let env_query = format!("{base}?project={}&environment={}", seg(&t.project), seg(&t.env));
    match cmd {
        SyncCmd::Add { provider } => {
            let (mut b, name) = body(t, provider)?;
            let token = super::secrets::read_hidden(
                &format!("{name} token (input hidden): "),
                &format!("coffer sync add {name} …"),
            )?;
            b["token"] = json!(token.as_str());
            let data = client.api(Method::POST, &base, Some(&b)).await;
            // The request body held the token: wipe our copy.
            if let Some(v) = b.get_mut("token") {
                *v = Value::Null;
            }
            let data = data?;
            println!(
                "sync target {} added to {}/{}/{}; the first sync is queued",
                data["id"].as_str().unwrap_or(""),
                t.org,
                t.project,
                t.env
            );
        }
        SyncCmd::Status { json } => {
            let data = client.api(Method::GET, &env_query, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                let targets = data.as_array().cloned().unwrap_or_default();
                if targets.is_empty() {
                    println!("no sync targets in {}/{}/{}", t.org, t.project, t.env);
                }
                for target in &targets {
                    println!("{}", status_line(target));
                }
            }
        }
        SyncCmd::Run { id } => {
            let ids: Vec<String> = match id {
                Some(id) => vec![id],
                None => client
                    .api(Method::GET, &env_query, None)
                    .await?
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x["id"].as_str().map(str::to_owned))
                    .collect(),
            };
            for id in ids {
                let data = client
                    .api(Method::POST, &format!("{base}/{}/run", seg(&id)), Some(&json!({})))
                    .await?;
                println!(
                    "{id}: {} jobs queued, {} requeued",
                    data["queued"].as_u64().unwrap_or(0),
                    data["requeued"].as_u64().unwrap_or(0)
                );
            }
        }
        SyncCmd::Jobs { id } => {
            let data = client
                .api(Method::GET, &format!("{base}/{}/jobs", seg(&id)), None)
                .await?;
            for j in data.as_array().into_iter().flatten() {
                println!(
                    "{}  {:<6} {} v{}  {:<10} attempts {}  {}",
                    j["created_at"].as_str().unwrap_or(""),
                    j["op"].as_str().unwrap_or(""),
                    j["key"].as_str().unwrap_or(""),
                    j["version"].as_i64().unwrap_or(0),
                    j["status"].as_str().unwrap_or(""),
                    j["attempts"].as_i64().unwrap_or(0),
                    j["last_error"].as_str().unwrap_or("")
                );
            }
        }
        SyncCmd::SetToken { id, token_stdin } => {
            let token = if token_stdin {
                read_stdin("coffer sync set-token ID --token-stdin")?
            } else {
                super::secrets::read_hidden("new token (input hidden): ", "coffer sync set-token ID --token-stdin")?
            };
            let mut b = json!({ "token": token.as_str() });
            let data = client.api(Method::PUT, &format!("{base}/{}", seg(&id)), Some(&b)).await;
            b["token"] = Value::Null;
            data?;
            println!("sync target {id}: the target accepted the new token; it replaced the old one");
        }
        SyncCmd::SetApp {
            id,
            app_id,
            installation_id,
            private_key_file,
        } => {
            let pem = if private_key_file == "-" {
                read_stdin("coffer sync set-app ID … --private-key-file -")?
            } else {
                zeroize::Zeroizing::new(
                    std::fs::read_to_string(&private_key_file)
                        .map_err(|e| anyhow::anyhow!("cannot read {private_key_file}: {e}"))?,
                )
            };
            let mut b = json!({ "app_id": app_id, "installation_id": installation_id, "private_key": pem.as_str() });
            let data = client.api(Method::PUT, &format!("{base}/{}", seg(&id)), Some(&b)).await;
            b["private_key"] = Value::Null;
            data?;
            println!("sync target {id}: authenticates as GitHub App {app_id} (installation {installation_id})");
        }
        SyncCmd::Remove { id } => {
            client
                .api(Method::DELETE, &format!("{base}/{}", seg(&id)), None)
                .await?;
            println!("sync target {id} removed");
        }
    }
    Ok(0)
}

/// All of stdin, one trailing newline dropped; empty is an error.
fn read_stdin(example: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    use std::io::Read as _;
    let mut v = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut v)
        .map_err(|_| anyhow::anyhow!("cannot read stdin (is it UTF-8?)"))?;
    while v.ends_with('\n') || v.ends_with('\r') {
        v.pop();
    }
    if v.trim().is_empty() {
        anyhow::bail!("nothing on stdin; pipe it in, e.g. `printf %s \"$TOKEN\" | {example}`");
    }
    Ok(v)
}
