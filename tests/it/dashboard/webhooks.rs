//! Issue 17's dashboard pages in a real browser: an environment's approval
//! policy edited from its page (actions, threshold, approver group,
//! service-account exemption, TTLs) and removed; an org's Webhooks page:
//! a hook added with chosen events and the Slack body, its signing secret
//! shown once (never on the page again, nor in the API's list), its
//! delivery log, and Remove. Every form is the CSRF `SessionForm` kind.

use serde_json::json;

use super::{Browser, PASSWORD, assert_no_inline_code, fresh_server, login};
use crate::util;

const ALICE: &str = "alice@acme.test";

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_edits_and_removes_an_environment_approval_policy() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    util::create_user(&root, ALICE, PASSWORD).await;
    util::add_member(&root, "acme", ALICE, "admin").await;
    util::ok_data(
        "group",
        root.post("/api/v1/orgs/acme/groups", json!({"name": "sre"})).await,
    );

    let b = Browser::start().await;
    login(&b, &server.base, ALICE, None).await;
    b.client
        .goto(&format!("{}/ui/orgs/acme/projects/api", server.base))
        .await
        .expect("goto project");
    b.click("a.policy-link").await;
    b.wait_path("/ui/orgs/acme/projects/api/envs/production/approval-policy")
        .await;
    assert_no_inline_code("approval policy", &b.source().await);
    b.wait_count("#no-policy", 1).await;

    b.click("#policy-form input[name=write]").await;
    b.click("#policy-form input[name=reveal]").await;
    b.fill("#policy-required-input", "2").await;
    b.fill("#policy-group-input", "sre").await;
    b.click("#policy-sa-input").await;
    b.fill("#policy-grant-ttl", "600").await;
    b.click("#policy-form button[type=submit]").await;
    b.wait_text("#policy-actions", "write, reveal").await;
    b.wait_text("#policy-required", "2").await;
    b.shot("approval-policy").await;

    let p = util::ok_data(
        "policy",
        root.get("/api/v1/orgs/acme/approval-policies/api/production").await,
    );
    assert_eq!(p["actions"], json!(["write", "reveal"]), "{p}");
    assert_eq!(
        (
            p["required"].as_i64(),
            p["approver_group"].as_str(),
            p["approver_role"].as_str()
        ),
        (Some(2), Some("sre"), Some("")),
        "{p}"
    );
    assert_eq!(p["service_accounts_exempt"], false, "{p}");
    assert_eq!(p["grant_ttl_s"], 600, "{p}");

    // A bad threshold: the API's message on the page, nothing changed.
    b.fill("#policy-required-input", "9").await;
    b.client
        .execute(
            "document.getElementById('policy-required-input').removeAttribute('max')",
            vec![],
        )
        .await
        .expect("lift the browser's own check");
    b.click("#policy-form button[type=submit]").await;
    b.wait_count(".error", 1).await;
    assert!(b.source().await.contains("between 1 and 5"));
    b.wait_text("#policy-required", "2").await;

    b.click("#policy-remove button[type=submit]").await;
    b.wait_count("#no-policy", 1).await;
    b.close().await;
    let (st, body) = root.get("/api/v1/orgs/acme/approval-policies/api/production").await;
    assert!(st.as_u16() == 404 || body["data"].is_null(), "{st} {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_adds_a_webhook_sees_its_secret_once_reads_its_log_and_removes_it() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    util::create_user(&root, ALICE, PASSWORD).await;
    util::add_member(&root, "acme", ALICE, "admin").await;
    util::ok_data(
        "policy",
        root.put(
            "/api/v1/orgs/acme/approval-policies/api/production",
            json!({"actions": ["reveal"], "required": 1}),
        )
        .await,
    );

    let b = Browser::start().await;
    login(&b, &server.base, ALICE, None).await;
    b.click("a[href='/ui/orgs/acme']").await;
    b.click("#webhooks-link").await;
    b.wait_path("/ui/orgs/acme/webhooks").await;
    assert_no_inline_code("webhooks", &b.source().await);
    b.wait_count("#no-webhooks", 1).await;

    b.fill("#webhook-url", "http://127.0.0.1:9/hook").await;
    b.click("#webhook-form input[name='approval.requested']").await;
    b.click("#webhook-form input[name='break_glass.used']").await;
    b.click("#webhook-format option[value=slack]").await;
    b.click("#webhook-form button[type=submit]").await;
    b.wait_count("#webhook-secret", 1).await;
    let secret = b.text("#webhook-secret").await;
    util::remember_secret(&secret);
    assert!(secret.starts_with("whsec_") && secret.len() == 70, "{secret}");
    b.wait_count("#webhook-table tbody tr", 1).await;
    let row = b.text("#webhook-table tbody tr").await;
    assert!(
        row.contains("approval.requested, break_glass.used") && row.contains("slack"),
        "{row}"
    );
    b.shot("webhooks").await;

    // Shown once: not on the page again, not in the API's list.
    b.client
        .goto(&format!("{}/ui/orgs/acme/webhooks", server.base))
        .await
        .expect("reload");
    b.wait_count("#webhook-table tbody tr", 1).await;
    assert_eq!(b.count("#webhook-secret").await, 0);
    assert!(!b.source().await.contains(&secret), "the secret shown again");
    let listed = util::ok_data("list", root.get("/api/v1/orgs/acme/webhooks").await);
    assert!(!listed.to_string().contains(&secret), "{listed}");
    let hook = listed[0]["id"].as_str().expect("id").to_owned();

    // A member's reveal request queues a delivery: the hook's log lists it.
    util::create_user(&root, "dev@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "dev@acme.test", "member").await;
    util::grant(
        &root,
        "acme",
        json!({"user": "dev@acme.test", "project": "api", "environment": "production",
               "permissions": ["read", "reveal"]}),
    )
    .await;
    let dev = util::user_client(&anon, "dev@acme.test", PASSWORD).await;
    util::ok_data(
        "request reveal",
        dev.post(
            "/api/v1/orgs/acme/approvals",
            json!({"kind": "reveal", "project": "api", "environment": "production", "reason": "audit"}),
        )
        .await,
    );
    b.click(&format!("tr[data-webhook='{hook}'] a.deliveries-link")).await;
    b.wait_path(&format!("/ui/orgs/acme/webhooks/{hook}")).await;
    b.wait_count("#delivery-table tbody tr", 1).await;
    assert!(b.text("#delivery-table tbody tr").await.contains("approval.requested"));

    b.client
        .goto(&format!("{}/ui/orgs/acme/webhooks", server.base))
        .await
        .expect("back");
    b.click(&format!("tr[data-webhook='{hook}'] button.remove-webhook"))
        .await;
    b.wait_count("#no-webhooks", 1).await;
    b.close().await;
    let listed = util::ok_data("list", root.get("/api/v1/orgs/acme/webhooks").await);
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
}
