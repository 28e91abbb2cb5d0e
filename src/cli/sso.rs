//! `coffer login --sso --org ORG`: single sign-on from the CLI (issue 20,
//! docs/sso.md).
//!
//! With a browser (RFC 8252, "OAuth 2.0 for Native Apps"): listen on
//! `127.0.0.1` on a random port, ask the server for the provider's
//! authorization URL with the loopback redirect URI and a fresh client
//! nonce, open the browser on it (or, with `--no-browser`, print it), take
//! the one redirect the provider sends back, and hand code, state and
//! nonce to the server, which does the exchange and the ID-token checks.
//! On a host without a display the device flow is used instead: the person
//! opens the printed page anywhere, signs in there with SSO and approves.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use super::access::seg;
use super::client::{Client, error_message};

/// How long the CLI waits for the browser to come back.
const WAIT: Duration = Duration::from_secs(600);
/// Largest request the loopback listener reads.
const MAX_REQUEST: usize = 16 * 1024;

/// Whether this host can show a browser: a desktop session on Linux and
/// the BSDs (not over SSH), always on macOS and Windows.
pub(crate) fn has_browser() -> bool {
    if cfg!(any(target_os = "macos", target_os = "windows")) {
        return true;
    }
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    display && std::env::var_os("SSH_CONNECTION").is_none()
}

/// Open `url` in the person's browser (best effort; the URL is printed too).
fn open_browser(url: &str) {
    let cmd = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(target_os = "windows") {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(cmd)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        eprintln!("warning: cannot start {cmd} ({e}); open the URL above yourself");
    }
}

/// A random URL-safe string of 32 bytes.
fn random() -> anyhow::Result<String> {
    let mut b = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut b[..]).map_err(|_| anyhow::anyhow!("the OS random number generator failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&b[..]))
}

/// The loopback flow; returns the server's session (access and refresh token).
pub(crate) async fn loopback_login(anon: &Client, org: &str, browser: bool) -> anyhow::Result<Value> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("cannot listen on 127.0.0.1 for the sign-in redirect")?;
    let port = listener.local_addr()?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}/oidc/callback");
    let client_nonce = Zeroizing::new(random()?);
    let body = json!({ "redirect_uri": redirect_uri, "client_nonce": client_nonce.as_str() });
    let (status, _, reply) = anon
        .api_raw(Method::POST, &format!("/auth/sso/{}/start", seg(org)), Some(&body))
        .await?;
    if !status.is_success() {
        bail!(
            "cannot start single sign-on: {} ({})",
            error_message(&reply),
            status.as_u16()
        );
    }
    let Some(url) = reply["data"]["auth_url"].as_str() else {
        bail!("the server's answer has no auth_url");
    };
    eprintln!("Sign in to {org} with your identity provider:");
    // On its own line on stdout, so scripts can pick it up.
    println!("{url}");
    if browser {
        open_browser(url);
    }
    eprintln!("Waiting for the browser to come back to {redirect_uri} …");
    let query = tokio::time::timeout(WAIT, accept_callback(&listener))
        .await
        .context("no sign-in within 10 minutes; run `coffer login --sso` again")??;
    if let Some(err) = query.get("error") {
        bail!(
            "the identity provider refused the sign-in: {} {}",
            err.as_str(),
            query.get("error_description").map(|d| d.as_str()).unwrap_or("")
        );
    }
    let (Some(state), Some(code)) = (query.get("state"), query.get("code")) else {
        bail!("the browser came back without state and code");
    };
    let body = json!({ "state": state.as_str(), "code": code.as_str(), "client_nonce": client_nonce.as_str() });
    let (status, _, reply) = anon.api_raw(Method::POST, "/auth/sso/callback", Some(&body)).await?;
    if !status.is_success() {
        bail!("single sign-on failed: {} ({})", error_message(&reply), status.as_u16());
    }
    Ok(reply["data"].clone())
}

/// Serve the loopback listener until the provider's redirect arrives;
/// its query parameters.
async fn accept_callback(listener: &TcpListener) -> anyhow::Result<HashMap<String, Zeroizing<String>>> {
    loop {
        let (mut conn, _) = listener.accept().await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 2048];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf);
        let target = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("GET "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or("");
        let Some(query) = target.strip_prefix("/oidc/callback?") else {
            let _ = conn
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            continue;
        };
        let params: HashMap<String, Zeroizing<String>> = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, Zeroizing::new(v)))
            .collect();
        let page = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>coffer</title></head>\
                    <body><p>Signed in: you can close this tab and return to the terminal.</p></body></html>";
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n{page}",
            page.len()
        );
        let _ = conn.write_all(answer.as_bytes()).await;
        let _ = conn.shutdown().await;
        return Ok(params);
    }
}
