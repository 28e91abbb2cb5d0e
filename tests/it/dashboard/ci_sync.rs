//! The CI sync page in a real browser (issue 19): an org admin sees an
//! environment's sync target with its status (pending jobs and the last
//! error of an unreachable provider); the page never shows the token.

use serde_json::json;

use super::{Browser, PASSWORD, assert_no_inline_code, fresh_server, login};
use crate::util;

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_sees_the_sync_targets_and_their_status() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    let env = util::env_path("acme", "api", "production");
    util::write_secret(&root, &env, "DB", "dashboard-sync-value").await;
    util::create_user(&root, "alice@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "alice@acme.test", "admin").await;
    let token = "github_pat_DASHBOARDtoken0123456789";
    util::remember_secret(token);
    // Nothing listens on port 1: every attempt fails and stays pending.
    let t = util::ok_data(
        "add target",
        root.post(
            "/api/v1/orgs/acme/ci-sync",
            json!({"project": "api", "environment": "production", "provider": "github",
                   "owner": "acme", "repo": "api", "api_url": "http://127.0.0.1:1",
                   "token": token, "timeout_ms": 500}),
        )
        .await,
    );
    let id = t["id"].as_str().expect("id").to_owned();

    let b = Browser::start().await;
    login(&b, &server.base, "alice@acme.test", None).await;
    b.client
        .goto(&format!(
            "{}/ui/orgs/acme/ci-sync?project=api&environment=production",
            server.base
        ))
        .await
        .expect("goto ci sync");
    b.wait_count(&format!("tr[data-target='{id}']"), 1).await;
    b.wait_text(&format!("tr[data-target='{id}'] .pending"), "1").await;
    let html = b.source().await;
    assert_no_inline_code("ci sync", &html);
    assert!(html.contains("acme/api") && html.contains("github"), "{html}");
    assert!(!html.contains(token), "the page shows no credential");
    b.shot("ci-sync").await;
    b.close().await;
}

/// Managing targets from the page (issue 19): an admin adds a GitHub
/// target with a token (write-only: never on the page again), a new token
/// the target refuses shows the service's message and the old one keeps
/// syncing, one it accepts replaces it, "Run now" requeues, Remove (with
/// its confirmation) removes.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_adds_a_target_replaces_its_token_runs_it_and_removes_it() {
    use crate::ci_sync::{FakeGitHub, GH_TOKEN};
    const NEW: &str = "github_pat_11DASHBOARDnewTOKENxxxxxxxx";
    const WRONG: &str = "github_pat_11DASHBOARDwrongTOKENxxxxxx";
    util::remember_secret(GH_TOKEN);
    util::remember_secret(NEW);
    util::remember_secret(WRONG);
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = util::Server::start_full(
        dir.path(),
        &url,
        "tls_disable = true",
        "[jobs]\ninterval_ms = 200\n",
        &[],
    );
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    let env = util::env_path("acme", "api", "production");
    util::write_secret(&root, &env, "DB", "dashboard-synced-value-1").await;
    util::create_user(&root, "alice@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "alice@acme.test", "admin").await;
    let gh = FakeGitHub::start("acme", "api").await;

    let b = Browser::start().await;
    login(&b, &server.base, "alice@acme.test", None).await;
    b.click("a[href='/ui/orgs/acme']").await;
    b.click("#ci-sync-link").await;
    b.wait_path("/ui/orgs/acme/ci-sync").await;
    b.wait_count("#no-targets", 1).await;
    assert_no_inline_code("ci sync", &b.source().await);

    b.fill("#target-project", "api").await;
    b.fill("#target-environment", "production").await;
    b.fill("#target-owner", "acme").await;
    b.fill("#target-repo", "api").await;
    b.fill("#target-api-url", &gh.url).await;
    b.fill("#target-token", GH_TOKEN).await;
    b.fill("#target-timeout", "400").await;
    b.click("#target-form button[type=submit]").await;
    b.wait_count("#sync-targets tbody tr", 1).await;
    gh.wait_for(&[("DB", "dashboard-synced-value-1")]).await;
    assert!(!b.source().await.contains(GH_TOKEN), "the token is write-only");
    let listed = util::ok_data("list", root.get("/api/v1/orgs/acme/ci-sync").await);
    let id = listed[0]["id"].as_str().expect("id").to_owned();
    let row = format!("tr[data-target='{id}']");

    // A token GitHub refuses: the message, the old token stays.
    b.fill(&format!("{row} .token-target input[name=token]"), WRONG).await;
    b.click(&format!("{row} .token-target button[type=submit]")).await;
    b.wait_count(".error", 1).await;
    let msg = b.text(".error").await;
    assert!(msg.contains("old one is kept"), "{msg}");
    assert!(
        !b.source().await.contains(WRONG),
        "the refused token is not rendered back"
    );
    util::write_secret(&root, &env, "DB", "dashboard-synced-value-2").await;
    gh.wait_for(&[("DB", "dashboard-synced-value-2")]).await;

    // One it accepts replaces it.
    gh.accept(NEW);
    b.fill(&format!("{row} .token-target input[name=token]"), NEW).await;
    b.click(&format!("{row} .token-target button[type=submit]")).await;
    wait_audit(&root, "ci_sync.set_credential", 2).await;
    b.wait_count(".error", 0).await;
    gh.revoke(GH_TOKEN);
    util::write_secret(&root, &env, "DB", "dashboard-synced-value-3").await;
    gh.wait_for(&[("DB", "dashboard-synced-value-3")]).await;
    assert!(!b.source().await.contains(NEW), "the token is write-only");

    // Run now: the service's run (audited), back on the page.
    b.click(&format!("{row} .run-target button[type=submit]")).await;
    wait_audit(&root, "ci_sync.run", 1).await;
    b.wait_count(&row, 1).await;

    b.click(&format!("{row} .remove-target input[name=confirm]")).await;
    b.click(&format!("{row} .remove-target button[type=submit]")).await;
    b.wait_count("#no-targets", 1).await;
    b.shot("ci-sync-manage").await;
    b.close().await;
    let listed = util::ok_data("list", root.get("/api/v1/orgs/acme/ci-sync").await);
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    assert!(!server.log_text().contains(NEW) && !server.log_text().contains(GH_TOKEN));
}

/// Wait (10 s at most) until the audit trail has `n` records of `action`.
async fn wait_audit(root: &util::Http, action: &str, n: usize) {
    let mut seen = 0;
    for _ in 0..100 {
        let records = util::ok_data(
            "audit",
            root.get(&format!("/api/v1/audit/records?org=acme&action={action}&limit=100"))
                .await,
        );
        seen = records
            .as_array()
            .map_or(0, |r| r.iter().filter(|x| x["action"] == action).count());
        if seen >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{seen} audit records of {action}, wanted {n}");
}
