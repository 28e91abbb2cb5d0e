//! The leaked-password check (issue 18) against a local range server that
//! serves a small fixture with padding and asserts it only ever receives a
//! 5-character SHA-1 prefix with `Add-Padding: true`: hits warn on a
//! `password` secret write (block under the org policy), breached user
//! passwords are refused, padding lines are no hits, and the check fails
//! open when the range server is down or slow.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::json;
use sha1::{Digest, Sha1};

use crate::util::{self, ENV, Http, Server};

const BREACHED: &str = "correct-horse-breached-1";
const PADDED: &str = "only-in-a-padding-line-2";
const CLEAN: &str = "never-seen-anywhere-3-x";

fn sha1_hex(p: &str) -> String {
    hex::encode_upper(Sha1::digest(p.as_bytes()))
}

/// What the range server saw: (path prefix, Add-Padding header).
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct RangeServer {
    url: String,
    seen: Seen,
}

impl RangeServer {
    /// Serve the fixture; `delay` before each answer.
    async fn start(delay: Duration) -> RangeServer {
        let seen: Seen = Arc::default();
        let app = axum::Router::new()
            .route(
                "/range/{prefix}",
                axum::routing::get(
                    move |State(seen): State<Seen>, Path(prefix): Path<String>, headers: HeaderMap| async move {
                        seen.lock().unwrap().push((
                            prefix.clone(),
                            headers
                                .get("add-padding")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                        ));
                        tokio::time::sleep(delay).await;
                        fixture(&prefix)
                    },
                ),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RangeServer { url, seen }
    }

    /// Every request was a bare 5-hex prefix with Add-Padding: true; returns them.
    fn prefixes(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap().clone();
        for (prefix, padding) in &seen {
            assert!(
                prefix.len() == 5 && prefix.bytes().all(|b| b.is_ascii_hexdigit()),
                "only a 5-character prefix may leave the host: {prefix:?}"
            );
            assert_eq!(padding.as_deref(), Some("true"), "Add-Padding header");
        }
        seen.into_iter().map(|(p, _)| p).collect()
    }
}

/// The range answer of `prefix`: the breached password's suffix with a
/// count, the padded one's with count 0, and padding around them.
fn fixture(prefix: &str) -> String {
    let mut lines = vec![
        "0018A45C4D1DEF81644B54AB7F969B88D65:1".to_owned(),
        "00D4F6E8FA6EECAD2A3AA415EEC418D38EC:0".to_owned(),
    ];
    for (p, n) in [(BREACHED, 42), (PADDED, 0)] {
        let h = sha1_hex(p);
        if &h[..5] == prefix {
            lines.push(format!("{}:{n}", &h[5..]));
        }
    }
    lines.push("FFFFF6E8FA6EECAD2A3AA415EEC418D38EC:0".to_owned());
    lines.join("\r\n")
}

async fn coffer_with(range_url: &str, extra: &str) -> (tempfile::TempDir, Server, Http) {
    let dir = util::tempdir();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, "metrics-scrape-token-0123456789").unwrap();
    let server = Server::start_full(
        dir.path(),
        &util::fresh_storage_url(dir.path()).await,
        "tls_disable = true",
        &format!(
            "[metrics]\ntoken_file = \"{}\"\n[breach_check]\nenabled = true\nurl = \"{range_url}\"\n{extra}",
            token_file.display()
        ),
        &[],
    );
    let (root, _) = util::boot(&Http::new(&server.base, None)).await;
    util::tenant(&root).await;
    (dir, server, root)
}

async fn metrics(server: &Server) -> String {
    reqwest::Client::new()
        .get(format!("{}/metrics", server.base))
        .bearer_auth("metrics-scrape-token-0123456789")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

// Multi-threaded: the range server answers while this thread waits for the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breached_password_secrets_warn_and_block_under_the_org_policy() {
    let range = RangeServer::start(Duration::ZERO).await;
    let (_dir, server, root) = coffer_with(&range.url, "").await;
    let put = |key: &str, value: &str, ty: Option<&str>| {
        let mut body = json!({ "value": value });
        if let Some(t) = ty {
            body["type"] = json!(t);
        }
        let root = root.clone();
        let path = format!("{ENV}/secrets/{key}");
        async move { root.post(&path, body).await }
    };

    let data = util::ok_data("breached", put("DB_PASSWORD", BREACHED, Some("password")).await);
    let warnings = data["warnings"].as_array().expect("warnings").clone();
    assert_eq!(warnings.len(), 1, "{data}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("DB_PASSWORD") && w.contains("breach") && w.contains("42"),
        "{w}"
    );
    assert!(!w.contains(BREACHED));
    // Padding lines (count 0) and unknown suffixes are no hits.
    for (key, value) in [("PADDED", PADDED), ("CLEAN", CLEAN)] {
        let data = util::ok_data(key, put(key, value, Some("password")).await);
        assert!(data.get("warnings").is_none(), "{key}: {data}");
    }
    let asked = range.prefixes().len();
    assert_eq!(asked, 3);
    // Other types are not checked; an update keeps the password type.
    util::ok_data("text", put("NOTE", BREACHED, Some("text")).await);
    assert_eq!(range.prefixes().len(), asked, "a text value is not looked up");
    let data = util::ok_data("update", put("CLEAN", BREACHED, None).await);
    assert_eq!(data["warnings"].as_array().map(Vec::len), Some(1), "{data}");

    // The CLI prints the warning on stderr.
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["secrets", "set", "CLI_PASSWORD", "--type", "password"])
        .env("COFFER_ADDR", &server.base)
        .env("COFFER_ORG", "acme")
        .env("COFFER_PROJECT", "api")
        .env("COFFER_ENV", "production")
        .env("COFFER_TOKEN", root.token())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{BREACHED}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("breach corpus"),
        "{stderr}"
    );

    // Org policy: block.
    let policy = util::ok_data("policy", root.get("/api/v1/orgs/acme/breach-policy").await);
    assert_eq!(
        policy,
        json!({"block_breached_passwords": false, "check_enabled": true})
    );
    util::ok_data(
        "block",
        root.put(
            "/api/v1/orgs/acme/breach-policy",
            json!({"block_breached_passwords": true}),
        )
        .await,
    );
    let (st, body) = put("DB_PASSWORD", BREACHED, Some("password")).await;
    assert_eq!(
        (st.as_u16(), body["code"].as_str()),
        (422, Some("breached_password")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("refuses breached passwords"),
        "{body}"
    );
    let meta = util::ok_data("meta", root.get(&format!("{ENV}/secrets/DB_PASSWORD")).await);
    assert_eq!(meta["version"], 1, "nothing written");
    util::ok_data("clean still", put("DB_PASSWORD", CLEAN, Some("password")).await);

    // Nothing but prefixes left the host; no value reached the log.
    range.prefixes();
    let log = server.log_text();
    for v in [BREACHED, &sha1_hex(BREACHED)] {
        assert!(!log.contains(v), "log leaks {v}");
    }
    assert!(metrics(&server).await.contains("coffer_breach_check_total"));
}

#[tokio::test]
async fn breached_user_passwords_are_refused() {
    let range = RangeServer::start(Duration::ZERO).await;
    let (_dir, server, root) = coffer_with(&range.url, "").await;
    let (st, body) = root
        .post("/api/v1/users", json!({"email": "a@example.com", "password": BREACHED}))
        .await;
    assert_eq!(
        (st.as_u16(), body["code"].as_str()),
        (422, Some("breached_password")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("choose another"), "{body}");
    util::create_user(&root, "a@example.com", PADDED).await;
    let user = util::user_client(&Http::new(&server.base, None), "a@example.com", PADDED).await;
    let (st, body) = user
        .post(
            "/api/v1/auth/password",
            json!({"old_password": PADDED, "new_password": BREACHED}),
        )
        .await;
    assert_eq!(
        (st.as_u16(), body["code"].as_str()),
        (422, Some("breached_password")),
        "{body}"
    );
    util::ok_data(
        "clean password",
        user.post(
            "/api/v1/auth/password",
            json!({"old_password": PADDED, "new_password": CLEAN}),
        )
        .await,
    );
    assert_eq!(range.prefixes().len(), 4);
}

#[tokio::test]
async fn the_check_fails_open_when_the_range_server_is_down_or_slow() {
    // Down: nothing listens on the port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (_dir, server, root) = coffer_with(&closed, "").await;
    util::create_user(&root, "down@example.com", BREACHED).await;
    let data = util::ok_data(
        "secret",
        root.post(
            &format!("{ENV}/secrets/P"),
            json!({"value": BREACHED, "type": "password"}),
        )
        .await,
    );
    assert!(data.get("warnings").is_none(), "{data}");
    let log = server.log_text();
    assert!(log.contains("breach check unavailable"), "{log}");
    assert!(
        !log.contains(BREACHED) && !log.contains(&sha1_hex(BREACHED)[..5]),
        "{log}"
    );
    let m = metrics(&server).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("coffer_breach_check_failures_total") && l.contains("unreachable")),
        "{m}"
    );

    // Slow: would answer long after the 2 s timeout.
    let slow = RangeServer::start(Duration::from_secs(60)).await;
    let (_dir2, server2, root2) = coffer_with(&slow.url, "").await;
    let started = Instant::now();
    util::create_user(&root2, "slow@example.com", BREACHED).await;
    let took = started.elapsed();
    // (A generous bound: password hashing on a loaded test host is slow too.)
    assert!(
        took < Duration::from_secs(30),
        "fails open at the 2 s timeout, took {took:?}"
    );
    assert!(
        took >= Duration::from_millis(1900),
        "waited for the range server: {took:?}"
    );
    assert_eq!(slow.prefixes().len(), 1);
    let m = metrics(&server2).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("coffer_breach_check_failures_total") && l.contains("timeout")),
        "{m}"
    );
}

/// `coffer …` against `server` as root in acme/api/production.
fn cli(server: &Server, root: &Http, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env("COFFER_ADDR", &server.base)
        .env("COFFER_ORG", "acme")
        .env("COFFER_PROJECT", "api")
        .env("COFFER_ENV", "production")
        .env("COFFER_TOKEN", root.token())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// Multi-threaded: the range server answers while this thread waits for the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_check_password_keys_and_the_cli_sets_the_policy() {
    let range = RangeServer::start(Duration::ZERO).await;
    let (dir, server, root) = coffer_with(&range.url, "").await;
    let version = |key: &'static str| {
        let root = root.clone();
        async move { util::ok_data(key, root.get(&format!("{ENV}/secrets/{key}")).await)["version"].clone() }
    };
    util::ok_data(
        "password",
        root.post(
            &format!("{ENV}/secrets/DB_PASSWORD"),
            json!({"value": CLEAN, "type": "password"}),
        )
        .await,
    );
    util::ok_data(
        "text",
        root.post(&format!("{ENV}/secrets/OTHER"), json!({"value": "one"}))
            .await,
    );

    // Warn (the default): the password-typed key carries a warning and is
    // written with the rest; a new key is text and not looked up.
    let asked = range.prefixes().len();
    let data = util::ok_data(
        "push",
        root.post(
            &format!("{ENV}/sync/push"),
            json!({"values": {"DB_PASSWORD": BREACHED, "OTHER": "two", "NEW_ONE": BREACHED}, "apply": true}),
        )
        .await,
    );
    assert_eq!(data["applied"], true, "{data}");
    assert_eq!(
        (
            data["updated"].clone(),
            data["created"].clone(),
            data["refused"].clone()
        ),
        (json!(2), json!(1), json!(0))
    );
    let item = |data: &serde_json::Value, key: &str| {
        data["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key"] == key)
            .cloned()
            .unwrap()
    };
    let db = item(&data, "DB_PASSWORD");
    let w = db["warning"].as_str().expect("a warning");
    assert!(
        w.contains("DB_PASSWORD") && w.contains("breach") && !w.contains(BREACHED),
        "{w}"
    );
    assert!(item(&data, "NEW_ONE").get("warning").is_none(), "{data}");
    assert!(item(&data, "OTHER").get("warning").is_none(), "{data}");
    assert_eq!(range.prefixes().len(), asked + 1, "only the password key is looked up");
    assert_eq!(version("DB_PASSWORD").await, 2);

    // The CLI sets and shows the policy.
    let (code, out, err) = cli(&server, &root, &["org", "breach-policy"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("warn"), "{out}");
    let (code, out, err) = cli(&server, &root, &["org", "breach-policy", "--block"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("block") && out.contains("acme"), "{out}");
    let policy = util::ok_data("policy", root.get("/api/v1/orgs/acme/breach-policy").await);
    assert_eq!(policy["block_breached_passwords"], true);
    let (code, out, _) = cli(&server, &root, &["org", "breach-policy", "--json"]);
    assert_eq!(code, Some(0));
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["block_breached_passwords"], true, "{out}");
    let (code, _, err) = cli(&server, &root, &["org", "breach-policy", "--block", "--warn"]);
    assert_ne!(code, Some(0), "both flags at once: {err}");

    // Block: the breached password key alone is refused, the others are written.
    util::ok_data(
        "clean",
        root.put(&format!("{ENV}/secrets/DB_PASSWORD"), json!({"value": CLEAN}))
            .await,
    );
    let file = dir.path().join("push.env");
    std::fs::write(&file, format!("DB_PASSWORD={BREACHED}\nOTHER=three\n")).unwrap();
    let (code, out, err) = cli(&server, &root, &["push", file.to_str().unwrap(), "--yes"]);
    assert_eq!(code, Some(1), "a refused key is reported in the exit code: {out}{err}");
    assert!(
        out.contains("x DB_PASSWORD") && out.contains("refuses breached passwords"),
        "{out}"
    );
    assert!(out.contains("1 refused"), "{out}");
    assert!(!out.contains(BREACHED) && !err.contains(BREACHED));
    assert_eq!(version("DB_PASSWORD").await, 3, "the refused key is not written");
    assert_eq!(version("OTHER").await, 3, "the other key is written");
    let other = util::ok_data("reveal", root.get(&format!("{ENV}/secrets/OTHER?reveal=true")).await);
    assert_eq!(other["value"], "three");

    // And back to warn.
    let (code, out, err) = cli(&server, &root, &["org", "breach-policy", "--warn"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("warn"), "{out}");
    let policy = util::ok_data("policy", root.get("/api/v1/orgs/acme/breach-policy").await);
    assert_eq!(policy["block_breached_passwords"], false);

    let log = server.log_text();
    assert!(!log.contains(BREACHED), "log leaks the value");
}
