//! Issue 18, the leaked-password policy on the organization's Access page:
//! an admin switches block/warn in a real browser (the API and the audit
//! log agree); a member sees the setting but no control, and a forged POST
//! from that session, or one without the CSRF token, gets 403.

use super::{Browser, PASSWORD, csrf_of, fresh_server, login, post, raw};
use crate::util;

async fn policy(root: &util::Http) -> bool {
    let data = util::ok_data("policy", root.get("/api/v1/orgs/acme/breach-policy").await);
    data["block_breached_passwords"].as_bool().expect("a bool")
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_breach_policy_switches_block_and_warn() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let base = server.base.clone();
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["dev"])]).await;
    util::create_user(&root, "ann@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "ann@acme.test", "admin").await;
    util::create_user(&root, "vic@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "vic@acme.test", "member").await;
    let access = "/ui/orgs/acme/access";

    let b = Browser::start().await;
    login(&b, &base, "ann@acme.test", None).await;
    b.client.goto(&format!("{base}{access}")).await.expect("goto");
    b.wait_count("#breach-mode[data-mode='warn']", 1).await;
    assert_eq!(b.count("#breach-off").await, 1, "the test server does not check");
    b.click("#breach-form input[value='block']").await;
    b.click("#breach-save").await;
    b.wait_count("#breach-mode[data-mode='block']", 1).await;
    assert!(policy(&root).await, "the API shows block");
    b.click("#breach-form input[value='warn']").await;
    b.click("#breach-save").await;
    b.wait_count("#breach-mode[data-mode='warn']", 1).await;
    assert!(!policy(&root).await, "the API shows warn");
    let mut audited = 0;
    for _ in 0..50 {
        let (_, audit) = root
            .get("/api/v1/audit/records?org=acme&action=org.breach_policy_set&limit=100")
            .await;
        audited = audit["data"].as_array().map_or(0, |r| {
            r.iter()
                .filter(|r| r["outcome"] == "allowed" && r["actor"] == "ann@acme.test")
                .count()
        });
        if audited >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(audited, 2, "each switch is audited as the admin's, allowed");
    b.close().await;

    // A member sees the setting, no control; forged POSTs get 403.
    let b = Browser::start().await;
    login(&b, &base, "vic@acme.test", None).await;
    let cookie = format!("coffer_session={}", b.cookie("coffer_session").await);
    b.client.goto(&format!("{base}{access}")).await.expect("goto");
    b.wait_count("#breach-mode[data-mode='warn']", 1).await;
    assert_eq!(b.count("#breach-form").await, 0, "no control for a member");
    let csrf = csrf_of(&b.source().await);
    let res = raw()
        .post(format!("{base}{access}/breach-policy"))
        .header("Cookie", &cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&mode=block"))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status().as_u16(), 403, "a member's forged POST");
    let (st, _) = post(&base, &format!("{access}/breach-policy"), &cookie, None).await;
    assert_eq!(st, 403, "no CSRF token");
    assert!(!policy(&root).await, "unchanged");
    b.close().await;
}
