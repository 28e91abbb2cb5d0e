//! The Approvals page in a real browser (issue 17): a pending change
//! request with its value diff for an approver holding reveal, approved from
//! the page (CSRF form), after which the change is applied; the author sees
//! no Approve form on their own request.

use serde_json::json;

use super::{Browser, PASSWORD, assert_no_inline_code, fresh_server, login};
use crate::util;

#[tokio::test(flavor = "multi_thread")]
async fn an_approver_approves_a_change_request_from_the_page() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    let env = util::env_path("acme", "api", "production");
    util::write_secret(&root, &env, "DB", "old-db-value-p1").await;
    for (email, role) in [("alice@acme.test", "admin"), ("dev@acme.test", "member")] {
        util::create_user(&root, email, PASSWORD).await;
        util::add_member(&root, "acme", email, role).await;
    }
    util::grant(
        &root,
        "acme",
        json!({"user": "dev@acme.test", "project": "api", "environment": "production", "role": "developer"}),
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
    util::remember_secret("new-db-value-p2");
    let dev = util::user_client(&anon, "dev@acme.test", PASSWORD).await;
    let (st, body) = dev
        .post(&format!("{env}/secrets/DB"), json!({"value": "new-db-value-p2"}))
        .await;
    assert_eq!(st.as_u16(), 202, "{body}");
    let id = body["data"]["request_id"].as_str().expect("id").to_owned();

    // The author sees the request, with no form to approve it.
    let b = Browser::start().await;
    login(&b, &server.base, "dev@acme.test", None).await;
    b.client
        .goto(&format!("{}/ui/orgs/acme/approvals", server.base))
        .await
        .expect("goto approvals");
    b.wait_count(&format!("article[data-request='{id}']"), 1).await;
    assert_eq!(b.count("form.approve").await, 0, "no approval of one's own request");
    b.close().await;

    // An approver holding reveal sees the diff and approves from the page.
    let b = Browser::start().await;
    login(&b, &server.base, "alice@acme.test", None).await;
    b.click("a[href='/ui/orgs/acme']").await;
    b.click("#approvals-link").await;
    b.wait_path("/ui/orgs/acme/approvals").await;
    assert_no_inline_code("approvals", &b.source().await);
    b.wait_text(".diff-old", "old-db-value-p1").await;
    b.wait_text(".diff-new", "new-db-value-p2").await;
    b.shot("approvals").await;
    b.fill("form.approve input[name=comment]", "checked with dev").await;
    b.click("form.approve button[type=submit]").await;
    b.wait_count("#no-pending", 1).await;
    b.close().await;

    let now = util::ok_data("reveal", root.get(&format!("{env}/secrets/DB?reveal=true")).await);
    assert_eq!(
        (now["value"].as_str(), now["version"].as_i64()),
        (Some("new-db-value-p2"), Some(2))
    );
    let req = util::ok_data("show", root.get(&format!("/api/v1/orgs/acme/approvals/{id}")).await);
    assert_eq!(req["status"], "applied", "{req}");
    assert_eq!(req["votes"][0]["comment"], "checked with dev", "{req}");
}
