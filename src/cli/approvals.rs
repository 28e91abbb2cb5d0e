//! `coffer approvals …` and `coffer break-glass`: protected environments
//! (issue 17, docs/approvals.md). Requests, decisions, the break-glass
//! review queue and the environment's approval policy, over the native API.

use anyhow::bail;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::Client;
use super::context::Target;
use super::secrets::Output;

/// Approvals commands (the organization is `--org`; `request` and `policy`
/// also use `--project` and `--env`).
#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalsCmd {
    /// List requests of the organization (pending ones unless --status says otherwise).
    List {
        /// pending, applied, approved, rejected, stale, expired, or "all".
        #[arg(long, default_value = "pending")]
        status: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show one request (values only if you hold reveal on its environment).
    Show {
        /// Request id.
        id: String,
    },
    /// Approve a request (never your own); at the threshold it applies.
    Approve {
        /// Request id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject a request.
    Reject {
        /// Request id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Ask for time-boxed reveal or export access to the environment.
    Request {
        /// reveal or export.
        #[arg(value_parser = ["reveal", "export"])]
        kind: String,
        /// The secret you need (informational).
        #[arg(long, default_value = "")]
        key: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The break-glass review queue (unreviewed windows; --all for every one).
    Queue {
        /// Reviewed windows too.
        #[arg(long)]
        all: bool,
    },
    /// Review a break-glass window: accept or flag it.
    Review {
        /// Window id.
        id: String,
        /// accept or flag.
        #[arg(value_parser = ["accept", "flag"])]
        decision: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Show the environment's approval policy, or set it (org admins) with --actions.
    Policy {
        /// Actions that need approval: write, delete, rollback, reveal, export (comma-separated).
        #[arg(long, value_delimiter = ',')]
        actions: Vec<String>,
        /// Approvals needed (1-5).
        #[arg(long)]
        required: Option<i64>,
        /// A group whose members approve (default: org owners and admins).
        #[arg(long)]
        approver_group: Option<String>,
        /// Service accounts need approval to inject too.
        #[arg(long)]
        no_service_account_exemption: bool,
        /// Seconds a request waits before it expires (default 86400).
        #[arg(long)]
        request_ttl: Option<i64>,
        /// Seconds an approved reveal/export lasts (default 3600).
        #[arg(long)]
        grant_ttl: Option<i64>,
        /// Remove the policy.
        #[arg(long, conflicts_with = "actions")]
        remove: bool,
    },
}

fn seg(s: &str) -> String {
    s.replace(['/', '?', '#', '%'], "_")
}

fn line(r: &Value) -> String {
    let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
    format!(
        "{}  {:<11} {:<10} {}/{} {}  by {}  ({}/{} approvals)",
        s("id"),
        s("status"),
        s("kind"),
        s("project"),
        s("environment"),
        s("key"),
        s("author"),
        r["approvals"],
        r["required"]
    )
}

/// Run an approvals command.
pub(crate) async fn run(client: &Client, env: &Target, cmd: ApprovalsCmd) -> anyhow::Result<u8> {
    let org = seg(&env.org);
    let base = format!("/orgs/{org}/approvals");
    match cmd {
        ApprovalsCmd::List { status, output } => {
            let path = if status == "all" {
                base
            } else {
                format!("{base}?status={}", seg(&status))
            };
            let data = client.api(Method::GET, &path, None).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                for r in data.as_array().into_iter().flatten() {
                    println!("{}", line(r));
                }
            }
        }
        ApprovalsCmd::Show { id } => {
            let data = client.api(Method::GET, &format!("{base}/{}", seg(&id)), None).await?;
            println!("{}", serde_json::to_string_pretty(&data)?);
        }
        ApprovalsCmd::Approve { id, comment } | ApprovalsCmd::Reject { id, comment } if comment.len() > 1000 => {
            bail!("request {id}: --comment must be at most 1000 characters")
        }
        ApprovalsCmd::Approve { id, comment } => {
            let data = client
                .api(
                    Method::POST,
                    &format!("{base}/{}/approve", seg(&id)),
                    Some(&json!({ "comment": comment })),
                )
                .await?;
            println!("{}", line(&data));
        }
        ApprovalsCmd::Reject { id, comment } => {
            let data = client
                .api(
                    Method::POST,
                    &format!("{base}/{}/reject", seg(&id)),
                    Some(&json!({ "comment": comment })),
                )
                .await?;
            println!("{}", line(&data));
        }
        ApprovalsCmd::Request { kind, key, reason } => {
            let body = json!({ "project": env.project, "environment": env.env, "kind": kind,
                               "key": key, "reason": reason });
            let data = client.api(Method::POST, &base, Some(&body)).await?;
            let id = data["id"].as_str().unwrap_or("");
            println!("request {id} is pending approval");
            println!("follow it: coffer approvals show {id} --org {}", env.org);
        }
        ApprovalsCmd::Queue { all } => {
            let path = format!("/orgs/{org}/break-glass{}", if all { "?all=true" } else { "" });
            let data = client.api(Method::GET, &path, None).await?;
            for r in data.as_array().into_iter().flatten() {
                let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
                println!(
                    "{}  {:<10} {}/{}  by {}  at {}  reason: {}",
                    s("id"),
                    s("status"),
                    s("project"),
                    s("environment"),
                    s("author"),
                    s("created_at"),
                    s("reason")
                );
            }
        }
        ApprovalsCmd::Review { id, decision, comment } => {
            let data = client
                .api(
                    Method::POST,
                    &format!("/orgs/{org}/break-glass/{}/review", seg(&id)),
                    Some(&json!({ "decision": decision, "comment": comment })),
                )
                .await?;
            println!("break-glass {id}: {}", data["status"].as_str().unwrap_or(""));
        }
        ApprovalsCmd::Policy {
            actions,
            required,
            approver_group,
            no_service_account_exemption,
            request_ttl,
            grant_ttl,
            remove,
        } => {
            let path = format!("/orgs/{org}/approval-policies/{}/{}", seg(&env.project), seg(&env.env));
            let data = if remove {
                client.api(Method::DELETE, &path, None).await?;
                println!("{}/{}: no approval policy", env.project, env.env);
                return Ok(0);
            } else if actions.is_empty() {
                client.api(Method::GET, &path, None).await?
            } else {
                let body = json!({
                    "actions": actions,
                    "required": required,
                    "approver_group": approver_group,
                    "service_accounts_exempt": !no_service_account_exemption,
                    "request_ttl_s": request_ttl,
                    "grant_ttl_s": grant_ttl,
                });
                client.api(Method::PUT, &path, Some(&body)).await?
            };
            println!("{}", serde_json::to_string_pretty(&data)?);
        }
    }
    Ok(0)
}

/// `coffer break-glass --reason …`: open a time-boxed window on the
/// environment (audited, flagged, reviewed afterwards).
pub(crate) async fn break_glass(client: &Client, env: &Target, reason: &str) -> anyhow::Result<u8> {
    if reason.trim().is_empty() {
        bail!("--reason is required: say why you break the glass");
    }
    let path = format!(
        "/orgs/{}/projects/{}/environments/{}/break-glass",
        seg(&env.org),
        seg(&env.project),
        seg(&env.env)
    );
    let data = client
        .api(Method::POST, &path, Some(&json!({ "reason": reason })))
        .await?;
    println!(
        "break-glass {} open on {}/{}/{} until {}: act now; every action is audited and an approver reviews it",
        data["id"].as_str().unwrap_or(""),
        env.org,
        env.project,
        env.env,
        data["grant_until"].as_str().unwrap_or("")
    );
    Ok(0)
}

/// After a write, delete or rollback: whether the server made a change
/// request instead (HTTP 202), saying so and how to follow it.
pub(crate) fn pending_note(data: &Value, org: &str, what: &str) -> bool {
    let Some(id) = data.get("request_id").and_then(Value::as_str) else {
        return false;
    };
    println!("{what}: the environment is protected; change request {id} is pending approval");
    println!("follow it: coffer approvals show {id} --org {org}");
    true
}
