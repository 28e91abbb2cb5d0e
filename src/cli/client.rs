//! The CLI's HTTP client: one address, one optional token, JSON in and out.
//! Server errors in either wire format come back as one readable message.
//!
//! Token source, in order: `COFFER_TOKEN`, then the login stored by
//! `coffer login` for this address (see `credentials`). Never argv. A stored
//! login whose access token has expired, or that the server answers 401,
//! is refreshed once (`POST /auth/refresh`), stored again, and the request
//! retried. With `--client-cert`, a request may also carry no token at all:
//! the certificate then identifies a service account (docs/access.md).
//!
//! Redirects are followed only within the server's own origin (same scheme,
//! host and port): a token, a signed request or a login body (password,
//! refresh token) never goes to another host, another port, or from https
//! to plain http. A redirect elsewhere stops the command with an error
//! naming the target, so the user can point `--address` at it knowingly.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::credentials::{Entry, Store};

/// Refresh a stored access token this many seconds before it expires.
const EXPIRY_MARGIN_SECS: i64 = 30;
/// Same-origin redirects followed per request.
const MAX_REDIRECTS: usize = 5;

/// May a request that went to `from` follow a redirect to `to`? Only within
/// one origin (scheme, host, port): anything else would carry the token,
/// the request signature or a login body to a party the user did not name.
fn redirect_allowed(from: &reqwest::Url, to: &reqwest::Url) -> bool {
    from.origin() == to.origin() && to.origin().is_tuple()
}

/// The redirect policy of every CLI request: follow within the origin of
/// the first request, stop with an error anywhere else.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.stop();
        };
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        if redirect_allowed(first, attempt.url()) {
            return attempt.follow();
        }
        let to = attempt.url().origin().ascii_serialization();
        let from = first.origin().ascii_serialization();
        attempt.error(format!(
            "the server at {from} redirected to {to}; coffer does not carry credentials to another origin or \
             to plain http: if {to} is the real server, use --address {to}"
        ))
    })
}

/// Where the server is and how to authenticate.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Server address.
    /// [default: the current context's, else http://127.0.0.1:8200]
    #[arg(long = "address", env = "COFFER_ADDR", global = true)]
    pub(crate) address: Option<String>,
    /// PEM CA certificate to trust for the server's TLS certificate.
    #[arg(long = "ca-cert", env = "COFFER_CACERT", global = true)]
    pub(crate) ca_cert: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (a service account's
    /// certificate identity, or `token create --bind-certificate`).
    #[arg(
        long = "client-cert",
        env = "COFFER_CLIENT_CERT",
        global = true,
        requires = "client_key"
    )]
    pub(crate) client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert (a path; the key is never taken from argv).
    #[arg(
        long = "client-key",
        env = "COFFER_CLIENT_KEY",
        global = true,
        requires = "client_cert"
    )]
    pub(crate) client_key: Option<PathBuf>,
    /// Accept only the server certificate whose public key has this
    /// SHA-256 (`sha256:<hex>`, shown by `coffer trust`), instead of CA
    /// validation. Without it, a pin stored by `coffer trust` applies.
    #[arg(long = "pin", env = "COFFER_PIN", global = true, conflicts_with = "ca_cert")]
    pub(crate) pin: Option<String>,
}

/// The token requests carry, and where it came from.
enum TokenState {
    /// `COFFER_TOKEN`.
    Env(Zeroizing<String>),
    /// The stored login has not been looked at yet (only commands that need
    /// a token read the credentials file).
    NotLoaded,
    /// The stored login of this address.
    Stored(Entry),
    /// No token anywhere.
    Missing,
    /// Never send a token (login endpoints).
    Anonymous,
}

impl fmt::Debug for TokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenState::Env(_) => "Env(..)",
            TokenState::NotLoaded => "NotLoaded",
            TokenState::Stored(_) => "Stored(..)",
            TokenState::Missing => "Missing",
            TokenState::Anonymous => "Anonymous",
        })
    }
}

/// A connected client.
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Mutex<TokenState>,
    /// A client certificate is presented: it may stand in for a token.
    client_cert: bool,
}

impl Client {
    /// Build a client; the token comes from `COFFER_TOKEN`, else from the
    /// stored login of this address, never argv.
    pub(crate) fn new(args: &ServerArgs) -> anyhow::Result<Client> {
        let token = match env_token() {
            Some(t) => TokenState::Env(t),
            None => TokenState::NotLoaded,
        };
        Self::with_state(args, token)
    }

    /// A client that uses only the stored login (`logout` acts on that, even
    /// when `COFFER_TOKEN` is set).
    pub(crate) fn stored_login(args: &ServerArgs) -> anyhow::Result<Client> {
        Self::with_state(args, TokenState::NotLoaded)
    }

    /// A client that never sends a token (password and device login).
    pub(crate) fn anonymous(args: &ServerArgs) -> anyhow::Result<Client> {
        Self::with_state(args, TokenState::Anonymous)
    }

    fn with_state(args: &ServerArgs, token: TokenState) -> anyhow::Result<Client> {
        let (address, _) = super::context::address(args.address.as_deref())?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("coffer-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .redirect(redirect_policy());
        let pin = match (&args.pin, &args.ca_cert) {
            (Some(p), _) => Some(super::pin::parse_pin(p)?),
            (None, None) if address.starts_with("https://") => super::pin::stored(&address)?,
            _ => None,
        };
        if let Some(pin) = &pin {
            let client = args.client_cert.as_ref().zip(args.client_key.as_ref());
            builder = builder.use_preconfigured_tls(super::pin::pinned_config(pin, client)?);
        } else if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path).with_context(|| format!("cannot read CA certificate {}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
            builder = builder.tls_certs_only([cert]);
        }
        if let (None, Some(cert), Some(key)) = (&pin, &args.client_cert, &args.client_key) {
            let mut pem = Zeroizing::new(
                std::fs::read(cert).with_context(|| format!("cannot read client certificate {}", cert.display()))?,
            );
            pem.push(b'\n');
            pem.extend_from_slice(&Zeroizing::new(
                std::fs::read(key).with_context(|| format!("cannot read client key {}", key.display()))?,
            ));
            let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
                format!(
                    "{} and {} are not a PEM certificate and its private key",
                    cert.display(),
                    key.display()
                )
            })?;
            builder = builder.identity(identity);
        }
        Ok(Client {
            http: builder.build().context("cannot build the HTTP client")?,
            base: address.trim_end_matches('/').to_owned(),
            token: Mutex::new(token),
            client_cert: args.client_cert.is_some(),
        })
    }

    /// The server address, as stored logins are keyed.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Whether the token comes from `COFFER_TOKEN`.
    pub(crate) fn env_token_set() -> bool {
        env_token().is_some()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TokenState> {
        // A panic elsewhere cannot leave the state half-written: every
        // update is one assignment.
        self.token.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fail early with a helpful message when a command needs a token;
    /// reads the stored login when there is no `COFFER_TOKEN`.
    pub(crate) fn require_token(&self) -> anyhow::Result<()> {
        let mut state = self.state();
        if matches!(*state, TokenState::NotLoaded) {
            // No HOME nor XDG_CONFIG_HOME (a bare CI job): simply no login.
            let stored = match Store::locate() {
                Ok(store) => {
                    store.migrate()?;
                    store.get(&self.base)?
                }
                Err(_) => None,
            };
            *state = match stored {
                Some(entry) => TokenState::Stored(entry),
                None => TokenState::Missing,
            };
        }
        match &*state {
            TokenState::Env(_) | TokenState::Stored(_) => Ok(()),
            // Mutual TLS: the certificate alone may identify a service account.
            TokenState::Missing if self.client_cert => Ok(()),
            TokenState::NotLoaded | TokenState::Missing | TokenState::Anonymous => bail!(
                "not logged in to {}: run `coffer login` (or set COFFER_TOKEN, e.g. to the token printed by \
                 `coffer operator init` or the dev server)",
                self.base
            ),
        }
    }

    /// The token to send now, and whether it is a stored login.
    fn current(&self) -> (Option<Zeroizing<String>>, Option<Entry>) {
        match &*self.state() {
            TokenState::Env(t) => (Some(t.clone()), None),
            TokenState::Stored(e) => (Some(e.access_token.clone()), Some(e.clone())),
            TokenState::NotLoaded | TokenState::Missing | TokenState::Anonymous => (None, None),
        }
    }

    /// Send a request; returns the status and the JSON body (Null if empty).
    /// A stored login is refreshed first when it has expired, and once more
    /// (then the request is retried) when the server answers 401.
    ///
    /// A native POST/PUT/PATCH/DELETE is one logical operation: it carries
    /// one random `Idempotency-Key` on every attempt, and is sent again
    /// (up to [`TRANSPORT_RETRIES`] times) when the connection fails before
    /// an answer arrives — the server answers a retry with the first
    /// answer, so a `secrets set` never makes two versions.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let idem = idempotency_key(&method, path)?;
        let idem = idem.as_deref();
        let mut refreshed = false;
        if let (_, Some(entry)) = self.current()
            && entry.expires_within(EXPIRY_MARGIN_SECS)
            && entry.refresh_token.is_some()
        {
            self.refresh(&entry).await?;
            refreshed = true;
        }
        let (token, stored) = self.current();
        let (status, json) = self
            .send_retrying(method.clone(), path, body, token.as_deref().map(String::as_str), idem)
            .await?;
        match stored {
            Some(entry)
                if status == StatusCode::UNAUTHORIZED
                    && !refreshed
                    && entry.refresh_token.is_some()
                    && refreshable(&json) =>
            {
                self.refresh(&entry).await?;
                let (token, _) = self.current();
                self.send_retrying(method, path, body, token.as_deref().map(String::as_str), idem)
                    .await
            }
            _ => Ok((status, json)),
        }
    }

    /// [`Client::send_with`], sent again after a failed connection when
    /// the request carries an idempotency key (without one a retry could
    /// act twice).
    async fn send_retrying(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
        idem: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut attempt = 0;
        loop {
            match self.send_with_key(method.clone(), path, body, token, idem).await {
                Err(e) if idem.is_some() && token.is_some() && attempt < TRANSPORT_RETRIES && transient(&e) => {
                    attempt += 1;
                    eprintln!(
                        "coffer: the connection to {} failed ({}); retrying ({attempt}/{TRANSPORT_RETRIES}) with the same \
                         idempotency key",
                        self.base,
                        e.root_cause()
                    );
                    tokio::time::sleep(Duration::from_millis(250 * (1 << attempt))).await;
                }
                other => return other,
            }
        }
    }

    /// One request with exactly this token (or none).
    async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.send_with_key(method, path, body, token, None).await
    }

    /// One request with exactly this token (or none) and idempotency key (or none).
    async fn send_with_key(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
        idem: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(t) = token {
            req = req.header("X-Vault-Token", t);
        }
        if let Some(k) = idem {
            req = req.header(crate::http::IDEMPOTENCY_KEY_HEADER, k);
        }
        let bytes = match body {
            Some(b) => {
                let bytes = Zeroizing::new(serde_json::to_vec(b).context("cannot encode the request")?);
                req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
                bytes
            }
            None => Zeroizing::new(Vec::new()),
        };
        let mut request = req
            .body(bytes.to_vec())
            .build()
            .with_context(|| format!("{method} {path}: not a valid request"))?;
        if let Some(t) = token {
            // Request integrity (src/http/integrity.rs): signed over exactly
            // the path and query the URL will carry.
            let url = request.url();
            let pq = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            };
            let ts = super::credentials::unix_now().to_string();
            let sig = crate::http::integrity::sign(t, method.as_str(), &pq, &ts, &bytes);
            let headers = request.headers_mut();
            headers.insert(
                crate::http::integrity::TIMESTAMP_HEADER,
                reqwest::header::HeaderValue::from_str(&ts).context("timestamp header")?,
            );
            headers.insert(
                crate::http::integrity::SIGNATURE_HEADER,
                reqwest::header::HeaderValue::from_str(&sig).context("signature header")?,
            );
        }
        let res = self.http.execute(request).await.map_err(|e| {
            let chain = format!("{e:?}");
            let hint = if chain.contains("UnknownIssuer") || chain.contains("NotValidForName") {
                ": its certificate is not signed by a CA this machine trusts; pass --ca-cert FILE, or check \
                 the fingerprint `coffer trust` shows with the server's operator and pin it"
            } else {
                ""
            };
            anyhow::Error::new(e).context(format!("cannot reach coffer at {}{hint}", self.base))
        })?;
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

    /// `POST /auth/logout` with exactly this token, ignoring the outcome
    /// (a replaced login's session; it may have expired already).
    pub(crate) async fn revoke_session(&self, access_token: &str) {
        let _ = self
            .send_with(Method::POST, "/api/v1/auth/logout", None, Some(access_token))
            .await;
    }

    /// Spend the stored refresh token for a new pair, under the store lock.
    /// When another `coffer` process refreshed meanwhile, take its pair
    /// instead of spending the (already spent) token again.
    async fn refresh(&self, seen: &Entry) -> anyhow::Result<()> {
        let store = Store::locate()?;
        let lock = store.lock()?;
        let entry = match store.get(&self.base)? {
            Some(latest) if latest.access_token != seen.access_token => latest,
            Some(latest) => {
                let Some(refresh_token) = latest.refresh_token.as_ref() else {
                    bail!(
                        "the stored login to {} has expired; run `coffer login` again",
                        self.base
                    );
                };
                let body = json!({ "refresh_token": refresh_token.as_str() });
                let (status, json) = self
                    .send_with(Method::POST, "/api/v1/auth/refresh", Some(&body), None)
                    .await?;
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST {
                    // Spent, expired or revoked: the stored login is dead.
                    store.remove(&lock, &self.base)?;
                    bail!(
                        "the stored login to {} has expired or was revoked ({}); run `coffer login` again",
                        self.base,
                        error_message(&json)
                    );
                }
                if !status.is_success() {
                    bail!(
                        "cannot refresh the stored login: {} ({})",
                        error_message(&json),
                        status.as_u16()
                    );
                }
                let fresh = Entry::from_session(&self.base, &json["data"])?;
                store.put(&lock, fresh.clone())?;
                fresh
            }
            None => bail!(
                "the stored login to {} was removed (by `coffer logout`?); run `coffer login`",
                self.base
            ),
        };
        drop(lock);
        *self.state() = TokenState::Stored(entry);
        Ok(())
    }

    /// Send and fail on any non-2xx, with the server's own message.
    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, json) = self.send(method, path, body).await?;
        if status.is_success() {
            return Ok(json);
        }
        if status == StatusCode::UNAUTHORIZED && matches!(*self.state(), TokenState::Stored(_)) {
            bail!(
                "{} ({}); the stored login was refused: run `coffer login` again",
                error_message(&json),
                status.as_u16()
            );
        }
        bail!("{} ({})", error_message(&json), status.as_u16())
    }

    /// Native API call: returns `data` of the envelope.
    pub(crate) async fn api(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.require_token()?;
        let mut json = self.call(method, &format!("/api/v1{path}"), body).await?;
        Ok(json.get_mut("data").map(Value::take).unwrap_or(Value::Null))
    }

    /// Native API call without a token requirement, for the login routes:
    /// returns the status, the error `code` (if any) and the whole body, so
    /// the caller can act on `totp_required`, `authorization_pending`…
    pub(crate) async fn api_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Option<String>, Value)> {
        let (status, json) = self.send(method, &format!("/api/v1{path}"), body).await?;
        let code = json.get("code").and_then(Value::as_str).map(str::to_owned);
        Ok((status, code, json))
    }
}

/// How often a native write is sent again after a failed connection.
const TRANSPORT_RETRIES: u32 = 2;

/// A fresh random key for a native POST/PUT/PATCH/DELETE (None otherwise).
fn idempotency_key(method: &Method, path: &str) -> anyhow::Result<Option<String>> {
    if !path.starts_with("/api/v1/") || !matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
    {
        return Ok(None);
    }
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|_| anyhow::anyhow!("the OS random number generator failed"))?;
    Ok(Some(hex::encode(b)))
}

/// A failed connection (no answer arrived), not a refused certificate or
/// an unreadable answer.
fn transient(e: &anyhow::Error) -> bool {
    let chain = format!("{e:?}");
    if chain.contains("UnknownIssuer") || chain.contains("NotValidForName") || chain.contains("certificate") {
        return false;
    }
    e.chain()
        .filter_map(|c| c.downcast_ref::<reqwest::Error>())
        .any(|r| r.is_connect() || r.is_timeout() || r.is_request() || r.is_body())
}

/// `COFFER_TOKEN`, when set and not empty.
fn env_token() -> Option<Zeroizing<String>> {
    std::env::var("COFFER_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(Zeroizing::new)
}

/// Whether a 401 is about the token itself (so a refreshed one may pass),
/// not about a certificate binding or a second factor.
fn refreshable(json: &Value) -> bool {
    matches!(
        json.get("code").and_then(Value::as_str),
        None | Some("unauthenticated" | "invalid_token" | "token_expired")
    )
}

/// The message of a native (`message`) or Vault (`errors`) error body.
pub(crate) fn error_message(json: &Value) -> String {
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

#[cfg(test)]
mod tests {
    use super::redirect_allowed;

    #[test]
    fn redirects_stay_in_one_origin() {
        let url = |s: &str| reqwest::Url::parse(s).expect("a URL");
        let from = url("https://vault.example:8200/api/v1/x");
        assert!(redirect_allowed(&from, &url("https://vault.example:8200/api/v1/y?z=1")));
        assert!(redirect_allowed(
            &url("https://a.example/x"),
            &url("https://a.example:443/y")
        ));
        for to in [
            "http://vault.example:8200/api/v1/x",
            "https://vault.example:8201/api/v1/x",
            "https://other.example:8200/api/v1/x",
            "https://sub.vault.example:8200/api/v1/x",
            "data:text/plain,x",
        ] {
            assert!(!redirect_allowed(&from, &url(to)), "{to}");
        }
        assert!(!redirect_allowed(
            &url("http://127.0.0.1:1/"),
            &url("http://127.0.0.1:2/")
        ));
    }
}
