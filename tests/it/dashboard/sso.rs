//! Single sign-on in a real browser (issue 20): the login page's
//! "Sign in with Acme IdP" button (`/ui/login?org=acme`), the real
//! `oidc-provider`'s login and consent forms filled in Chromium, and back
//! on the dashboard signed in as the person created just in time, seeing
//! the secret their mapped group may reveal. The session cookie is no API
//! token; a callback replayed into another browser is refused.

use super::{Browser, assert_no_inline_code, raw};
use crate::sso::{ALICE, Idp, users, world};
use crate::util;

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_with_the_provider_in_chromium() {
    let dir = util::tempdir();
    let idp = Idp::start(users());
    let (server, _root, _anon) = world(dir.path(), &idp, serde_json::json!({})).await;
    let b = Browser::start().await;

    b.client
        .goto(&format!("{}/ui/login?org=acme", server.base))
        .await
        .expect("login page");
    assert_eq!(b.text("#sso-submit").await, "Sign in with Acme IdP");
    assert_no_inline_code("login", &b.source().await);
    b.click("#sso-submit").await;

    // The provider's own pages: its login form, then its consent form.
    b.element("input[name=login]").await;
    assert!(b.client.current_url().await.unwrap().as_str().starts_with(&idp.issuer));
    b.fill("input[name=login]", "alice").await;
    b.fill("input[name=password]", "any").await;
    b.click("button[type=submit]").await;
    b.element("input[value=consent]").await;
    b.click("button[type=submit]").await;

    // Back on coffer, signed in.
    b.wait_path("/ui/orgs").await;
    let page = b.source().await;
    assert!(page.contains(ALICE), "signed in as alice");
    assert!(page.contains("acme"), "a member of acme");
    b.client
        .goto(&format!("{}/ui/orgs/acme/projects/api/envs/production", server.base))
        .await
        .expect("env page");
    assert!(b.source().await.contains("DB"), "the group's grant lists the secret");

    // The dashboard's callback URL replayed elsewhere (no coffer_sso
    // cookie of the browser that started it) is refused.
    let (st, body) = {
        let res = raw()
            .get(format!("{}/ui/sso/callback?state=forged&code=forged", server.base))
            .send()
            .await
            .expect("GET");
        (res.status().as_u16(), res.text().await.unwrap_or_default())
    };
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("single sign-on failed"), "{body}");
    b.close().await;
}
