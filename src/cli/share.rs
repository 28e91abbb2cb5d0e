//! `coffer share …`: one-time share links (docs/share-links.md). The value
//! is encrypted here (`crypto::share`) under a random key that goes only
//! into the URL fragment; the server stores ciphertext it cannot read.
//! `open` fetches one view and decrypts it here. A passphrase is read from
//! a hidden prompt on a terminal, else from `COFFER_SHARE_PASSPHRASE`
//! (scripts, tests) — never from argv.

use std::io::{IsTerminal, Write};

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::client::{Client, ServerArgs};
use super::context::Target;
use crate::crypto::share;

/// Where a script puts the passphrase (a terminal gets a hidden prompt).
const PASSPHRASE_ENV: &str = "COFFER_SHARE_PASSPHRASE";

/// Share-link commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ShareCmd {
    /// Make a link to a value (read from stdin or a hidden prompt, or
    /// `--from KEY` of the current environment); prints the URL. The value
    /// is encrypted on this machine; the key is only in the URL's `#…`.
    Create {
        /// Share this secret of the current environment (needs reveal on it).
        #[arg(long, value_name = "KEY")]
        from: Option<String>,
        /// Lifetime: 90s, 30m, 1h, 7d (the organization's policy caps it).
        #[arg(long, default_value = "1h")]
        expires: String,
        /// How many times the link may be opened.
        #[arg(long, default_value_t = 1)]
        views: i64,
        /// Also require a passphrase (asked on the terminal, or
        /// COFFER_SHARE_PASSPHRASE); tell it to the recipient another way.
        #[arg(long)]
        passphrase: bool,
    },
    /// Open a link: print its value (uses one view). Asks for the
    /// passphrase when the link needs one.
    Open {
        /// The whole link, with its `#…` part.
        url: String,
    },
    /// My live links (metadata only).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a link by its handle (from `coffer share list`).
    Revoke {
        /// The link's handle.
        handle: String,
    },
    /// Show or change the organization's share-link policy (admins change it).
    Policy {
        /// Longest lifetime of a link: 30m, 1d, 7d…
        #[arg(long)]
        max_expires: Option<String>,
        /// Weakest role that may create links: member, admin or owner.
        #[arg(long)]
        min_role: Option<String>,
        /// Whether values from protected environments may be shared.
        #[arg(long)]
        allow_protected: Option<bool>,
    },
}

/// `90s`, `30m`, `1h`, `7d`, or plain seconds → seconds.
fn parse_duration(text: &str) -> anyhow::Result<i64> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("duration {text:?}: expected a number and s, m, h or d (e.g. 1h)"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("duration {text:?}: the unit must be s, m, h or d"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("duration {text:?} is too long"))
}

fn read_value() -> anyhow::Result<Zeroizing<String>> {
    super::secrets::read_hidden("Value to share (input hidden): ", "coffer share create")
}

/// The passphrase: a hidden prompt on a terminal (twice when `confirm`),
/// else COFFER_SHARE_PASSPHRASE.
fn read_passphrase(confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV)
        && !p.is_empty()
    {
        return Ok(Zeroizing::new(p));
    }
    if !std::io::stdin().is_terminal() && !confirm {
        bail!("this link needs a passphrase: run on a terminal to be asked, or set {PASSPHRASE_ENV}");
    }
    let p = Zeroizing::new(
        rpassword::prompt_password("Passphrase (input hidden): ").context("cannot read the passphrase")?,
    );
    if p.is_empty() {
        bail!("the passphrase is empty");
    }
    if confirm {
        let again =
            Zeroizing::new(rpassword::prompt_password("Passphrase again: ").context("cannot read the passphrase")?);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(p.as_bytes(), again.as_bytes())) {
            bail!("the two passphrases differ");
        }
    }
    Ok(p)
}

/// Run a share command. `server` is needed by `open` (the link names its server).
pub(crate) async fn run(server: &ServerArgs, target: Option<&Target>, cmd: ShareCmd) -> anyhow::Result<u8> {
    match cmd {
        ShareCmd::Open { url } => open(server, &url).await,
        ShareCmd::Create {
            from,
            expires,
            views,
            passphrase,
        } => {
            let client = Client::new(server)?;
            let t = target.context("no organization")?;
            let expires_in = parse_duration(&expires)?;
            let value = match &from {
                Some(key) => {
                    let path = format!(
                        "/orgs/{}/projects/{}/environments/{}/secrets/{}?reveal=true",
                        t.org, t.project, t.env, key
                    );
                    let mut data = client.api(Method::GET, &path, None).await?;
                    data.get_mut("value")
                        .map(Value::take)
                        .and_then(|v| match v {
                            Value::String(s) => Some(Zeroizing::new(s)),
                            _ => None,
                        })
                        .with_context(|| format!("secret {key} has no value to share"))?
                }
                None => {
                    client.require_token()?;
                    read_value()?
                }
            };
            let pass = if passphrase { Some(read_passphrase(true)?) } else { None };
            let sealed = share::seal(value.as_bytes(), pass.as_deref().map(|p| p.as_str()))?;
            let mut body = json!({
                "ciphertext": base64::engine::general_purpose::STANDARD.encode(&sealed.ciphertext),
                "kdf": sealed.kdf,
                "expires_in": expires_in,
                "max_views": views,
            });
            if let Some(key) = &from {
                body["from"] = json!({ "project": t.project, "env": t.env, "key": key });
            }
            let created = client
                .api(Method::POST, &format!("/orgs/{}/shares", t.org), Some(&body))
                .await?;
            let id = created
                .get("id")
                .and_then(Value::as_str)
                .context("the server sent no link id")?;
            let handle = created.get("handle").and_then(Value::as_str).unwrap_or("");
            let expires_at = created.get("expires_at").and_then(Value::as_str).unwrap_or("");
            let url = Zeroizing::new(format!("{}/s/{}#{}", client.base(), id, sealed.fragment.as_str()));
            println!("{}", url.as_str());
            eprintln!(
                "opens {views} time(s), until {expires_at}; handle {handle} (coffer share revoke {handle}){}",
                if passphrase {
                    "; tell the recipient the passphrase another way"
                } else {
                    ""
                }
            );
            Ok(0)
        }
        ShareCmd::List { json } => {
            let client = Client::new(server)?;
            let links = client.api(Method::GET, "/shares", None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&links)?);
                return Ok(0);
            }
            let rows = links.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                println!("no live share links");
                return Ok(0);
            }
            println!(
                "{:<36}  {:<12}  {:<24}  {:>5}  EXPIRES",
                "HANDLE", "ORG", "FROM", "VIEWS"
            );
            for l in rows {
                let s = |k: &str| l.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                let n = |k: &str| l.get(k).and_then(Value::as_i64).unwrap_or(0);
                let from = s("source");
                println!(
                    "{:<36}  {:<12}  {:<24}  {:>5}  {}{}",
                    s("handle"),
                    s("org"),
                    if from.is_empty() { "-".to_owned() } else { from },
                    format!("{}/{}", n("views_left"), n("max_views")),
                    s("expires_at"),
                    if l.get("passphrase").and_then(Value::as_bool) == Some(true) {
                        "  (passphrase)"
                    } else {
                        ""
                    }
                );
            }
            Ok(0)
        }
        ShareCmd::Revoke { handle } => {
            let client = Client::new(server)?;
            client.api(Method::DELETE, &format!("/shares/{handle}"), None).await?;
            println!("revoked {handle}");
            Ok(0)
        }
        ShareCmd::Policy {
            max_expires,
            min_role,
            allow_protected,
        } => {
            let client = Client::new(server)?;
            let t = target.context("no organization")?;
            let path = format!("/orgs/{}/share-policy", t.org);
            let policy = if max_expires.is_none() && min_role.is_none() && allow_protected.is_none() {
                client.api(Method::GET, &path, None).await?
            } else {
                let mut body = json!({});
                if let Some(m) = &max_expires {
                    body["max_expiry"] = json!(parse_duration(m)?);
                }
                if let Some(r) = &min_role {
                    body["min_role"] = json!(r);
                }
                if let Some(a) = allow_protected {
                    body["allow_protected"] = json!(a);
                }
                client.api(Method::PUT, &path, Some(&body)).await?
            };
            println!("{}", serde_json::to_string_pretty(&policy)?);
            Ok(0)
        }
    }
}

/// `coffer share open URL`: the link's own server, one view, decrypted here.
async fn open(server: &ServerArgs, url: &str) -> anyhow::Result<u8> {
    let (base, fragment) = url
        .split_once('#')
        .context("the link has no key (the part after #): ask for the whole link")?;
    let parsed = reqwest::Url::parse(base).context("not a link: expected https://HOST/s/ID#…")?;
    let id = parsed
        .path()
        .strip_prefix("/s/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .context("not a share link: expected a path /s/ID")?
        .to_owned();
    let origin = parsed.origin().ascii_serialization();
    let fragment = share::parse_fragment(fragment)?;
    // The passphrase first: a failed prompt must not use up the view.
    let pass = if fragment.passphrase {
        Some(read_passphrase(false)?)
    } else {
        None
    };
    let args = ServerArgs {
        address: Some(origin),
        ca_cert: server.ca_cert.clone(),
        client_cert: None,
        client_key: None,
        pin: server.pin.clone(),
    };
    let client = Client::anonymous(&args)?;
    let (status, _, json) = client
        .api_raw(Method::POST, "/shares/open", Some(&json!({ "id": id })))
        .await?;
    if status == reqwest::StatusCode::NOT_FOUND {
        bail!("this link was already opened, has expired, or never existed");
    }
    if !status.is_success() {
        bail!("{} ({})", super::client::error_message(&json), status.as_u16());
    }
    let data = json.get("data").context("the server sent no data")?;
    let ct = data
        .get("ciphertext")
        .and_then(Value::as_str)
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .context("the server sent no ciphertext")?;
    let kdf = data
        .get("kdf")
        .and_then(Value::as_str)
        .context("the server sent no kdf")?;
    let value = share::open(&fragment, kdf, pass.as_deref().map(|p| p.as_str()), &ct)
        .map_err(|e| anyhow::anyhow!("{e} (this view is used)"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&value).context("cannot write the value")?;
    if std::io::stdout().is_terminal() {
        out.write_all(b"\n").ok();
    }
    out.flush().ok();
    Ok(0)
}
