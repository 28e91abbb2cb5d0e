//! Test harness: fresh storage of the backend under test, the real `coffer`
//! binary started on it, and a small JSON-over-HTTP client.
//!
//! `COFFER_TEST_STORAGE=sqlite` (default) or `postgres`; PostgreSQL tests use
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and
//! each test gets a schema of its own, so tests run in parallel.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::Connection;

/// Which backend the tests run on.
pub fn storage_kind() -> &'static str {
    match std::env::var("COFFER_TEST_STORAGE").as_deref() {
        Ok("postgres") => "postgres",
        Ok("sqlite") | Err(_) => "sqlite",
        Ok(other) => panic!("COFFER_TEST_STORAGE={other:?}: expected sqlite or postgres"),
    }
}

/// A storage URL nobody else uses: a new SQLite file in `dir`, or a new
/// PostgreSQL schema.
pub async fn fresh_storage_url(dir: &Path) -> String {
    if storage_kind() == "sqlite" {
        return format!("sqlite://{}", dir.join("coffer.db").display());
    }
    let base = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at TEST_DATABASE_URL: {e}"));
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// A running `coffer server`.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    config: PathBuf,
    log: PathBuf,
    envs: Vec<(String, String)>,
}

impl Server {
    /// Start the binary with a config using `storage_url`, plain HTTP on a free port.
    pub fn start(dir: &Path, storage_url: &str) -> Server {
        Self::start_with(dir, storage_url, "tls_disable = true")
    }

    /// Start with extra `[listener]` settings (TLS files…) on a free port.
    pub fn start_with(dir: &Path, storage_url: &str, listener: &str) -> Server {
        Self::start_full(dir, storage_url, listener, "", &[])
    }

    /// Start with extra config sections (after `[storage]`) and extra
    /// environment variables for the server process.
    pub fn start_full(dir: &Path, storage_url: &str, listener: &str, extra: &str, envs: &[(&str, &str)]) -> Server {
        let config = dir.join("coffer.toml");
        std::fs::write(
            &config,
            format!("[listener]\naddress = \"127.0.0.1:0\"\n{listener}\n[storage]\nurl = \"{storage_url}\"\n{extra}"),
        )
        .expect("write config");
        let mut s = Server {
            child: None,
            base: String::new(),
            config,
            log: dir.join("server.log"),
            envs: envs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        };
        s.spawn();
        s
    }

    /// The config file the server runs with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(["server", "--config"])
            .arg(&self.config)
            .env("COFFER_LOG_FORMAT", "text")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start coffer");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("coffer: listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => self.base = url,
            Err(_) => panic!("server did not start; log:\n{}", self.log_text()),
        }
    }

    /// Process id of the running server (for /proc inspection).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// The server's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// kill -9 and start again on the same config and storage.
    pub fn restart_hard(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// A client for this server.
    pub fn client(&self, token: Option<&str>) -> Http {
        Http::new(&self.base, token)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// JSON over HTTP with an optional token.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Http {
    /// A client for `base`.
    pub fn new(base: &str, token: Option<&str>) -> Http {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Http {
            client: reqwest::Client::builder().build().expect("client"),
            base: base.to_owned(),
            token: token.map(str::to_owned),
        }
    }

    /// The same server, another token.
    pub fn with_token(&self, token: &str) -> Http {
        Http {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// Send and return status and JSON body (Null when empty).
    pub async fn req(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut r = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.header("X-Vault-Token", t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.expect("request");
        let status = res.status();
        let bytes = res.bytes().await.expect("body");
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, json)
    }

    /// GET
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.req("GET", path, None).await
    }

    /// POST with a JSON body
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.req("POST", path, Some(body)).await
    }

    /// PUT with a JSON body
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.req("PUT", path, Some(body)).await
    }

    /// DELETE
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.req("DELETE", path, None).await
    }
}

/// Init `n`/`k` through `sys/init`; returns (hex shares, base64 shares, root token).
pub async fn init(http: &Http, n: u8, k: u8) -> (Vec<String>, Vec<String>, String) {
    let (st, body) = http
        .put(
            "/v1/sys/init",
            serde_json::json!({ "secret_shares": n, "secret_threshold": k }),
        )
        .await;
    assert_eq!(st, 200, "init: {body}");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("string").to_owned())
            .collect()
    };
    (
        strings(&body["keys"]),
        strings(&body["keys_base64"]),
        body["root_token"].as_str().expect("root token").to_owned(),
    )
}

/// Submit shares; returns the last seal-status body.
pub async fn unseal(http: &Http, shares: &[&str]) -> Value {
    let mut last = Value::Null;
    for s in shares {
        let (st, body) = http.put("/v1/sys/unseal", serde_json::json!({ "key": s })).await;
        assert_eq!(st, 200, "unseal: {body}");
        last = body;
    }
    last
}

/// Create org `acme`, project `api`, environment `production`.
pub async fn tenant(http: &Http) {
    let (st, b) = http
        .post("/api/v1/orgs", serde_json::json!({"slug": "acme", "name": "Acme"}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = http
        .post(
            "/api/v1/orgs/acme/projects",
            serde_json::json!({"slug": "api", "name": "API"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = http
        .post(
            "/api/v1/orgs/acme/projects/api/environments",
            serde_json::json!({"slug": "production", "name": "Production"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
}

/// Path of the secrets of acme/api/production.
pub const ENV: &str = "/api/v1/orgs/acme/projects/api/environments/production";

/// A temp dir that lives as long as the test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}
