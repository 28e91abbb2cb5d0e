//! `coffer org create|list|show|rename|delete|restore|purge|breach-policy`, `coffer project …` (the same),
//! `coffer env create|list|show|update|delete|restore|purge`, `coffer user list|show`: the tenant tree (organizations, projects,
//! environments) over the native API (issue 23). Human text by default,
//! `--json` for the raw data.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::access::{OrgArgs, print_json, rows, seg, table, text, yes_no};
use super::client::Client;
use super::context::Target;

/// `coffer org create|list|show|rename` (flattened into `coffer org`).
#[derive(Debug, Subcommand)]
pub(crate) enum OrgLifecycleCmd {
    /// Create an organization (root, or a user, who becomes its owner) with its first KEK.
    Create {
        /// Its slug: 1-63 characters of a-z, 0-9 and '-'.
        slug: String,
        /// Display name (default: none).
        #[arg(long, default_value = "")]
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the organizations you belong to (root: all).
    List {
        /// List the deleted ones (restorable until PURGE AFTER) instead.
        #[arg(long)]
        deleted: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rename: a new slug and/or display name. The id stays, so members,
    /// grants, secrets with their history, keys and audit records stay with it.
    Rename {
        /// The current slug.
        slug: String,
        /// The new slug.
        new_slug: Option<String>,
        /// A new display name.
        #[arg(long)]
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one organization (default: --org).
    Show {
        /// Its slug.
        slug: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an organization and everything in it (owners and admins, root): hidden at once, restorable during the
    /// server's deletion window (7 days by default), then purged. Asks you
    /// to type the slug unless --yes is given.
    Delete(DeleteArgs),
    /// Restore a deleted organization inside the deletion window.
    Restore(RestoreArgs),
    /// Erase a deleted organization for good: every secret version's
    /// ciphertext and wrapped DEK, and its KEK versions
    /// (owners, root). Refused before the deletion window ends unless --now
    /// is given. Asks you to type the slug unless --yes is given.
    Purge(PurgeArgs),
    /// The leaked-password policy of --org: whether a `password` secret found
    /// in a public breach corpus is refused (--block) or written with a
    /// warning (--warn, the default). Without a flag, prints the current
    /// setting; setting it needs an owner or admin.
    BreachPolicy {
        /// Refuse breached passwords.
        #[arg(long, conflicts_with = "warn")]
        block: bool,
        /// Write breached passwords with a warning.
        #[arg(long)]
        warn: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `coffer project …`
#[derive(Debug, Subcommand)]
pub(crate) enum ProjectCmd {
    /// Create a project in the organization (org owners and admins).
    Create {
        /// Its slug: 1-63 characters of a-z, 0-9 and '-'.
        slug: String,
        /// Display name (default: none).
        #[arg(long, default_value = "")]
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the organization's projects.
    List {
        /// List the deleted ones (restorable until PURGE AFTER) instead.
        #[arg(long)]
        deleted: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rename: a new slug and/or display name. The id stays, so members,
    /// grants, secrets with their history, keys and audit records stay with it.
    Rename {
        /// The current slug.
        slug: String,
        /// The new slug.
        new_slug: Option<String>,
        /// A new display name.
        #[arg(long)]
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one project (default: --project).
    Show {
        /// Its slug.
        slug: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a project and its environments (org owners and admins): hidden at once, restorable during the
    /// server's deletion window (7 days by default), then purged. Asks you
    /// to type the slug unless --yes is given.
    Delete(DeleteArgs),
    /// Restore a deleted project inside the deletion window.
    Restore(RestoreArgs),
    /// Erase a deleted project for good: every secret version's
    /// ciphertext and wrapped DEK
    /// (owners, root). Refused before the deletion window ends unless --now
    /// is given. Asks you to type the slug unless --yes is given.
    Purge(PurgeArgs),
}

/// `coffer env …`
#[derive(Debug, Subcommand)]
pub(crate) enum EnvCmd {
    /// Create an environment in the project (org owners and admins).
    Create {
        /// Its slug: 1-63 characters of a-z, 0-9 and '-'.
        slug: String,
        /// Display name (default: none).
        #[arg(long, default_value = "")]
        name: String,
        /// A protected environment.
        #[arg(long)]
        protected: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the project's environments.
    List {
        /// List the deleted ones (restorable until PURGE AFTER) instead.
        #[arg(long)]
        deleted: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change an environment (its admins: org owners and admins, or a grant
    /// of every permission on it): its slug, display
    /// name or protection. The id stays, so grants and history stay.
    Update {
        /// Its current slug.
        slug: String,
        /// A new slug.
        #[arg(long = "slug", value_name = "NEW_SLUG")]
        new_slug: Option<String>,
        /// A new display name.
        #[arg(long)]
        name: Option<String>,
        /// Protected or not.
        #[arg(long, value_name = "true|false")]
        protected: Option<bool>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one environment (default: --env).
    Show {
        /// Its slug.
        slug: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an environment (org owners and admins): hidden at once, restorable during the
    /// server's deletion window (7 days by default), then purged. Asks you
    /// to type the slug unless --yes is given.
    Delete(DeleteArgs),
    /// Compare two environments of the project: keys only in A, only in B,
    /// in both with equal or different values (computed by the server;
    /// needs read on both). Values are shown only with --values, which
    /// needs reveal on both.
    Diff {
        /// The first environment.
        a: String,
        /// The second environment.
        b: String,
        /// Show the values too (reveal on both environments).
        #[arg(long)]
        values: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a deleted environment inside the deletion window.
    Restore(RestoreArgs),
    /// Erase a deleted environment for good: every secret version's
    /// ciphertext and wrapped DEK
    /// (owners, root). Refused before the deletion window ends unless --now
    /// is given. Asks you to type the slug unless --yes is given.
    Purge(PurgeArgs),
}

/// Run `coffer org create|list|show|rename`.
pub(crate) async fn org(client: &Client, org: &OrgArgs, cmd: OrgLifecycleCmd) -> anyhow::Result<u8> {
    match cmd {
        OrgLifecycleCmd::Create { slug, name, json } => {
            let data = client
                .api(Method::POST, "/orgs", Some(&json!({ "slug": slug, "name": name })))
                .await?;
            created(&data, json, || format!("Created organization {}.", text(&data["slug"])))
        }
        OrgLifecycleCmd::List { deleted: true, json } => deleted_listing(client, "/orgs", json).await,
        OrgLifecycleCmd::Delete(a) => lifecycle(client, "organization", "/orgs", a.into()).await,
        OrgLifecycleCmd::Restore(a) => lifecycle(client, "organization", "/orgs", a.into()).await,
        OrgLifecycleCmd::Purge(a) => lifecycle(client, "organization", "/orgs", a.into()).await,
        OrgLifecycleCmd::List { deleted: false, json } => {
            let data = client.api(Method::GET, "/orgs", None).await?;
            listing(&data, json, &["SLUG", "NAME", "CREATED"], |o| {
                vec![text(&o["slug"]), text(&o["name"]), text(&o["created_at"])]
            })
        }
        OrgLifecycleCmd::Rename {
            slug,
            new_slug,
            name,
            json,
        } => {
            let data = client
                .api(
                    Method::PATCH,
                    &format!("/orgs/{}", seg(&slug)),
                    Some(&rename_body(new_slug, name)?),
                )
                .await?;
            created(&data, json, || {
                format!("Renamed organization {slug} to {}.", text(&data["slug"]))
            })
        }
        OrgLifecycleCmd::BreachPolicy { block, warn, json } => {
            let path = format!("/orgs/{}/breach-policy", seg(&org.org));
            let data = if block || warn {
                let body = json!({ "block_breached_passwords": block });
                client.api(Method::PUT, &path, Some(&body)).await?
            } else {
                client.api(Method::GET, &path, None).await?
            };
            if json {
                print_json(&data)?;
                return Ok(0);
            }
            let mode = if data["block_breached_passwords"].as_bool() == Some(true) {
                "block (breached passwords are refused)"
            } else {
                "warn (breached passwords are written with a warning)"
            };
            println!("Breach policy of {}: {mode}", org.org);
            if data["check_enabled"].as_bool() == Some(false) {
                println!("Note: the leaked-password check is off on this server ([breach_check] enabled = false).");
            }
            Ok(0)
        }
        OrgLifecycleCmd::Show { slug, json } => {
            let slug = slug.unwrap_or_else(|| org.org.clone());
            let data = client.api(Method::GET, &format!("/orgs/{}", seg(&slug)), None).await?;
            shown(
                &data,
                json,
                &[("slug", "Slug"), ("name", "Name"), ("created_at", "Created")],
            )
        }
    }
}

/// Run `coffer project …` in `target`'s organization.
pub(crate) async fn project(client: &Client, target: &Target, cmd: ProjectCmd) -> anyhow::Result<u8> {
    let base = format!("/orgs/{}/projects", seg(&target.org));
    match cmd {
        ProjectCmd::Create { slug, name, json } => {
            let data = client
                .api(Method::POST, &base, Some(&json!({ "slug": slug, "name": name })))
                .await?;
            created(&data, json, || {
                format!("Created project {}/{}.", target.org, text(&data["slug"]))
            })
        }
        ProjectCmd::List { deleted: true, json } => deleted_listing(client, &base, json).await,
        ProjectCmd::Delete(a) => lifecycle(client, "project", &base, a.into()).await,
        ProjectCmd::Restore(a) => lifecycle(client, "project", &base, a.into()).await,
        ProjectCmd::Purge(a) => lifecycle(client, "project", &base, a.into()).await,
        ProjectCmd::List { deleted: false, json } => {
            let data = client.api(Method::GET, &base, None).await?;
            listing(&data, json, &["SLUG", "NAME", "CREATED"], |p| {
                vec![text(&p["slug"]), text(&p["name"]), text(&p["created_at"])]
            })
        }
        ProjectCmd::Rename {
            slug,
            new_slug,
            name,
            json,
        } => {
            let data = client
                .api(
                    Method::PATCH,
                    &format!("{base}/{}", seg(&slug)),
                    Some(&rename_body(new_slug, name)?),
                )
                .await?;
            created(&data, json, || {
                format!(
                    "Renamed project {}/{slug} to {}/{}.",
                    target.org,
                    target.org,
                    text(&data["slug"])
                )
            })
        }
        ProjectCmd::Show { slug, json } => {
            let slug = slug.unwrap_or_else(|| target.project.clone());
            let data = client.api(Method::GET, &format!("{base}/{}", seg(&slug)), None).await?;
            shown(
                &data,
                json,
                &[("slug", "Slug"), ("name", "Name"), ("created_at", "Created")],
            )
        }
    }
}

/// Run `coffer env …` in `target`'s project.
pub(crate) async fn env(client: &Client, target: &Target, cmd: EnvCmd) -> anyhow::Result<u8> {
    let base = format!(
        "/orgs/{}/projects/{}/environments",
        seg(&target.org),
        seg(&target.project)
    );
    match cmd {
        EnvCmd::Create {
            slug,
            name,
            protected,
            json,
        } => {
            let data = client
                .api(
                    Method::POST,
                    &base,
                    Some(&json!({ "slug": slug, "name": name, "protected": protected })),
                )
                .await?;
            created(&data, json, || {
                format!(
                    "Created environment {}/{}/{}{}.",
                    target.org,
                    target.project,
                    text(&data["slug"]),
                    if data["protected"].as_bool() == Some(true) {
                        " (protected)"
                    } else {
                        ""
                    }
                )
            })
        }
        EnvCmd::List { deleted: true, json } => deleted_listing(client, &base, json).await,
        EnvCmd::Diff { a, b, values, json } => diff(client, target, (&a, &b), values, json).await,
        EnvCmd::Delete(a) => lifecycle(client, "environment", &base, a.into()).await,
        EnvCmd::Restore(a) => lifecycle(client, "environment", &base, a.into()).await,
        EnvCmd::Purge(a) => lifecycle(client, "environment", &base, a.into()).await,
        EnvCmd::List { deleted: false, json } => {
            let data = client.api(Method::GET, &base, None).await?;
            listing(&data, json, &["SLUG", "NAME", "PROTECTED", "CREATED"], |e| {
                vec![
                    text(&e["slug"]),
                    text(&e["name"]),
                    yes_no(&e["protected"]),
                    text(&e["created_at"]),
                ]
            })
        }
        EnvCmd::Update {
            slug,
            new_slug,
            name,
            protected,
            json,
        } => {
            let mut body = json!({});
            if let Some(p) = protected {
                body["protected"] = Value::Bool(p);
            }
            if new_slug.is_some() || name.is_some() {
                body = merge(body, rename_body(new_slug, name)?);
            } else if protected.is_none() {
                anyhow::bail!("give --slug, --name, --protected, or several");
            }
            let data = client
                .api(Method::PATCH, &format!("{base}/{}", seg(&slug)), Some(&body))
                .await?;
            created(&data, json, || {
                format!(
                    "Updated environment {}/{}/{} (protected: {}).",
                    target.org,
                    target.project,
                    text(&data["slug"]),
                    yes_no(&data["protected"])
                )
            })
        }
        EnvCmd::Show { slug, json } => {
            let slug = slug.unwrap_or_else(|| target.env.clone());
            let data = client.api(Method::GET, &format!("{base}/{}", seg(&slug)), None).await?;
            shown(
                &data,
                json,
                &[
                    ("slug", "Slug"),
                    ("name", "Name"),
                    ("protected", "Protected"),
                    ("created_at", "Created"),
                ],
            )
        }
    }
}

/// Run `coffer env diff A B`.
async fn diff(client: &Client, target: &Target, (a, b): (&str, &str), values: bool, json: bool) -> anyhow::Result<u8> {
    let mut path = format!(
        "/orgs/{}/projects/{}/diff?a={}&b={}",
        seg(&target.org),
        seg(&target.project),
        seg(a),
        seg(b)
    );
    if values {
        path.push_str("&values=true");
    }
    let data = client.api(Method::GET, &path, None).await?;
    if json {
        print_json(&data)?;
        return Ok(0);
    }
    let status = |e: &Value| match e["status"].as_str() {
        Some("only_in_a") => format!("only in {a}"),
        Some("only_in_b") => format!("only in {b}"),
        Some("equal") => "equal".to_owned(),
        Some("differs") => "differs".to_owned(),
        _ => text(&e["status"]),
    };
    if values {
        let (ha, hb) = (a.to_uppercase(), b.to_uppercase());
        table(
            &["KEY", "STATUS", &ha, &hb],
            rows(&data["keys"], |e| {
                vec![text(&e["key"]), status(e), text(&e["a_value"]), text(&e["b_value"])]
            }),
        );
    } else {
        table(
            &["KEY", "STATUS"],
            rows(&data["keys"], |e| vec![text(&e["key"]), status(e)]),
        );
    }
    Ok(0)
}

/// `delete SLUG [--yes]`
#[derive(Debug, clap::Args)]
pub(crate) struct DeleteArgs {
    /// Its slug.
    slug: String,
    /// Do not ask.
    #[arg(long)]
    yes: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `restore SLUG`
#[derive(Debug, clap::Args)]
pub(crate) struct RestoreArgs {
    /// Its slug.
    slug: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `purge SLUG [--now] [--yes]`
#[derive(Debug, clap::Args)]
pub(crate) struct PurgeArgs {
    /// Its slug.
    slug: String,
    /// Purge before the deletion window ends.
    #[arg(long)]
    now: bool,
    /// Do not ask.
    #[arg(long)]
    yes: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A step of a deletion.
#[derive(Debug, Clone, Copy)]
enum Step {
    Delete,
    Restore,
    /// with `--now`
    Purge(bool),
}

/// One step asked for on the command line.
struct StepCall {
    step: Step,
    slug: String,
    /// do not ask for the slug
    yes: bool,
    json: bool,
}

impl From<DeleteArgs> for StepCall {
    fn from(a: DeleteArgs) -> Self {
        StepCall {
            step: Step::Delete,
            slug: a.slug,
            yes: a.yes,
            json: a.json,
        }
    }
}

impl From<RestoreArgs> for StepCall {
    fn from(a: RestoreArgs) -> Self {
        StepCall {
            step: Step::Restore,
            slug: a.slug,
            yes: true,
            json: a.json,
        }
    }
}

impl From<PurgeArgs> for StepCall {
    fn from(a: PurgeArgs) -> Self {
        StepCall {
            step: Step::Purge(a.now),
            slug: a.slug,
            yes: a.yes,
            json: a.json,
        }
    }
}

/// Delete, restore or purge the `kind` node `call.slug` under the API path
/// `parent`, asking for its slug first unless `--yes`.
async fn lifecycle(client: &Client, kind: &str, parent: &str, call: StepCall) -> anyhow::Result<u8> {
    let StepCall { step, slug, yes, json } = call;
    let slug = slug.as_str();
    let path = format!("{parent}/{}", seg(slug));
    let path = path.as_str();
    if !yes {
        let what = match step {
            Step::Delete => format!("delete {kind} {slug} (restorable during the deletion window)"),
            Step::Purge(_) => format!("erase {kind} {slug} and every secret version in it for good"),
            Step::Restore => String::new(),
        };
        confirm_slug(&what, slug)?;
    }
    let data = match step {
        Step::Delete => client.api(Method::DELETE, path, None).await?,
        Step::Restore => client.api(Method::POST, &format!("{path}/restore"), None).await?,
        Step::Purge(now) => {
            let query = if now { "?now=true" } else { "" };
            client
                .api(Method::DELETE, &format!("{path}/permanent{query}"), None)
                .await?
        }
    };
    created(&data, json, || match step {
        Step::Delete => format!(
            "Deleted {kind} {}; restorable until {} (coffer … restore {slug}), purged after.",
            text(&data["path"]),
            text(&data["purge_after"])
        ),
        Step::Restore => format!("Restored {kind} {}.", text(&data["path"])),
        Step::Purge(_) => format!(
            "Purged {kind} {}: {} secret versions, {} secrets, {} environments erased{}.",
            text(&data["path"]),
            data["versions"],
            data["secrets"],
            data["environments"],
            match data["kek_versions_destroyed"].as_array() {
                Some(v) if !v.is_empty() => format!("; {} KEK versions destroyed", v.len()),
                _ => String::new(),
            }
        ),
    })
}

/// Ask for the slug on the terminal (or the first line of stdin); anything
/// else cancels.
fn confirm_slug(what: &str, slug: &str) -> anyhow::Result<()> {
    eprint!("This will {what}.\nType {slug} to confirm: ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() != slug {
        anyhow::bail!("cancelled: the slug typed does not match {slug:?} (or pass --yes)");
    }
    Ok(())
}

/// The deleted nodes below `base` (`?deleted=true`).
async fn deleted_listing(client: &Client, base: &str, json: bool) -> anyhow::Result<u8> {
    let data = client.api(Method::GET, &format!("{base}?deleted=true"), None).await?;
    listing(&data, json, &["PATH", "NAME", "DELETED", "PURGE AFTER"], |n| {
        vec![
            text(&n["path"]),
            text(&n["name"]),
            text(&n["deleted_at"]),
            text(&n["purge_after"]),
        ]
    })
}

/// Run `coffer user list`.
pub(crate) async fn list_users(client: &Client, json: bool) -> anyhow::Result<()> {
    let data = client.api(Method::GET, "/users", None).await?;
    listing(&data, json, &["EMAIL", "DISABLED", "TOTP", "ORGS"], |u| {
        vec![
            text(&u["email"]),
            yes_no(&u["disabled"]),
            yes_no(&u["totp_enabled"]),
            orgs(&u["orgs"]),
        ]
    })?;
    Ok(())
}

/// Run `coffer user show EMAIL`.
pub(crate) async fn show_user(client: &Client, email: &str, json: bool) -> anyhow::Result<()> {
    let data = client.api(Method::GET, &format!("/users/{}", seg(email)), None).await?;
    if json {
        print_json(&data)?;
        return Ok(());
    }
    shown(
        &data,
        false,
        &[
            ("email", "Email"),
            ("disabled", "Disabled"),
            ("totp_enabled", "TOTP"),
            ("created_at", "Created"),
        ],
    )?;
    println!("Orgs      {}", orgs(&data["orgs"]));
    Ok(())
}

/// `{"acme": "owner"}` → `acme:owner`, or `-`.
fn orgs(v: &Value) -> String {
    let items: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(slug, role)| format!("{slug}:{}", text(role)))
        .collect();
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

/// The body of a rename: what is given of the new slug and name.
fn rename_body(slug: Option<String>, name: Option<String>) -> anyhow::Result<Value> {
    if slug.is_none() && name.is_none() {
        anyhow::bail!("give the new slug, --name, or both");
    }
    let mut body = json!({});
    if let Some(s) = slug {
        body["slug"] = Value::String(s);
    }
    if let Some(n) = name {
        body["name"] = Value::String(n);
    }
    Ok(body)
}

/// `a` with the fields of `b` added.
fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn created(data: &Value, json: bool, line: impl FnOnce() -> String) -> anyhow::Result<u8> {
    if json {
        print_json(data)?;
    } else {
        println!("{}", line());
    }
    Ok(0)
}

fn listing(data: &Value, json: bool, headers: &[&str], row: impl Fn(&Value) -> Vec<String>) -> anyhow::Result<u8> {
    if json {
        print_json(data)?;
    } else {
        table(headers, rows(data, row));
    }
    Ok(0)
}

/// One object as `Label   value` lines.
fn shown(data: &Value, json: bool, fields: &[(&str, &str)]) -> anyhow::Result<u8> {
    if json {
        print_json(data)?;
        return Ok(0);
    }
    let width = fields.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
    for (key, label) in fields {
        let value = match &data[*key] {
            Value::Bool(_) => yes_no(&data[*key]),
            v => text(v),
        };
        println!("{label:<width$}  {value}");
    }
    Ok(0)
}
