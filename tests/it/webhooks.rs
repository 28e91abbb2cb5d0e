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
const OPS: &str = "ops@acme.test";

#[derive(Default)]
pub(crate) struct Inner {
    secret: Mutex<String>,
    /// answer 500 to this many requests first
    fail_first: AtomicUsize,
    /// requests seen (good or not)
    hits: AtomicUsize,
    /// accepted (verified) bodies
    bodies: Mutex<Vec<String>>,
    /// signature failures
    pub(crate) bad: AtomicUsize,
}

/// A webhook receiver that verifies the signature like docs/webhooks.md
/// says (HMAC-SHA256 over "<t>.<body>", 5 minutes tolerance).
#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    pub(crate) inner: Arc<Inner>,
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
    pub(crate) async fn start(fail_first: usize) -> Receiver {
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
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<String> {
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
    /// the storage URL (raw reads of the database)
    url: String,
    /// unseal key shares
    shares: Vec<String>,
    root: Http,
    alice: Http,
    dev: Http,
    env: String,
}

/// acme/api/production, protected for writes (one approval); Alice admin,
/// Dev a developer; jobs every 200 ms.
async fn world(dir: &std::path::Path) -> World {
    world_with(dir, "").await
}

/// [`world`] with more server configuration.
async fn world_with(dir: &std::path::Path, extra: &str) -> World {
    let url = util::fresh_storage_url(dir).await;
    let config = format!("[jobs]\ninterval_ms = 200\n{extra}");
    let server = Server::start_full(dir, &url, "tls_disable = true", &config, &[]);
    let anon = server.client(None);
    let (root, shares) = util::boot(&anon).await;
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
        url,
        shares,
        root,
        alice,
        dev,
        env,
    }
}

/// Register a hook for `r`; gives the receiver its secret; returns the id.
pub(crate) async fn add_hook(http: &Http, r: &Receiver, events: Value, format: &str) -> String {
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

/// Every stored column of the `webhooks` rows, as bytes.
async fn raw_hooks(db: &sqlx::AnyPool) -> Vec<(String, String, Option<Vec<u8>>, Option<i64>)> {
    use sqlx::Row;
    sqlx::query("SELECT id, secret, sealed_secret, kek_version FROM webhooks ORDER BY created_at")
        .fetch_all(db)
        .await
        .expect("read webhooks")
        .iter()
        .map(|r| {
            (
                r.get("id"),
                r.get("secret"),
                r.get("sealed_secret"),
                r.get("kek_version"),
            )
        })
        .collect()
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn the_signing_secret_is_sealed_in_the_database_and_an_older_clear_one_is_sealed_after_unseal() {
    let dir = util::tempdir();
    let mut w = world(dir.path()).await;
    let db = crate::keys::pool(&w.url).await;
    let receiver = Receiver::start(0).await;
    let hook = add_hook(&w.alice, &receiver, json!(["approval.requested"]), "coffer").await;
    let secret = receiver.inner.secret.lock().unwrap().clone();
    let key_hex = secret.trim_start_matches("whsec_").to_owned();

    // The raw row: no secret in clear, in any form; sealed under KEK v1.
    let rows = raw_hooks(&db).await;
    assert_eq!(rows.len(), 1);
    let (id, clear, sealed, kek) = &rows[0];
    assert_eq!(id, &hook);
    assert_eq!(clear, "", "the clear column stays empty");
    let sealed = sealed.clone().expect("sealed secret stored");
    assert!(sealed.len() > 64, "{} bytes", sealed.len());
    assert!(
        !holds(&sealed, &secret) && !holds(&sealed, &key_hex),
        "the secret in the row"
    );
    let key = hex::decode(&key_hex).expect("hex");
    assert!(!sealed.windows(key.len()).any(|w| w == key), "the raw key in the row");
    assert_eq!(*kek, Some(1));

    // Delivery still signs with it: the receiver verifies.
    util::remember_secret("db-value-five-x5");
    let (st, body) = w
        .dev
        .post(&format!("{}/secrets/DB", w.env), json!({"value": "db-value-five-x5"}))
        .await;
    assert_eq!(st.as_u16(), 202, "{body}");
    receiver.wait_for(1).await;
    assert_eq!(receiver.inner.bad.load(Ordering::SeqCst), 0, "the signature verified");

    // KEK rotation: version 1 still seals the hook's secret, so it cannot be
    // destroyed until a re-wrap moved it (with the DEKs) to version 2.
    util::ok_data("rotate", w.root.post("/api/v1/orgs/acme/keks/rotate", json!({})).await);
    let (st, b) = w.root.delete("/api/v1/orgs/acme/keks/1").await;
    assert_eq!(st.as_u16(), 409, "{b}");
    assert!(b.to_string().contains("webhook secrets"), "{b}");
    let done = util::ok_data("rewrap", w.root.post("/api/v1/orgs/acme/keks/rewrap", json!({})).await);
    assert_eq!(done["done"], true, "{done}");
    let rows = raw_hooks(&db).await;
    assert_eq!(rows[0].3, Some(2), "the hook's secret moved to KEK v2");
    assert_ne!(rows[0].2.as_deref(), Some(sealed.as_slice()), "re-sealed");
    util::ok_data("destroy v1", w.root.delete("/api/v1/orgs/acme/keks/1").await);

    // A hook stored in clear before migration 0018 (written here by hand,
    // as the older server did).
    use sqlx::Row;
    let org: String = sqlx::query("SELECT id FROM orgs WHERE slug = 'acme'")
        .fetch_one(&db)
        .await
        .expect("org")
        .get("id");
    let old = Receiver::start(0).await;
    let old_secret = format!("whsec_{}", "ab".repeat(32));
    util::remember_secret(&old_secret);
    *old.inner.secret.lock().unwrap() = old_secret.clone();
    let old_id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO webhooks (id, org_id, url, secret, events, format, created_by, created_at) \
         VALUES ($1, $2, $3, $4, 'approval.requested', 'coffer', 'user:old', 1)",
    )
    .bind(old_id.clone())
    .bind(org)
    .bind(old.url.clone())
    .bind(old_secret.clone())
    .execute(&db)
    .await
    .expect("insert an older hook");

    // Restarted, the server is sealed: the job seals nothing and sends nothing.
    w.server.restart_hard();
    let anon = w.server.client(None);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rows = raw_hooks(&db).await;
    let legacy = rows.iter().find(|r| r.0 == old_id).expect("older hook");
    assert_eq!(legacy.1, old_secret, "still clear while sealed (no key to seal with)");
    assert!(legacy.2.is_none());

    // Unsealed: the job's first run seals it; it still signs with the same secret.
    util::unseal(&anon, &[&w.shares[0], &w.shares[1]]).await;
    let mut sealed_now = None;
    for _ in 0..100 {
        let rows = raw_hooks(&db).await;
        let legacy = rows.iter().find(|r| r.0 == old_id).expect("older hook").clone();
        if legacy.2.is_some() {
            sealed_now = Some(legacy);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, clear, sealed, kek) = sealed_now.expect("the older hook's secret was sealed after unseal");
    assert_eq!(clear, "", "the clear column blanked");
    assert!(!holds(&sealed.expect("sealed"), &old_secret));
    assert_eq!(kek, Some(2), "under the active KEK");
    util::remember_secret("db-value-six-x6");
    let dev = w.server.client(Some(w.dev.token()));
    let (st, body) = dev
        .post(&format!("{}/secrets/DB", w.env), json!({"value": "db-value-six-x6"}))
        .await;
    assert_eq!(st.as_u16(), 202, "{body}");
    let got = old.wait_for(1).await;
    assert!(got[0].contains("approval.requested"), "{got:?}");
    assert_eq!(old.inner.bad.load(Ordering::SeqCst), 0, "signed with the older secret");
    receiver.wait_for(2).await;
    assert_eq!(
        receiver.inner.bad.load(Ordering::SeqCst),
        0,
        "signed after rotation and restart"
    );
    assert!(!w.server.log_text().contains(&old_secret), "the secret in the log");
}

#[tokio::test]
async fn break_glass_and_security_signals_reach_a_verifying_receiver_without_values() {
    let dir = util::tempdir();
    let w = world_with(dir.path(), "[audit]\nbulk_reveal_threshold = 1\n").await;
    util::create_user(&w.root, OPS, PASSWORD).await;
    util::add_member(&w.root, "acme", OPS, "member").await;
    util::grant(
        &w.root,
        "acme",
        json!({"user": OPS, "project": "api", "environment": "production",
               "permissions": ["read", "create", "update", "export", "break_glass"]}),
    )
    .await;
    let ops = util::user_client(&w.server.client(None), OPS, PASSWORD).await;
    let glass = Receiver::start(0).await;
    let signals = Receiver::start(0).await;
    let slack = Receiver::start(0).await;
    add_hook(&w.alice, &glass, json!(["break_glass.used"]), "coffer").await;
    add_hook(&w.alice, &signals, json!(["security.signal"]), "coffer").await;
    add_hook(&w.alice, &slack, json!(["break_glass.used"]), "slack").await;

    // Break-glass acts at once and notifies every approver (the org's
    // owners and admins: Alice), signed, with the reason and values kept out.
    let window = util::ok_data(
        "break glass",
        ops.post(
            &format!("{}/break-glass", w.env),
            json!({"reason": "incident 7: rotate leaked value"}),
        )
        .await,
    );
    assert_eq!(window["status"], "unreviewed", "{window}");
    util::remember_secret("db-value-glass-x8");
    let (st, body) = ops
        .post(&format!("{}/secrets/DB", w.env), json!({"value": "db-value-glass-x8"}))
        .await;
    assert_eq!(st.as_u16(), 200, "the write applies at once, no request: {body}");
    let got = glass.wait_for(1).await;
    let ev: Value = serde_json::from_str(&got[0]).expect("json");
    assert_eq!(ev["event"], "break_glass.used", "{ev}");
    assert_eq!(ev["request_id"], window["id"], "{ev}");
    assert_eq!(ev["actor"], format!("user:{OPS}"), "{ev}");
    assert_eq!(ev["environment"], "api/production", "{ev}");
    assert_eq!(ev["approvers"], json!([ALICE]), "{ev}");
    let text = slack.wait_for(1).await;
    assert!(
        text[0].contains("break-glass used") && text[0].contains(ALICE),
        "{text:?}"
    );

    // A bulk reveal (two values in one inject, threshold 1) is a security
    // signal for acme's hooks: names and counts only.
    util::remember_secret("second-value-x7");
    util::write_secret(&w.root, &w.env, "SECOND", "second-value-x7").await;
    let (st, body) = ops.post(&format!("{}/inject", w.env), json!({})).await;
    assert_eq!(st.as_u16(), 200, "{body}");
    let got = signals.wait_for(1).await;
    let ev: Value = serde_json::from_str(&got[0]).expect("json");
    assert_eq!(ev["event"], "security.signal", "{ev}");
    assert_eq!(ev["signal"], "bulk_reveal", "{ev}");
    assert_eq!(ev["org"], "acme", "{ev}");
    assert_eq!(ev["actor"], format!("user:{OPS}"), "{ev}");
    assert_eq!(
        (ev["count"].as_u64(), ev["threshold"].as_u64()),
        (Some(2), Some(1)),
        "{ev}"
    );

    for r in [&glass, &signals, &slack] {
        assert_eq!(r.inner.bad.load(Ordering::SeqCst), 0, "every signature verified");
        for b in r.bodies() {
            assert!(
                !b.contains("x1") && !b.contains("x7") && !b.contains("x8") && !b.contains("incident 7"),
                "a value or the reason in a body: {b}"
            );
            assert!(!b.contains(ops.token()), "a token in a body: {b}");
        }
    }
}
