//! `Idempotency-Key` on the native API (issue 18): a retry with the same
//! key and request gets the first answer and makes no second version; the
//! same key with another request is 422; concurrent requests with one key
//! run once; stored answers are encrypted; the CLI retries a write after a
//! dropped connection with its one key, and one version results.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{self, ENV, Http, Server};

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, bool, Value) {
        let mut r = self
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", self.base),
            )
            .header("X-Vault-Token", &self.token);
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let status = res.status();
        let replayed = res.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
        let bytes = res.bytes().await.unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, replayed, json)
    }

    async fn versions(&self, key: &str) -> usize {
        let (st, _, body) = self
            .send("GET", &format!("{ENV}/secrets/{key}/history"), None, None)
            .await;
        assert_eq!(st, 200, "{body}");
        body["data"].as_array().map_or(0, Vec::len)
    }
}

async fn setup() -> (tempfile::TempDir, Server, String, Api) {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start(dir.path(), &url);
    let anon = Http::new(&server.base, None);
    let (root, _) = util::boot(&anon).await;
    util::tenant(&root).await;
    let api = Api {
        base: server.base.clone(),
        token: root.token().to_owned(),
        http: reqwest::Client::new(),
    };
    (dir, server, url, api)
}

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_first_answer_and_makes_no_second_version() {
    let (_dir, _server, _url, api) = setup().await;
    let path = format!("{ENV}/secrets/DB_URL");
    let body = json!({"value": "postgres://db/one"});
    let (st, replayed, first) = api.send("POST", &path, Some("op-1"), Some(body.clone())).await;
    assert_eq!((st, replayed), (StatusCode::OK, false), "{first}");
    let (st, replayed, again) = api.send("POST", &path, Some("op-1"), Some(body.clone())).await;
    assert_eq!((st, replayed), (StatusCode::OK, true), "{again}");
    assert_eq!(again, first, "the first answer, byte for byte");
    assert_eq!(api.versions("DB_URL").await, 1, "no second version");

    // Same key, another body or another path: 422, nothing written.
    let (st, _, refused) = api
        .send("POST", &path, Some("op-1"), Some(json!({"value": "postgres://db/two"})))
        .await;
    assert_eq!(
        (st.as_u16(), refused["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{refused}"
    );
    assert!(
        refused["message"].as_str().unwrap().contains("Idempotency-Key"),
        "{refused}"
    );
    let (st, _, _) = api
        .send(
            "POST",
            &format!("{ENV}/secrets/OTHER"),
            Some("op-1"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(st.as_u16(), 422);
    assert_eq!(api.versions("DB_URL").await, 1);

    // A new key (or none) is a new operation.
    let (st, replayed, _) = api.send("POST", &path, Some("op-2"), Some(body.clone())).await;
    assert_eq!((st, replayed), (StatusCode::OK, false));
    let (st, replayed, _) = api.send("POST", &path, None, Some(body.clone())).await;
    assert_eq!((st, replayed), (StatusCode::OK, false));
    assert_eq!(api.versions("DB_URL").await, 3);

    // A DELETE replays too (the second would be a 404 otherwise).
    let (st, replayed, _) = api.send("DELETE", &path, Some("del-1"), None).await;
    assert_eq!((st, replayed), (StatusCode::OK, false));
    let (st, replayed, _) = api.send("DELETE", &path, Some("del-1"), None).await;
    assert_eq!((st, replayed), (StatusCode::OK, true));

    // A final 4xx is replayed as well: an invalid value stays refused.
    let bad = json!({"value": "80x80", "type": "integer"});
    let (st, _, first) = api
        .send("POST", &format!("{ENV}/secrets/PORT"), Some("bad-1"), Some(bad.clone()))
        .await;
    assert_eq!(st.as_u16(), 400, "{first}");
    let (st, replayed, again) = api
        .send("POST", &format!("{ENV}/secrets/PORT"), Some("bad-1"), Some(bad))
        .await;
    assert_eq!((st.as_u16(), replayed, again), (400, true, first));
}

#[tokio::test]
async fn keys_are_checked_per_principal_and_bad_keys_name_the_header() {
    let (_dir, server, _url, api) = setup().await;
    let path = format!("{ENV}/secrets/K");
    for bad in ["", "has space", &"k".repeat(256)] {
        let (st, _, body) = api.send("POST", &path, Some(bad), Some(json!({"value": "v"}))).await;
        assert_eq!(st.as_u16(), 400, "{bad:?}: {body}");
        assert!(body["message"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    }
    assert_eq!(
        api.send("GET", &path, None, None).await.0.as_u16(),
        404,
        "nothing written"
    );
    let (st, _, _) = api
        .send("POST", &path, Some(&"k".repeat(255)), Some(json!({"value": "v"})))
        .await;
    assert_eq!(st, StatusCode::OK);

    // Another principal's key of the same name is another key.
    let root = Http::new(&server.base, Some(&api.token));
    util::create_user(&root, "dev@example.com", "correct horse battery staple").await;
    util::add_member(&root, "acme", "dev@example.com", "admin").await;
    let dev = util::user_client(
        &Http::new(&server.base, None),
        "dev@example.com",
        "correct horse battery staple",
    )
    .await;
    let dev = Api {
        base: api.base.clone(),
        token: dev.token().to_owned(),
        http: reqwest::Client::new(),
    };
    let (st, replayed, body) = dev
        .send("POST", &path, Some(&"k".repeat(255)), Some(json!({"value": "w"})))
        .await;
    assert_eq!((st, replayed), (StatusCode::OK, false), "{body}");
    assert_eq!(api.versions("K").await, 2);

    // No principal: the header is ignored, the route answers as always.
    let anon = Api {
        token: "not-a-token".into(),
        ..dev
    };
    let (st, _, body) = anon.send("POST", &path, Some("x"), Some(json!({"value": "w"}))).await;
    assert_eq!(st.as_u16(), 401, "{body}");
}

#[tokio::test]
async fn concurrent_requests_with_one_key_run_once() {
    let (_dir, _server, _url, api) = setup().await;
    let api = Arc::new(api);
    let path = format!("{ENV}/secrets/RACE");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (api, path) = (api.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            api.send("POST", &path, Some("race-1"), Some(json!({"value": "same"})))
                .await
        }));
    }
    let mut fresh = 0;
    let mut answers = Vec::new();
    for t in tasks {
        let (st, replayed, body) = t.await.unwrap();
        assert!(st == StatusCode::OK || st == StatusCode::CONFLICT, "{st} {body}");
        if st == StatusCode::OK {
            if !replayed {
                fresh += 1;
            }
            answers.push(body);
        }
    }
    assert_eq!(fresh, 1, "exactly one request ran");
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "one answer for all: {answers:?}"
    );
    assert_eq!(api.versions("RACE").await, 1);
}

#[tokio::test]
async fn stored_answers_are_encrypted() {
    use sqlx::{Connection, Row};
    let (_dir, _server, url, api) = setup().await;
    let (st, _, body) = api
        .send(
            "POST",
            "/api/v1/tokens",
            Some("tok-1"),
            Some(json!({"name": "ci", "ttl_seconds": 3600})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let token = body["data"]["token"].as_str().expect("a token").to_owned();
    let (_, replayed, again) = api
        .send(
            "POST",
            "/api/v1/tokens",
            Some("tok-1"),
            Some(json!({"name": "ci", "ttl_seconds": 3600})),
        )
        .await;
    assert!(replayed);
    assert_eq!(
        again["data"]["token"].as_str(),
        Some(token.as_str()),
        "the same token, not a second one"
    );

    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let rows = sqlx::query("SELECT key_hash, body FROM idempotency_keys")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        let stored: Vec<u8> = r.get("body");
        let key_hash: Vec<u8> = r.get("key_hash");
        assert!(
            !stored.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token in clear"
        );
        assert!(!stored.windows(5).any(|w| w == b"tok-1") && !key_hash.windows(5).any(|w| w == b"tok-1"));
    }
}

/// `coffer secrets set` through a proxy that drops the first connection
/// after the server answered (the answer never reaches the CLI): the CLI
/// retries with the same key and gets the first answer; one version.
/// (Multi-threaded: the proxy runs while this thread waits for the CLI.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_retries_a_dropped_write_with_its_key_and_one_version_results() {
    let (_dir, server, _url, api) = setup().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let upstream = server.base.trim_start_matches("http://").to_owned();
    let conns = Arc::new(AtomicUsize::new(0));
    let seen = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                if n == 0 {
                    // Forward the request, wait for the answer, drop both.
                    let (mut cr, _cw) = client.split();
                    let (mut sr, mut sw) = server.split();
                    let up = async {
                        let mut buf = [0u8; 8192];
                        loop {
                            match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(k) => {
                                    if sw.write_all(&buf[..k]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    };
                    let mut first = [0u8; 1];
                    tokio::select! {
                        _ = up => {}
                        _ = sr.read(&mut first) => {}
                    }
                } else {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });

    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["secrets", "set", "DROPPED"])
        .env("COFFER_ADDR", &proxy)
        .env("COFFER_ORG", "acme")
        .env("COFFER_PROJECT", "api")
        .env("COFFER_ENV", "production")
        .env("COFFER_TOKEN", &api.token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret-value\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("retrying"),
        "the first connection was dropped: {stderr}"
    );
    assert!(conns.load(Ordering::SeqCst) >= 2);
    assert_eq!(api.versions("DROPPED").await, 1, "one version after the retry");
}
