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
