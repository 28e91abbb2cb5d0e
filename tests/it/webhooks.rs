//! Signed webhooks (issue 17) on the real binary: a local receiver that
//! verifies `Coffer-Signature` with the hook's secret gets a change
//! request's steps in order, with no value in any body; a receiver that
//! fails is retried with backoff and the attempts are in the delivery log;
//! the Slack body shape; a deleted hook gets nothing more. Runs on SQLite
//! and PostgreSQL (`COFFER_TEST_STORAGE`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use crate::util::{self, Http, Server};

const PASSWORD: &str = "correct horse battery staple 17";
const ALICE: &str = "alice@acme.test";
const DEV: &str = "dev@acme.test";

#[derive(Default)]
struct Inner {
    secret: Mutex<String>,
    /// answer 500 to this many requests first
    fail_first: AtomicUsize,
    /// requests seen (good or not)
    hits: AtomicUsize,
    /// accepted (verified) bodies
    bodies: Mutex<Vec<String>>,
    /// signature failures
    bad: AtomicUsize,
}

/// A webhook receiver that verifies the signature like docs/webhooks.md
/// says (HMAC-SHA256 over "<t>.<body>", 5 minutes tolerance).
#[derive(Clone)]
struct Receiver {
    url: String,
    inner: Arc<Inner>,
}

fn verify(secret: &str, header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = hex::decode(x).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    let now = i64::try_from(util::unix_now()).unwrap_or(0);
    if (now - t).abs() > 300 {
        return false;
    }
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&v1).is_ok()
}

impl Receiver {
    async fn start(fail_first: usize) -> Receiver {
        let inner = Arc::new(Inner::default());
        inner.fail_first.store(fail_first, Ordering::SeqCst);
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |State(inner): State<Arc<Inner>>, headers: HeaderMap, body: String| async move {
                        inner.hits.fetch_add(1, Ordering::SeqCst);
                        let secret = inner.secret.lock().unwrap().clone();
                        let sig = headers
                            .get("coffer-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        if secret.is_empty() || !verify(&secret, sig, &body) {
                            inner.bad.fetch_add(1, Ordering::SeqCst);
                            return StatusCode::UNAUTHORIZED;
                        }
                        if inner
                            .fail_first
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok()
                        {
                            return StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        inner.bodies.lock().unwrap().push(body);
                        StatusCode::OK
                    },
                ),
            )
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, inner }
    }

    fn bodies(&self) -> Vec<String> {
        self.inner.bodies.lock().unwrap().clone()
    }

    /// Wait until `n` bodies were accepted (30 s at most).
    async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..300 {
            let b = self.bodies();
            if b.len() >= n {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("receiver got {:?}, wanted {n} bodies", self.bodies());
    }
}

struct World {
    server: Server,
    root: Http,
    alice: Http,
    dev: Http,
    env: String,
}

/// acme/api/production, protected for writes (one approval); Alice admin,
/// Dev a developer; jobs every 200 ms.
async fn world(dir: &std::path::Path) -> World {
    let url = util::fresh_storage_url(dir).await;
    let server = Server::start_full(dir, &url, "tls_disable = true", "[jobs]\ninterval_ms = 200\n", &[]);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    let env = util::env_path("acme", "api", "production");
    util::remember_secret("db-value-one-x1");
    util::write_secret(&root, &env, "DB", "db-value-one-x1").await;
    util::create_user(&root, ALICE, PASSWORD).await;
    util::add_member(&root, "acme", ALICE, "admin").await;
    util::create_user(&root, DEV, PASSWORD).await;
    util::add_member(&root, "acme", DEV, "member").await;
    util::grant(
        &root,
        "acme",
        json!({"user": DEV, "project": "api", "environment": "production",
               "permissions": ["read", "create", "update"]}),
    )
    .await;
    util::ok_data(
        "policy",
        root.put(
            "/api/v1/orgs/acme/approval-policies/api/production",
            json!({"actions": ["write"], "required": 1}),
        )
        .await,
    );
    let alice = util::user_client(&anon, ALICE, PASSWORD).await;
    let dev = util::user_client(&anon, DEV, PASSWORD).await;
    World {
        server,
        root,
        alice,
        dev,
        env,
    }
}

/// Register a hook for `r`; gives the receiver its secret; returns the id.
async fn add_hook(http: &Http, r: &Receiver, events: Value, format: &str) -> String {
    let data = util::ok_data(
        "create webhook",
        http.post(
            "/api/v1/orgs/acme/webhooks",
            json!({"url": r.url, "events": events, "format": format}),
        )
        .await,
    );
    let secret = data["secret"].as_str().expect("secret shown once").to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    *r.inner.secret.lock().unwrap() = secret;
    data["id"].as_str().expect("id").to_owned()
}

/// Dev proposes `value` for DB; Alice approves (applies).
async fn change(w: &World, value: &str) -> String {
    util::remember_secret(value);
    let (st, body) = w
        .dev
        .post(&format!("{}/secrets/DB", w.env), json!({"value": value}))
        .await;
    assert_eq!(st.as_u16(), 202, "{body}");
    let id = body["data"]["request_id"].as_str().expect("request id").to_owned();
    let done = util::ok_data(
        "approve",
        w.alice
            .post(
                &format!("/api/v1/orgs/acme/approvals/{id}/approve"),
                json!({"comment": "ok"}),
            )
            .await,
    );
    assert_eq!(done["status"], "applied", "{done}");
    id
}

async fn deliveries(http: &Http, hook: &str) -> Vec<Value> {
    util::ok_data(
        "deliveries",
        http.get(&format!("/api/v1/orgs/acme/webhooks/{hook}/deliveries")).await,
    )
    .as_array()
    .cloned()
    .unwrap_or_default()
}

#[tokio::test]
async fn steps_arrive_signed_in_order_without_values_and_a_deleted_hook_gets_nothing() {
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let all = Receiver::start(0).await;
    let slack = Receiver::start(0).await;
    let hook = add_hook(&w.alice, &all, json!([]), "coffer").await;
    add_hook(&w.root, &slack, json!(["approval.applied"]), "slack").await;

    // Listing shows no secret.
    let listed = util::ok_data("list", w.alice.get("/api/v1/orgs/acme/webhooks").await);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert!(!listed.to_string().contains("whsec_"), "{listed}");

    let id = change(&w, "db-value-two-x2").await;
    let bodies = all.wait_for(3).await;
    let events: Vec<Value> = bodies.iter().map(|b| serde_json::from_str(b).expect("json")).collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        names,
        ["approval.requested", "approval.approved", "approval.applied"],
        "{bodies:?}"
    );
    for e in &events {
        assert_eq!(e["request_id"], id.as_str(), "{e}");
        assert_eq!(e["org"], "acme", "{e}");
        assert_eq!(e["environment"], "api/production", "{e}");
        assert_eq!(e["key"], "DB", "{e}");
    }
    assert_eq!(events[0]["actor"], format!("user:{DEV}"), "{}", events[0]);
    assert_eq!(events[1]["actor"], format!("user:{ALICE}"), "{}", events[1]);
    let texts = slack.wait_for(1).await;
    let s: Value = serde_json::from_str(&texts[0]).expect("slack json");
    assert_eq!(s.as_object().map(|o| o.len()), Some(1), "only text: {s}");
    let text = s["text"].as_str().expect("text");
    assert!(
        text.contains("applied") && text.contains("DB") && text.contains("api/production"),
        "{text}"
    );
    for b in bodies.iter().chain(texts.iter()) {
        assert!(!b.contains("x1") && !b.contains("x2"), "a value in a body: {b}");
    }
    assert_eq!(all.inner.bad.load(Ordering::SeqCst), 0, "every signature verified");

    // The delivery log.
    let log = deliveries(&w.alice, &hook).await;
    assert_eq!(log.len(), 3, "{log:?}");
    for d in &log {
        assert_eq!(
            (d["status"].as_str(), d["attempts"].as_i64(), d["last_status"].as_i64()),
            (Some("delivered"), Some(1), Some(200)),
            "{d}"
        );
    }

    // Deleting the hook stops its deliveries; the other hook still gets its own.
    util::ok_data(
        "delete",
        w.alice.delete(&format!("/api/v1/orgs/acme/webhooks/{hook}")).await,
    );
    util::expect_error(
        "deleted hook log",
        w.alice
            .get(&format!("/api/v1/orgs/acme/webhooks/{hook}/deliveries"))
            .await,
        404,
        "not_found",
    );
    change(&w, "db-value-three-x3").await;
    slack.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(all.bodies().len(), 3, "a deleted hook gets nothing more");
    assert_eq!(all.inner.hits.load(Ordering::SeqCst), 3);

    // Audited; no secret in the server's log.
    let audit = util::ok_data(
        "audit",
        w.root
            .get("/api/v1/audit/records?org=acme&action=webhook.&limit=100")
            .await,
    );
    let audit = audit.to_string();
    assert!(
        audit.contains("webhook.create") && audit.contains("webhook.delete"),
        "{audit}"
    );
    let secret = all.inner.secret.lock().unwrap().clone();
    assert!(!w.server.log_text().contains(&secret), "the secret in the log");
    assert!(!audit.contains(&secret));
}

#[tokio::test]
async fn a_failing_receiver_is_retried_and_bad_input_is_refused() {
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let flaky = Receiver::start(2).await;
    let hook = add_hook(&w.alice, &flaky, json!(["approval.requested"]), "coffer").await;

    util::remember_secret("db-value-four-x4");
    let (st, body) = w
        .dev
        .post(&format!("{}/secrets/DB", w.env), json!({"value": "db-value-four-x4"}))
        .await;
    assert_eq!(st.as_u16(), 202, "{body}");
    let got = flaky.wait_for(1).await;
    assert!(
        got[0].contains("approval.requested") && !got[0].contains("x4"),
        "{got:?}"
    );
    assert_eq!(
        flaky.inner.hits.load(Ordering::SeqCst),
        3,
        "two failures, then delivered"
    );
    let log = deliveries(&w.alice, &hook).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(
        (
            log[0]["status"].as_str(),
            log[0]["attempts"].as_i64(),
            log[0]["last_status"].as_i64()
        ),
        (Some("delivered"), Some(3), Some(200)),
        "{}",
        log[0]
    );

    // Only admins; clear errors for bad input.
    util::expect_error(
        "developer adds a hook",
        w.dev
            .post("/api/v1/orgs/acme/webhooks", json!({"url": flaky.url}))
            .await,
        403,
        "permission_denied",
    );
    for (body, what) in [
        (json!({"url": "ftp://example.test/x"}), "scheme"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": flaky.url, "events": ["approval.bogus"]}),
            "approval.bogus",
        ),
        (json!({"url": flaky.url, "format": "teams"}), "teams"),
    ] {
        let (st, b) = w.alice.post("/api/v1/orgs/acme/webhooks", body).await;
        assert_eq!(st.as_u16(), 400, "{b}");
        assert!(b.to_string().contains(what), "{b}");
    }
}
