//! Protected environments (issue 17) on the real binary: change requests
//! instead of versions, second-person approval with a threshold, stale on
//! an intervening write, time-boxed reveal grants, service-account inject
//! exemption, break-glass with its review queue, the expiry job, and an
//! audit record for every step. Runs on SQLite and PostgreSQL
//! (`COFFER_TEST_STORAGE`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{self, Http, Server};

const PASSWORD: &str = "correct horse battery staple 17";
const ALICE: &str = "alice@acme.test";
const BOB: &str = "bob@acme.test";
const CAROL: &str = "carol@acme.test";
const DEV: &str = "dev@acme.test";
const DEV2: &str = "dev2@acme.test";
const VIEWER: &str = "viewer@acme.test";
const OPS: &str = "ops@acme.test";

struct World {
    _server: Server,
    root: Http,
    users: Vec<(&'static str, Http)>,
    env: String,
}

impl World {
    fn user(&self, email: &str) -> &Http {
        &self
            .users
            .iter()
            .find(|(e, _)| *e == email)
            .unwrap_or_else(|| panic!("no user {email}"))
            .1
    }
}

/// acme/api/production with admins Alice, Bob, Carol; Dev and Dev2
/// (developer + export + delete), Viewer (viewer), Ops (write and
/// break_glass); the jobs run every 200 ms.
async fn world(dir: &std::path::Path) -> World {
    let url = util::fresh_storage_url(dir).await;
    let server = Server::start_full(dir, &url, "tls_disable = true", "[jobs]\ninterval_ms = 200\n", &[]);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    let env = util::env_path("acme", "api", "production");
    let mut users = Vec::new();
    for (email, role, perms) in [
        (ALICE, "admin", None),
        (BOB, "admin", None),
        (CAROL, "admin", None),
        (
            DEV,
            "member",
            Some(json!(["read", "reveal", "create", "update", "delete", "export"])),
        ),
        (
            DEV2,
            "member",
            Some(json!(["read", "reveal", "create", "update", "delete", "export"])),
        ),
        (VIEWER, "member", Some(json!(["read"]))),
        (OPS, "member", Some(json!(["read", "create", "update", "break_glass"]))),
    ] {
        util::create_user(&root, email, PASSWORD).await;
        util::add_member(&root, "acme", email, role).await;
        if let Some(perms) = perms {
            util::grant(
                &root,
                "acme",
                json!({"user": email, "project": "api", "environment": "production", "permissions": perms}),
            )
            .await;
        }
        users.push((email, util::user_client(&anon, email, PASSWORD).await));
    }
    World {
        _server: server,
        root,
        users,
        env,
    }
}

async fn set_policy(root: &Http, policy: Value) -> Value {
    util::ok_data(
        "set policy",
        root.put("/api/v1/orgs/acme/approval-policies/api/production", policy)
            .await,
    )
}

/// The request id of a 202 answer.
#[track_caller]
fn pending((st, body): (reqwest::StatusCode, Value)) -> String {
    assert_eq!(st.as_u16(), 202, "a request instead of a change: {body}");
    assert_eq!(body["code"], "approval_pending", "{body}");
    assert_eq!(body["data"]["status"], "pending", "{body}");
    body["data"]["request_id"].as_str().expect("request id").to_owned()
}

async fn show(http: &Http, id: &str) -> Value {
    util::ok_data(
        "show request",
        http.get(&format!("/api/v1/orgs/acme/approvals/{id}")).await,
    )
}

async fn approve(http: &Http, id: &str) -> (reqwest::StatusCode, Value) {
    http.post(
        &format!("/api/v1/orgs/acme/approvals/{id}/approve"),
        json!({"comment": "looks right"}),
    )
    .await
}

async fn revealed(http: &Http, env: &str, key: &str) -> Value {
    util::ok_data("reveal", http.get(&format!("{env}/secrets/{key}?reveal=true")).await)
}

/// The `approval.*` actions recorded for the organization.
async fn approval_actions(root: &Http) -> Vec<String> {
    let data = util::ok_data(
        "audit search",
        root.get("/api/v1/audit/records?org=acme&action=approval.&limit=1000")
            .await,
    );
    let records = data["records"]
        .as_array()
        .or_else(|| data.as_array())
        .cloned()
        .unwrap_or_default();
    records
        .iter()
        .filter_map(|r| r["action"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn changes_wait_for_two_other_people_and_go_stale_after_an_intervening_write() {
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let env = w.env.clone();
    util::write_secret(&w.root, &env, "DB", "db-value-one-x1").await;
    set_policy(
        &w.root,
        json!({"actions": ["write", "delete", "rollback"], "required": 2, "approver_role": "admin"}),
    )
    .await;
    for v in ["db-value-two-x2", "db-value-three-x3", "db-value-four-x4"] {
        util::remember_secret(v);
    }

    // A write creates a request, not a version.
    let r1 = pending(
        w.user(DEV)
            .post(&format!("{env}/secrets/DB"), json!({"value": "db-value-two-x2"}))
            .await,
    );
    let now = revealed(&w.root, &env, "DB").await;
    assert_eq!(
        (now["value"].as_str(), now["version"].as_i64()),
        (Some("db-value-one-x1"), Some(1))
    );
    let listed = util::ok_data(
        "list",
        w.user(VIEWER).get("/api/v1/orgs/acme/approvals?status=pending").await,
    );
    assert!(
        listed
            .as_array()
            .is_some_and(|l| l.iter().any(|r| r["id"] == r1.as_str())),
        "{listed}"
    );
    // Approvers without reveal see metadata, never the value.
    let (st, body) = w.user(VIEWER).get(&format!("/api/v1/orgs/acme/approvals/{r1}")).await;
    assert_eq!(st.as_u16(), 200, "{body}");
    assert_eq!(
        (body["data"]["key"].as_str(), body["data"]["type"].as_str()),
        (Some("DB"), Some("text"))
    );
    assert!(
        !body.to_string().contains("x1") && !body.to_string().contains("x2"),
        "{body}"
    );
    // A viewer is no approver; an approver holding reveal sees the diff.
    util::expect_error(
        "viewer approves",
        approve(w.user(VIEWER), &r1).await,
        403,
        "permission_denied",
    );
    let seen = show(w.user(ALICE), &r1).await;
    assert_eq!(seen["current_value"], "db-value-one-x1", "{seen}");
    assert_eq!(seen["proposed_value"], "db-value-two-x2", "{seen}");

    // Threshold of two: one approval is not enough, the same person twice
    // counts once, the second person applies it.
    let one = util::ok_data("alice approves", approve(w.user(ALICE), &r1).await);
    assert_eq!(
        (one["status"].as_str(), one["approvals"].as_i64()),
        (Some("pending"), Some(1)),
        "{one}"
    );
    util::expect_error("alice again", approve(w.user(ALICE), &r1).await, 409, "conflict");
    assert_eq!(revealed(&w.root, &env, "DB").await["version"], 1);
    let two = util::ok_data("bob approves", approve(w.user(BOB), &r1).await);
    assert_eq!(two["status"], "applied", "{two}");
    let now = revealed(&w.root, &env, "DB").await;
    assert_eq!(
        (now["value"].as_str(), now["version"].as_i64()),
        (Some("db-value-two-x2"), Some(2))
    );
    let history = util::ok_data("history", w.root.get(&format!("{env}/secrets/DB/history")).await);
    assert_eq!(history[1]["created_by"], DEV, "the author wrote the version: {history}");

    // The author never approves their own request.
    let r2 = pending(
        w.user(ALICE)
            .post(&format!("{env}/secrets/DB"), json!({"value": "db-value-three-x3"}))
            .await,
    );
    util::expect_error(
        "self-approval",
        approve(w.user(ALICE), &r2).await,
        403,
        "permission_denied",
    );

    // An intervening write (root: break-glass) makes it stale at the threshold.
    util::ok_data("bob approves r2", approve(w.user(BOB), &r2).await);
    util::write_secret(&w.root, &env, "DB", "db-value-four-x4").await;
    let stale = util::ok_data("carol approves r2", approve(w.user(CAROL), &r2).await);
    assert_eq!(stale["status"], "stale", "{stale}");
    let now = revealed(&w.root, &env, "DB").await;
    assert_eq!(
        (now["value"].as_str(), now["version"].as_i64()),
        (Some("db-value-four-x4"), Some(3))
    );
    util::expect_error(
        "decide a stale request",
        approve(w.user(BOB), &r2).await,
        409,
        "conflict",
    );

    // Delete and rollback make requests too; one rejection rejects.
    let r3 = pending(w.user(DEV).delete(&format!("{env}/secrets/DB")).await);
    let r4 = pending(
        w.user(DEV)
            .post(&format!("{env}/secrets/DB/rollback"), json!({"version": 1}))
            .await,
    );
    assert_eq!(show(w.user(BOB), &r4).await["kind"], "rollback");
    let rejected = util::ok_data(
        "reject",
        w.user(BOB)
            .post(
                &format!("/api/v1/orgs/acme/approvals/{r3}/reject"),
                json!({"comment": "no"}),
            )
            .await,
    );
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert_eq!(revealed(&w.root, &env, "DB").await["version"], 3, "nothing deleted");
    // Paths without a request of their own refuse rather than bypass.
    util::expect_error(
        "restore needs delete, which the policy withholds",
        w.user(DEV).post(&format!("{env}/secrets/DB/restore"), json!({})).await,
        403,
        "approval_required",
    );

    // Root's writes on the protected environment wait in the break-glass queue.
    let queue = util::ok_data("queue", w.user(ALICE).get("/api/v1/orgs/acme/break-glass").await);
    assert!(
        queue
            .as_array()
            .is_some_and(|q| q.iter().any(|r| r["author_kind"] == "root")),
        "{queue}"
    );

    let actions = approval_actions(&w.root).await;
    for a in [
        "approval.policy_set",
        "approval.request",
        "approval.approve",
        "approval.apply",
        "approval.stale",
        "approval.reject",
        "approval.break_glass",
    ] {
        assert!(actions.iter().any(|x| x == a), "audit has {a}: {actions:?}");
    }
}

#[tokio::test]
async fn reveal_grants_are_time_boxed_service_accounts_inject_and_requests_expire() {
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let env = w.env.clone();
    util::write_secret(&w.root, &env, "API_KEY", "api-key-value-y1").await;
    util::service_account(&w.root, "acme", "deployer", json!({})).await;
    util::grant(
        &w.root,
        "acme",
        json!({"service_account": "deployer", "project": "api", "environment": "production",
               "permissions": ["read", "export"]}),
    )
    .await;
    let sa_token = util::sa_token(&w.root, "acme", "deployer", json!({})).await;
    let sa = w.root.with_token(sa_token["token"].as_str().expect("token"));
    set_policy(
        &w.root,
        json!({"actions": ["reveal", "export"], "required": 1, "grant_ttl_s": 3}),
    )
    .await;

    // People need approval to reveal or export; the deployer injects at once.
    util::expect_error(
        "reveal",
        w.user(DEV).get(&format!("{env}/secrets/API_KEY?reveal=true")).await,
        403,
        "approval_required",
    );
    util::expect_error(
        "inject",
        w.user(DEV).post(&format!("{env}/inject"), json!({})).await,
        403,
        "approval_required",
    );
    let injected = util::ok_data("sa inject", sa.post(&format!("{env}/inject"), json!({})).await);
    assert!(injected.to_string().contains("api-key-value-y1"), "{injected}");

    // An approved reveal is a grant for the requester alone, until it ends.
    let req = util::ok_data(
        "request reveal",
        w.user(DEV)
            .post(
                "/api/v1/orgs/acme/approvals",
                json!({"project": "api", "environment": "production", "kind": "reveal", "key": "API_KEY",
                       "reason": "debugging a 401"}),
            )
            .await,
    );
    let id = req["id"].as_str().expect("id").to_owned();
    util::expect_error(
        "self-approval",
        approve(w.user(DEV), &id).await,
        403,
        "permission_denied",
    );
    let granted = util::ok_data("approve reveal", approve(w.user(ALICE), &id).await);
    assert_eq!(granted["status"], "approved", "{granted}");
    assert!(granted["grant_until"].is_string(), "{granted}");
    assert_eq!(
        revealed(w.user(DEV), &env, "API_KEY").await["value"],
        "api-key-value-y1"
    );
    util::expect_error(
        "another developer",
        w.user(DEV2).get(&format!("{env}/secrets/API_KEY?reveal=true")).await,
        403,
        "approval_required",
    );
    util::expect_error(
        "no export grant",
        w.user(DEV).post(&format!("{env}/inject"), json!({})).await,
        403,
        "approval_required",
    );
    tokio::time::sleep(Duration::from_millis(4500)).await;
    util::expect_error(
        "grant over",
        w.user(DEV).get(&format!("{env}/secrets/API_KEY?reveal=true")).await,
        403,
        "approval_required",
    );

    // A pending request past its expiry is expired by the job.
    set_policy(
        &w.root,
        json!({"actions": ["reveal", "export"], "required": 1, "request_ttl_s": 1}),
    )
    .await;
    let req = util::ok_data(
        "request export",
        w.user(DEV)
            .post(
                "/api/v1/orgs/acme/approvals",
                json!({"project": "api", "environment": "production", "kind": "export"}),
            )
            .await,
    );
    let id = req["id"].as_str().expect("id").to_owned();
    let mut status = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        status = show(w.user(ALICE), &id).await["status"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if status == "expired" {
            break;
        }
    }
    assert_eq!(status, "expired");
    util::expect_error("approve expired", approve(w.user(ALICE), &id).await, 409, "conflict");

    let actions = approval_actions(&w.root).await;
    for a in [
        "approval.request",
        "approval.approve",
        "approval.grant",
        "approval.expire",
    ] {
        assert!(actions.iter().any(|x| x == a), "audit has {a}: {actions:?}");
    }
}

#[tokio::test]
async fn break_glass_needs_a_reason_acts_at_once_and_is_reviewed() {
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let env = w.env.clone();
    util::write_secret(&w.root, &env, "TOKEN", "token-value-z1").await;
    set_policy(&w.root, json!({"actions": ["write"], "required": 1})).await;
    util::remember_secret("token-value-z2");

    // Without the permission, or without a reason: refused.
    util::expect_error(
        "developer",
        w.user(DEV)
            .post(&format!("{env}/break-glass"), json!({"reason": "outage"}))
            .await,
        403,
        "permission_denied",
    );
    util::expect_error(
        "no reason",
        w.user(OPS)
            .post(&format!("{env}/break-glass"), json!({"reason": "  "}))
            .await,
        400,
        "invalid",
    );
    pending(
        w.user(OPS)
            .post(&format!("{env}/secrets/TOKEN"), json!({"value": "token-value-z2"}))
            .await,
    );
    let window = util::ok_data(
        "break glass",
        w.user(OPS)
            .post(
                &format!("{env}/break-glass"),
                json!({"reason": "incident 42: rotate leaked token"}),
            )
            .await,
    );
    assert_eq!(window["status"], "unreviewed", "{window}");
    assert!(window["grant_until"].is_string(), "{window}");
    let id = window["id"].as_str().expect("id").to_owned();

    // It acts at once.
    util::ok_data(
        "write under break-glass",
        w.user(OPS)
            .post(&format!("{env}/secrets/TOKEN"), json!({"value": "token-value-z2"}))
            .await,
    );
    assert_eq!(revealed(&w.root, &env, "TOKEN").await["value"], "token-value-z2");

    // Queued for review; the one who broke the glass cannot review it.
    let queue = util::ok_data("queue", w.user(ALICE).get("/api/v1/orgs/acme/break-glass").await);
    assert!(
        queue.as_array().is_some_and(|q| q.iter().any(|r| r["id"] == id.as_str()
            && r["reason"] == "incident 42: rotate leaked token"
            && r["can_decide"] == true)),
        "{queue}"
    );
    let review = |who: &Http, decision: &str| {
        let (who, path) = (who.clone(), format!("/api/v1/orgs/acme/break-glass/{id}/review"));
        let body = json!({"decision": decision, "comment": "checked the incident"});
        async move { who.post(&path, body).await }
    };
    util::expect_error(
        "a viewer reviews",
        review(w.user(VIEWER), "accept").await,
        403,
        "permission_denied",
    );
    util::expect_error("bad decision", review(w.user(ALICE), "maybe").await, 400, "invalid");
    let done = util::ok_data("review", review(w.user(ALICE), "flag").await);
    assert_eq!(
        (done["status"].as_str(), done["reviewed_by"].as_str()),
        (Some("flagged"), Some(ALICE))
    );
    let queue = util::ok_data("queue", w.user(ALICE).get("/api/v1/orgs/acme/break-glass").await);
    assert!(
        queue
            .as_array()
            .is_some_and(|q| q.iter().all(|r| r["id"] != id.as_str())),
        "{queue}"
    );
    util::expect_error("review twice", review(w.user(BOB), "accept").await, 409, "conflict");

    let actions = approval_actions(&w.root).await;
    for a in ["approval.break_glass", "approval.break_glass_use", "approval.review"] {
        assert!(actions.iter().any(|x| x == a), "audit has {a}: {actions:?}");
    }
    // The break-glass record carries the reason, never a value.
    let data = util::ok_data(
        "audit",
        w.root
            .get("/api/v1/audit/records?org=acme&action=approval.&limit=1000")
            .await,
    );
    let text = data.to_string();
    assert!(text.contains("incident 42"), "{text}");
    assert!(!text.contains("token-value"), "{text}");
}

#[tokio::test]
async fn the_cli_prints_the_request_and_approves_it() {
    use crate::cli_tenants::{As, fails, ok};
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    set_policy(&w.root, json!({"actions": ["write"], "required": 1})).await;
    let home = dir.path().join("cli");
    let dev = As::Token(&home, w.user(DEV).token());
    let alice = As::Token(&home, w.user(ALICE).token());
    let ops = As::Token(&home, w.user(OPS).token());
    util::remember_secret("cli-value-w1-long");

    let out = ok(
        &w._server,
        &dev,
        &["secrets", "set", "CLI_KEY", "--env", "production"],
        "cli-value-w1-long",
    );
    assert!(
        out.contains("change request") && out.contains("coffer approvals show"),
        "{out}"
    );
    let id = out
        .split_whitespace()
        .find(|t| uuid::Uuid::parse_str(t).is_ok())
        .unwrap_or_else(|| panic!("a request id in {out}"))
        .to_owned();
    let listed = ok(&w._server, &alice, &["approvals", "list"], "");
    assert!(listed.contains(&id) && listed.contains("CLI_KEY"), "{listed}");
    let err = fails(&w._server, &dev, &["approvals", "approve", &id], "");
    assert!(err.contains("permission denied"), "{err}");
    let done = ok(
        &w._server,
        &alice,
        &["approvals", "approve", &id, "--comment", "fine"],
        "",
    );
    assert!(done.contains("applied"), "{done}");
    assert_eq!(revealed(&w.root, &w.env, "CLI_KEY").await["value"], "cli-value-w1-long");

    // Break-glass from the CLI: a reason is required, then it acts at once.
    let err = fails(
        &w._server,
        &ops,
        &["break-glass", "--env", "production", "--reason", " "],
        "",
    );
    assert!(err.contains("reason"), "{err}");
    let out = ok(
        &w._server,
        &ops,
        &["break-glass", "--env", "production", "--reason", "incident 7"],
        "",
    );
    assert!(out.contains("break-glass") && out.contains("reviews"), "{out}");
    let out = ok(
        &w._server,
        &ops,
        &["secrets", "set", "CLI_KEY", "--env", "production"],
        "cli-value-w2-long",
    );
    assert!(out.contains("version 2"), "{out}");
    let queue = ok(&w._server, &alice, &["approvals", "queue"], "");
    assert!(queue.contains("incident 7"), "{queue}");
}
