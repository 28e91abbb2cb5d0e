//! The CLI's HTTP client: one address, one optional token, JSON in and out.
//! Server errors in either wire format come back as one readable message.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use zeroize::Zeroizing;

/// Where the server is and how to authenticate.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Server address.
    #[arg(
        long = "address",
        env = "COFFER_ADDR",
        default_value = "http://127.0.0.1:8200",
        global = true
    )]
    pub(crate) address: String,
    /// PEM CA certificate to trust for the server's TLS certificate.
    #[arg(long = "ca-cert", env = "COFFER_CACERT", global = true)]
    pub(crate) ca_cert: Option<PathBuf>,
}

/// A connected client.
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<Zeroizing<String>>,
}

impl Client {
    /// Build a client; the token comes from `COFFER_TOKEN` only, never argv.
    pub(crate) fn new(args: &ServerArgs) -> anyhow::Result<Client> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path).with_context(|| format!("cannot read CA certificate {}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
            builder = builder.tls_certs_only([cert]);
        }
        let token = std::env::var("COFFER_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(Zeroizing::new);
        Ok(Client {
            http: builder.build().context("cannot build the HTTP client")?,
            base: args.address.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Fail early with a helpful message when a command needs a token.
    pub(crate) fn require_token(&self) -> anyhow::Result<()> {
        if self.token.is_none() {
            bail!("COFFER_TOKEN is not set; export the token printed by `coffer operator init` (or the dev server)");
        }
        Ok(())
    }

    /// Send a request; returns the status and the JSON body (Null if empty).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t.as_str());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach coffer at {}", self.base))?;
        let status = res.status();
        let bytes = res.bytes().await.context("cannot read the server's answer")?;
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{method} {path}: the server did not answer JSON"))?
        };
        Ok((status, json))
    }

    /// Send and fail on any non-2xx, with the server's own message.
    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, json) = self.send(method, path, body).await?;
        if status.is_success() {
            return Ok(json);
        }
        bail!("{} ({})", error_message(&json), status.as_u16())
    }

    /// Native API call: returns `data` of the envelope.
    pub(crate) async fn api(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.require_token()?;
        let mut json = self.call(method, &format!("/api/v1{path}"), body).await?;
        Ok(json.get_mut("data").map(Value::take).unwrap_or(Value::Null))
    }
}

/// The message of a native (`message`) or Vault (`errors`) error body.
fn error_message(json: &Value) -> String {
    if let Some(m) = json.get("message").and_then(Value::as_str) {
        return m.to_owned();
    }
    if let Some(errs) = json.get("errors").and_then(Value::as_array) {
        let msgs: Vec<&str> = errs.iter().filter_map(Value::as_str).collect();
        if !msgs.is_empty() {
            return msgs.join("; ");
        }
    }
    "the server refused the request".to_owned()
}
