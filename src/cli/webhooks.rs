//! `coffer webhooks …`: an organization's signed webhooks (issue 17,
//! docs/webhooks.md): add (prints the signing secret once), list, remove,
//! and a hook's delivery log.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::access::{OrgArgs, seg};
use super::client::Client;

/// Webhooks commands (org admins; the organization is `--org`).
#[derive(Debug, Subcommand)]
pub(crate) enum WebhooksCmd {
    /// Add a webhook; prints its signing secret, shown this once.
    Add {
        /// http(s) URL the events are POSTed to.
        url: String,
        /// Events (comma-separated; default every one): approval.requested, approval.approved,
        /// approval.rejected, approval.applied, approval.stale, approval.expired,
        /// break_glass.used, break_glass.reviewed.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Body format: coffer (JSON) or slack ({"text": …}).
        #[arg(long, default_value = "coffer", value_parser = ["coffer", "slack"])]
        format: String,
    },
    /// List the organization's webhooks (no secrets).
    List,
    /// Remove a webhook; its pending deliveries are cancelled.
    Remove {
        /// Webhook id.
        id: String,
    },
    /// A webhook's recent deliveries with their status.
    Deliveries {
        /// Webhook id.
        id: String,
    },
}

/// Run a webhooks command.
pub(crate) async fn run(client: &Client, org: &OrgArgs, cmd: WebhooksCmd) -> anyhow::Result<u8> {
    let base = format!("/orgs/{}/webhooks", seg(&org.org));
    match cmd {
        WebhooksCmd::Add { url, events, format } => {
            let body = json!({ "url": url, "events": events, "format": format });
            let data = client.api(Method::POST, &base, Some(&body)).await?;
            println!(
                "webhook {} added: {}",
                data["id"].as_str().unwrap_or(""),
                data["url"].as_str().unwrap_or("")
            );
            println!("signing secret (shown once; keep it in the receiver):");
            println!("{}", data["secret"].as_str().unwrap_or(""));
        }
        WebhooksCmd::List => {
            let data = client.api(Method::GET, &base, None).await?;
            for w in data.as_array().into_iter().flatten() {
                let events: Vec<&str> = w["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.as_str())
                    .collect();
                println!(
                    "{}  {:<6} {}  events: {}",
                    w["id"].as_str().unwrap_or(""),
                    w["format"].as_str().unwrap_or(""),
                    w["url"].as_str().unwrap_or(""),
                    events.join(",")
                );
            }
        }
        WebhooksCmd::Remove { id } => {
            client
                .api(Method::DELETE, &format!("{base}/{}", seg(&id)), None)
                .await?;
            println!("webhook {id} removed");
        }
        WebhooksCmd::Deliveries { id } => {
            let data = client
                .api(Method::GET, &format!("{base}/{}/deliveries", seg(&id)), None)
                .await?;
            for d in data.as_array().into_iter().flatten() {
                println!(
                    "{}  {:<22} {:<9} attempts {}  last status {}  {}  {}",
                    d["id"].as_str().unwrap_or(""),
                    d["event"].as_str().unwrap_or(""),
                    d["status"].as_str().unwrap_or(""),
                    d["attempts"].as_i64().unwrap_or(0),
                    d["last_status"].as_i64().map_or("-".to_owned(), |s| s.to_string()),
                    d["created_at"].as_str().unwrap_or(""),
                    d["last_error"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(0)
}
