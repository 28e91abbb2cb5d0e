//! `coffer login|logout|whoami|user …`: who the CLI acts as.
//!
//! `login` gets a session from the server (RFC 8628 device flow by default,
//! or email + password [+ TOTP]) and stores it with `credentials`; every
//! later command uses it unless `COFFER_TOKEN` is set. Passwords come from a
//! hidden prompt on a terminal or from stdin (one per line), never argv, so
//! they stay out of shell history and `ps`.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use zeroize::{Zeroize, Zeroizing};

use super::access::seg;
use super::client::{Client, ServerArgs, error_message};
use super::credentials::{Entry, Store};

/// `coffer login` options.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// Log in with this email and a password (hidden prompt, or the first
    /// line of stdin) instead of approving from another session.
    #[arg(long, value_name = "EMAIL")]
    email: Option<String>,
    /// The current TOTP code, when the account has two-factor login
    /// (prompted for, or read from the second line of stdin, when omitted).
    #[arg(long, value_name = "CODE", requires = "email")]
    totp: Option<String>,
    /// Log in with a CI job's OIDC ID token (JWT) through a JWT role
    /// (docs/jwt-auth.md); `-` reads it from stdin.
    #[arg(long, value_name = "ID_TOKEN", conflicts_with_all = ["email", "sso"], requires = "role")]
    jwt: Option<String>,
    /// The JWT role to log in with.
    #[arg(long, requires = "jwt")]
    role: Option<String>,
    /// Sign in with the organization's identity provider (single sign-on):
    /// a browser on this host opens on it (a loopback redirect, RFC 8252);
    /// without a display, the device flow (sign in with SSO on the page it
    /// names, then approve).
    #[arg(long, requires = "org", conflicts_with = "email")]
    sso: bool,
    /// The organization: with `--sso`, the one to sign in to; with
    /// `--jwt`, the role's (default: the only one with a role of that name).
    #[arg(long, value_name = "ORG")]
    org: Option<String>,
    /// With `--sso`: print the sign-in URL instead of opening a browser,
    /// and wait on the loopback redirect all the same.
    #[arg(long, requires = "sso")]
    no_browser: bool,
    #[command(subcommand)]
    cmd: Option<LoginCmd>,
}

/// `coffer login` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum LoginCmd {
    /// Approve another device's `coffer login` (from a logged-in session).
    Approve {
        /// The code the other device shows, e.g. ABCD-EFGH.
        user_code: String,
    },
}

/// `coffer user …`
#[derive(Debug, Subcommand)]
pub(crate) enum UserCmd {
    /// Create a user (root only); the password is read from a hidden prompt
    /// (twice) or from the first line of stdin.
    Create {
        /// The user's email, their login name.
        email: String,
    },
    /// List users (root: all, with every membership; an org owner or
    /// admin: the members of their organizations).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one user: status, two-factor login, organizations and roles.
    Show {
        /// The user's email.
        email: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Two-factor login with TOTP (RFC 6238) for the logged-in user.
    Totp {
        #[command(subcommand)]
        cmd: TotpCmd,
    },
    /// End every session of a user at once: each token, every token derived
    /// from one, the refresh tokens (root; the user themself; the owner of
    /// the user's only organizations).
    RevokeSessions {
        /// The user's email (default: yourself).
        email: Option<String>,
    },
    /// Change your password: the old one, then the new one (hidden prompts,
    /// or the first lines of stdin). Ends your other sessions.
    Passwd,
    /// Turn a user's TOTP off and drop their recovery codes, for a lost
    /// authenticator (root, or the owner of the user's only organizations).
    TotpReset {
        /// The user's email.
        email: String,
    },
    /// Disable a user: every token dies at once; no login until enabled.
    Disable {
        /// The user's email.
        email: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user's email.
        email: String,
    },
    /// Delete a user with their memberships, grants and sessions (root).
    Delete {
        /// The user's email.
        email: String,
    },
}

/// `coffer user totp …`
#[derive(Debug, Subcommand)]
pub(crate) enum TotpCmd {
    /// Start enrolling: prints the secret and the otpauth URI for an
    /// authenticator app. Not required at login until verified.
    Enroll,
    /// Confirm enrollment with a current code; prints the recovery codes, once.
    Verify {
        /// The 6-digit code the authenticator app shows now.
        code: String,
    },
}

/// Run `coffer login …`.
pub(crate) async fn login(server: &ServerArgs, args: LoginArgs) -> anyhow::Result<u8> {
    if let Some(jwt) = args.jwt {
        if args.cmd.is_some() {
            bail!("`coffer login approve` takes no --jwt");
        }
        let anon = Client::anonymous(server)?;
        let session = jwt_login(&anon, jwt, args.role.as_deref().unwrap_or(""), args.org.as_deref()).await?;
        return finish_login(server, &anon, &session).await;
    }
    if let (true, Some(org)) = (args.sso, args.org.as_deref()) {
        if args.cmd.is_some() {
            bail!("`coffer login approve` takes no --sso");
        }
        let anon = Client::anonymous(server)?;
        let session = if args.no_browser || super::sso::has_browser() {
            super::sso::loopback_login(&anon, org, !args.no_browser).await?
        } else {
            eprintln!(
                "No browser on this host: open the page below on any device, sign in there with \"Sign in with\" \
                 (organization {org}) and approve this login."
            );
            device_login(&anon).await?
        };
        return finish_login(server, &anon, &session).await;
    }
    if args.org.is_some() {
        bail!("--org goes with --sso or --jwt");
    }
    match (args.cmd, args.email) {
        (Some(_), Some(_)) => bail!("`coffer login approve` takes no --email"),
        (Some(LoginCmd::Approve { user_code }), None) => approve(&Client::new(server)?, &user_code).await,
        (None, Some(email)) => {
            let anon = Client::anonymous(server)?;
            let session = password_login(&anon, &email, args.totp.as_deref()).await?;
            finish_login(server, &anon, &session).await
        }
        (None, None) => {
            let anon = Client::anonymous(server)?;
            let session = device_login(&anon).await?;
            finish_login(server, &anon, &session).await
        }
    }
}

/// `POST /auth/login`, asking for a second factor when the server wants one.
async fn password_login(anon: &Client, email: &str, totp: Option<&str>) -> anyhow::Result<Value> {
    let password = read_secret(&format!("Password for {email} (input hidden): "), "the password")?
        .with_context(|| format!("no password given; type it at the prompt or pipe it in on stdin, e.g. `coffer login --email {email} < password-file`"))?;
    let mut body = json!({ "email": email, "password": password.as_str() });
    if let Some(code) = totp {
        set_second_factor(&mut body, code);
    }
    let result = async {
        let (status, code, reply) = anon.api_raw(Method::POST, "/auth/login", Some(&body)).await?;
        if status.is_success() {
            return Ok(reply);
        }
        if code.as_deref() != Some("totp_required") || totp.is_some() {
            bail!("login failed: {} ({})", error_message(&reply), status.as_u16());
        }
        let second = read_line(
            "TOTP code (or a recovery code): ",
            "this account requires a TOTP code: pass --totp CODE, or put the code on the second line of stdin",
        )?;
        set_second_factor(&mut body, &second);
        let (status, _, reply) = anon.api_raw(Method::POST, "/auth/login", Some(&body)).await?;
        if !status.is_success() {
            bail!("login failed: {} ({})", error_message(&reply), status.as_u16());
        }
        Ok(reply)
    }
    .await;
    // Clear intermediates: the request body held the password.
    if let Some(Value::String(p)) = body.get_mut("password") {
        p.zeroize();
    }
    Ok(result?["data"].take())
}

/// `POST /auth/jwt/login`: a CI job's ID token for a service-account token.
async fn jwt_login(anon: &Client, jwt: String, role: &str, org: Option<&str>) -> anyhow::Result<Value> {
    let jwt = Zeroizing::new(jwt);
    let jwt = if jwt.as_str() == "-" {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the ID token from stdin")?;
        Zeroizing::new(line.trim().to_owned())
    } else {
        jwt
    };
    if jwt.is_empty() {
        bail!("--jwt is empty: is the CI job's ID token variable set?");
    }
    let mut body = json!({ "role": role, "jwt": jwt.as_str(), "org": org });
    let result = anon.api_raw(Method::POST, "/auth/jwt/login", Some(&body)).await;
    scrub_field(&mut body, "jwt");
    let (status, _, mut reply) = result?;
    if !status.is_success() {
        bail!("JWT login failed: {} ({})", error_message(&reply), status.as_u16());
    }
    Ok(reply["data"].take())
}

/// Wipe a string field of a request body.
fn scrub_field(body: &mut Value, field: &str) {
    if let Some(Value::String(p)) = body.get_mut(field) {
        p.zeroize();
    }
}

/// A code with dashes is a recovery code (`xxxx-xxxx-xxxx`), else a TOTP code.
fn set_second_factor(body: &mut Value, code: &str) {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.contains('-') {
        body["recovery_code"] = Value::String(code);
    } else {
        body["totp"] = Value::String(code);
    }
}

/// RFC 8628: get a device code, show the user code, poll until approved.
async fn device_login(anon: &Client) -> anyhow::Result<Value> {
    let (status, _, reply) = anon.api_raw(Method::POST, "/auth/device/code", None).await?;
    if !status.is_success() {
        bail!(
            "cannot start a device login: {} ({})",
            error_message(&reply),
            status.as_u16()
        );
    }
    let d = &reply["data"];
    let (Some(device_code), Some(user_code)) = (d["device_code"].as_str(), d["user_code"].as_str()) else {
        bail!("the server's device code answer lacks device_code or user_code: {d}");
    };
    let device_code = Zeroizing::new(device_code.to_owned());
    let uri = d["verification_uri"].as_str().unwrap_or("");
    let expires_in = d["expires_in"].as_u64().unwrap_or(600);
    // RFC 8628 §3.2: 5 s when the server names no interval.
    let mut interval = d["interval"].as_u64().unwrap_or(5).max(1);
    eprintln!("Approve this login: coffer login approve {user_code}, or the web page later ({uri}).");
    eprintln!(
        "Run that from a session that is already logged in. The code expires in {} min.",
        expires_in.div_ceil(60)
    );
    let tty = std::io::stderr().is_terminal();
    if !tty {
        eprintln!("Waiting for approval…");
    }
    let deadline = Instant::now() + Duration::from_secs(expires_in);
    let body = json!({ "device_code": device_code.as_str() });
    let mut network_errors = 0u32;
    loop {
        if tty {
            let left = deadline.saturating_duration_since(Instant::now()).as_secs();
            eprint!("\rWaiting for approval… {:>2}:{:02} left ", left / 60, left % 60);
            let _ = std::io::stderr().flush();
        }
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let (status, code, reply) = match anon.api_raw(Method::POST, "/auth/device/token", Some(&body)).await {
            Ok(answer) => {
                network_errors = 0;
                answer
            }
            // A blip (server restart, Wi-Fi) should not lose the login: keep
            // polling, and give up after a few failures in a row.
            Err(e) if network_errors < 3 && Instant::now() < deadline => {
                network_errors += 1;
                end_progress(tty);
                eprintln!("warning: {e:#}; retrying");
                continue;
            }
            Err(e) => {
                end_progress(tty);
                return Err(e);
            }
        };
        if status.is_success() {
            if tty {
                eprintln!("\rApproved.{:30}", "");
            }
            return Ok(reply["data"].clone());
        }
        match code.as_deref() {
            Some("authorization_pending") => {}
            // RFC 8628 §3.5: slow down by 5 s, for this and every later poll.
            Some("slow_down" | "rate_limited") => interval += 5,
            Some("expired_token") => {
                end_progress(tty);
                bail!("the login code {user_code} expired before it was approved; run `coffer login` again");
            }
            Some("access_denied") => {
                end_progress(tty);
                bail!("the login was denied");
            }
            _ => {
                end_progress(tty);
                bail!("device login failed: {} ({})", error_message(&reply), status.as_u16());
            }
        }
        if Instant::now() >= deadline {
            end_progress(tty);
            bail!("the login code {user_code} expired before it was approved; run `coffer login` again");
        }
    }
}

fn end_progress(tty: bool) {
    if tty {
        eprintln!();
    }
}

/// Store the session, then say who we are now.
async fn finish_login(server: &ServerArgs, anon: &Client, session: &Value) -> anyhow::Result<u8> {
    let entry = Entry::from_session(anon.base(), session)?;
    let store = Store::locate()?;
    let lock = store.lock()?;
    let previous = store.get(anon.base())?;
    store.put(&lock, entry)?;
    drop(lock);
    if let Some(old) = previous {
        // The replaced session would otherwise stay valid (its refresh token
        // for 30 days) with no copy left to log it out: end it now, best effort.
        anon.revoke_session(&old.access_token).await;
    }
    let me = Client::stored_login(server)?
        .api(Method::GET, "/auth/whoami", None)
        .await;
    match me {
        Ok(me) => println!(
            "Logged in to {} as {} ({}).",
            anon.base(),
            me["name"].as_str().unwrap_or("?"),
            me["kind"].as_str().unwrap_or("?")
        ),
        Err(e) => {
            println!("Logged in to {}.", anon.base());
            eprintln!("warning: cannot confirm the new session: {e:#}");
        }
    }
    eprintln!(
        "The session is stored in {} (plaintext, readable only by you).",
        store.path().display()
    );
    if Client::env_token_set() {
        eprintln!("note: COFFER_TOKEN is set and takes precedence over this login; unset it to use the login.");
    }
    Ok(0)
}

/// `coffer login approve CODE`: a login younger than 5 minutes approves
/// alone; otherwise the server asks for the password (and the TOTP code
/// when two-factor login is on), read from a hidden prompt or stdin.
async fn approve(client: &Client, user_code: &str) -> anyhow::Result<u8> {
    client.require_token()?;
    let user_code = user_code.trim().to_ascii_uppercase();
    let mut body = json!({ "user_code": user_code });
    let result = reauthenticated(client, "/auth/device/approve", &mut body).await;
    scrub(&mut body);
    result.context("cannot approve the login")?;
    println!("Approved {user_code}: that device is now logged in as you.");
    Ok(0)
}

/// POST `body` to `path`; when the server answers `password_required` or
/// `totp_required`, ask for what it wants and send again.
async fn reauthenticated(client: &Client, path: &str, body: &mut Value) -> anyhow::Result<Value> {
    for _ in 0..3 {
        let (status, code, reply) = client.api_raw(Method::POST, path, Some(body)).await?;
        if status.is_success() {
            return Ok(reply["data"].clone());
        }
        match code.as_deref() {
            Some("password_required") if body.get("password").is_none() => {
                let password = read_secret("Your password (input hidden): ", "the password")?
                    .context("no password given; type it at the prompt or pipe it in on stdin")?;
                body["password"] = Value::String(password.as_str().to_owned());
            }
            Some("totp_required") if body.get("totp").is_none() => {
                let code = read_line(
                    "TOTP code: ",
                    "this account requires a TOTP code: put it on the line after the password on stdin",
                )?;
                body["totp"] = Value::String(code);
            }
            _ => bail!("{} ({})", error_message(&reply), status.as_u16()),
        }
    }
    bail!("the server kept asking to authenticate again")
}

/// Overwrite the password fields of a request body.
fn scrub(body: &mut Value) {
    for key in ["password", "old_password", "new_password"] {
        if let Some(Value::String(p)) = body.get_mut(key) {
            p.zeroize();
        }
    }
}

/// Run `coffer logout`: revoke the stored session on the server (a failure
/// to reach it is only a warning) and delete it here.
pub(crate) async fn logout(server: &ServerArgs) -> anyhow::Result<u8> {
    let client = Client::stored_login(server)?;
    let store = Store::locate()?;
    if store.get(client.base())?.is_none() {
        println!("Not logged in to {}: nothing stored.", client.base());
    } else {
        if let Err(e) = client.api(Method::POST, "/auth/logout", None).await {
            eprintln!("warning: the server did not confirm the logout ({e:#}); deleting the stored login anyway");
        }
        let lock = store.lock()?;
        store.remove(&lock, client.base())?;
        println!("Logged out of {}.", client.base());
    }
    if Client::env_token_set() {
        eprintln!("note: COFFER_TOKEN is still set; logout neither revokes nor unsets it.");
    }
    Ok(0)
}

/// Run `coffer whoami`.
pub(crate) async fn whoami(client: &Client, json: bool) -> anyhow::Result<u8> {
    let me = client.api(Method::GET, "/auth/whoami", None).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&me)?);
        return Ok(0);
    }
    let text = |v: &Value, none: &str| v.as_str().map_or_else(|| none.to_owned(), str::to_owned);
    println!("Kind         {}", text(&me["kind"], "?"));
    println!("Name         {}", text(&me["name"], "?"));
    println!("Org          {}", text(&me["org"], "-"));
    println!("Accessor     {}", text(&me["accessor"], "?"));
    println!("Expires      {}", text(&me["expires_at"], "never"));
    if me["certificate_bound"].as_bool() == Some(true) {
        println!("Bound to     this client certificate");
    }
    let source = if Client::env_token_set() {
        "COFFER_TOKEN".to_owned()
    } else {
        format!("stored login ({})", Store::locate()?.path().display())
    };
    println!("Token from   {source}");
    Ok(0)
}

/// Run `coffer user …`.
pub(crate) async fn user(client: &Client, cmd: UserCmd) -> anyhow::Result<u8> {
    match cmd {
        UserCmd::Create { email } => {
            client.require_token()?;
            let password = new_password(&email)?;
            let mut body = json!({ "email": email, "password": password.as_str() });
            let result = client.api(Method::POST, "/users", Some(&body)).await;
            if let Some(Value::String(p)) = body.get_mut("password") {
                p.zeroize();
            }
            let data = result?;
            println!(
                "Created user {} ({}). Add them to an organization with `coffer org members add {} --role member`.",
                data["email"].as_str().unwrap_or(&email),
                data["id"].as_str().unwrap_or("?"),
                data["email"].as_str().unwrap_or(&email),
            );
        }
        UserCmd::List { json } => super::tenants::list_users(client, json).await?,
        UserCmd::Show { email, json } => super::tenants::show_user(client, &email, json).await?,
        UserCmd::Totp { cmd: TotpCmd::Enroll } => {
            client.require_token()?;
            let mut body = json!({});
            let result = reauthenticated(client, "/auth/totp/enroll", &mut body).await;
            scrub(&mut body);
            let data = result?;
            println!("Secret        {}", data["secret"].as_str().unwrap_or(""));
            println!("otpauth URI   {}", data["otpauth_uri"].as_str().unwrap_or(""));
            eprintln!(
                "Add the secret (or the URI, as a QR code) to an authenticator app, then confirm with \
                 `coffer user totp verify CODE`. Login does not ask for a code until then."
            );
        }
        UserCmd::Totp {
            cmd: TotpCmd::Verify { code },
        } => {
            let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            let data = client
                .api(Method::POST, "/auth/totp/verify", Some(&json!({ "code": code })))
                .await?;
            eprintln!("TOTP is now required at every login.");
            eprintln!(
                "WARNING: store these recovery codes somewhere safe now. Each works once in place of a TOTP \
                 code, and they will not be shown again:"
            );
            for c in data["recovery_codes"].as_array().into_iter().flatten() {
                println!("{}", c.as_str().unwrap_or(""));
            }
        }
        UserCmd::RevokeSessions { email } => {
            let email = match email {
                Some(e) => e,
                None => {
                    let me = client.api(Method::GET, "/auth/whoami", None).await?;
                    match me["kind"].as_str() {
                        Some("user") => me["name"].as_str().unwrap_or_default().to_owned(),
                        _ => bail!("name the user: `coffer user revoke-sessions EMAIL`"),
                    }
                }
            };
            let data = client
                .api(
                    Method::POST,
                    &format!("/users/{}/revoke-sessions", seg(&email)),
                    Some(&json!({})),
                )
                .await?;
            println!(
                "Ended every session of {email}: {} token(s) revoked.",
                data["revoked_tokens"].as_u64().unwrap_or(0)
            );
        }
        UserCmd::Passwd => {
            client.require_token()?;
            let old = read_secret("Current password (input hidden): ", "the current password")?
                .context("no current password given; type it at the prompt or pipe it in on stdin")?;
            let new = new_password("your account")?;
            let mut body = json!({ "old_password": old.as_str(), "new_password": new.as_str() });
            let result = client.api(Method::POST, "/auth/password", Some(&body)).await;
            scrub(&mut body);
            let data = result?;
            println!(
                "Password changed; {} token(s) of your other sessions revoked.",
                data["revoked_tokens"].as_u64().unwrap_or(0)
            );
        }
        UserCmd::TotpReset { email } => {
            client
                .api(Method::DELETE, &format!("/users/{}/totp", seg(&email)), None)
                .await?;
            println!("TOTP of {email} is off and their recovery codes are gone; they can enroll again.");
        }
        UserCmd::Disable { email } => {
            client
                .api(
                    Method::POST,
                    &format!("/users/{}/disable", seg(&email)),
                    Some(&json!({})),
                )
                .await?;
            println!("Disabled {email}: every token of theirs is revoked; they cannot log in.");
        }
        UserCmd::Enable { email } => {
            client
                .api(
                    Method::POST,
                    &format!("/users/{}/enable", seg(&email)),
                    Some(&json!({})),
                )
                .await?;
            println!("Enabled {email}: they can log in again.");
        }
        UserCmd::Delete { email } => {
            client
                .api(Method::DELETE, &format!("/users/{}", seg(&email)), None)
                .await?;
            println!("Deleted {email} with their memberships, grants and sessions.");
        }
    }
    Ok(0)
}

/// A new password: asked twice at a hidden prompt, or the first line of stdin.
fn new_password(email: &str) -> anyhow::Result<Zeroizing<String>> {
    let missing = || format!("no password given for {email}; type it at the prompt or pipe it in on stdin");
    if !std::io::stdin().is_terminal() {
        return read_secret("", "the password")?.with_context(missing);
    }
    let first =
        read_secret(&format!("Password for {email} (input hidden): "), "the password")?.with_context(missing)?;
    let second = read_secret("Repeat the password: ", "the password")?.with_context(missing)?;
    if first != second {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

/// A secret: a hidden prompt on a terminal, else the next line of stdin
/// (without its line ending; other whitespace is part of the secret).
/// `None` when nothing was given.
fn read_secret(prompt: &str, what: &str) -> anyhow::Result<Option<Zeroizing<String>>> {
    let value = if std::io::stdin().is_terminal() {
        Zeroizing::new(rpassword::prompt_password(prompt).with_context(|| format!("cannot read {what}"))?)
    } else {
        match stdin_line().with_context(|| format!("cannot read {what} from stdin"))? {
            Some(v) => v,
            None => return Ok(None),
        }
    };
    Ok(Some(value).filter(|v| !v.is_empty()))
}

/// A short visible answer (a TOTP code): a prompt on a terminal, else the
/// next line of stdin; `missing` is the error when there is none.
fn read_line(prompt: &str, missing: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    let line = stdin_line().context("cannot read from stdin")?;
    match line.as_deref().map(|l| l.trim()) {
        Some(l) if !l.is_empty() => Ok(l.to_owned()),
        _ => bail!("{missing}"),
    }
}

/// One line of stdin without `\n`/`\r\n`; `None` at end of input. Later
/// calls read later lines (stdin's buffer is shared by the process).
fn stdin_line() -> std::io::Result<Option<Zeroizing<String>>> {
    let mut line = Zeroizing::new(String::new());
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        return Ok(None);
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(Some(line))
}
