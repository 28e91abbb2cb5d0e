//! Issue 16, Access: members, groups, service accounts and the grants
//! matrix per organization; my tokens and TOTP enrolment — in a real
//! browser, checked against the API.

use serde_json::json;

use super::{
    Browser, PASSWORD, VALUE, assert_no_inline_code, assert_page_headers, csrf_of, fresh_server, login, post, raw,
};
use crate::util;

/// A form POST with the session cookie and these fields.
async fn post_form(base: &str, path: &str, cookie: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let body = serde_urlencoded::to_string(fields).expect("form");
    let res = raw()
        .post(format!("{base}{path}"))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST");
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

async fn session_cookie(b: &Browser) -> String {
    format!("coffer_session={}", b.cookie("coffer_session").await)
}

/// Usable at 375 px: the page does not scroll sideways.
async fn check_375(b: &Browser, ready: &str) {
    b.client.set_window_size(375, 800).await.expect("resize");
    b.client.refresh().await.expect("reload");
    b.element(ready).await;
    assert!(
        b.page_width().await <= 375,
        "{ready}: the page scrolls sideways at 375 px"
    );
    b.client.set_window_size(1280, 800).await.expect("resize");
}

/// An admin adds a member and a group, creates a service account and sees
/// its token once (it works on the API; a reload does not show it again),
/// grants it read on one environment through the matrix (the API then
/// allows exactly that), adds reveal, revokes; a non-admin member sees no
/// admin control and a forged POST from that session gets 403; every new
/// POST without its CSRF token gets 403.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_access_members_groups_service_accounts_and_grants() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let base = server.base.clone();
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["dev", "prod"])]).await;
    let dev = util::env_path("acme", "api", "dev");
    let prod = util::env_path("acme", "api", "prod");
    util::write_secret(&root, &dev, "DB_URL", VALUE).await;
    util::write_secret(&root, &prod, "DB_URL", VALUE).await;
    util::create_user(&root, "ann@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "ann@acme.test", "admin").await;
    util::create_user(&root, "bob@acme.test", PASSWORD).await;
    util::create_user(&root, "vic@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "vic@acme.test", "member").await;

    let b = Browser::start().await;
    login(&b, &base, "ann@acme.test", None).await;
    let cookie = session_cookie(&b).await;
    b.client.goto(&format!("{base}/ui/orgs/acme")).await.expect("goto");
    b.click("#access-link").await;
    let access = "/ui/orgs/acme/access";
    b.wait_path(access).await;
    assert_page_headers(&base, access, &cookie).await;

    // Add a member by email with a role.
    b.fill("#member-email", "bob@acme.test").await;
    b.click("#add-member button[type=submit]").await;
    b.wait_count("#member-table tr[data-email='bob@acme.test']", 1).await;
    let (_, members) = root.get("/api/v1/orgs/acme/members").await;
    assert!(
        members["data"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["email"] == "bob@acme.test" && m["role"] == "member"),
        "{members}"
    );

    // A group, and bob in it.
    b.fill("#group-name", "ops").await;
    b.click("#create-group button[type=submit]").await;
    b.wait_count(".group[data-group='ops']", 1).await;
    b.element("#group-add-ops")
        .await
        .select_by_value("bob@acme.test")
        .await
        .expect("select bob");
    b.click(".group[data-group='ops'] form.add-to-group button").await;
    b.wait_text(".group[data-group='ops'] .group-member", "bob@acme.test")
        .await;
    let (_, groups) = root.get("/api/v1/orgs/acme/groups").await;
    assert_eq!(groups["data"][0]["members"], json!(["bob@acme.test"]), "{groups}");

    // A service account with CIDRs and a certificate mapping; its token once.
    let spki = "ab".repeat(32);
    b.fill("#sa-name", "ci").await;
    b.fill("#sa-cidrs", "127.0.0.0/8, 10.0.0.0/8").await;
    b.fill("#sa-spki", &spki).await;
    b.fill("#sa-cn", "ci.acme.test").await;
    b.click("#create-sa button[type=submit]").await;
    let token = b.text("#sa-token").await;
    util::remember_secret(&token);
    assert!(token.starts_with("cfr_"), "a token: {token}");
    assert_no_inline_code("access with token", &b.source().await);
    b.shot("access").await;
    let (_, sas) = root.get("/api/v1/orgs/acme/service-accounts").await;
    assert_eq!(sas["data"][0]["cidrs"], json!(["127.0.0.0/8", "10.0.0.0/8"]), "{sas}");
    assert_eq!(sas["data"][0]["certificate"]["spki_sha256"], spki.as_str(), "{sas}");
    assert_eq!(sas["data"][0]["certificate"]["subject_cn"], "ci.acme.test", "{sas}");
    let sa = anon.with_token(&token);
    let (st, me) = sa.get("/api/v1/auth/whoami").await;
    assert_eq!((st.as_u16(), me["data"]["name"].as_str()), (200, Some("ci")), "{me}");
    // Shown once: not on the page when it is loaded again.
    b.client.goto(&format!("{base}{access}")).await.expect("goto");
    b.wait_count("#sa-table tr[data-account='ci']", 1).await;
    assert_eq!(b.count("#sa-token").await, 0, "the token is not shown again");
    assert!(!b.source().await.contains(&token), "no token in the page");
    check_375(&b, "#member-table").await;

    // Grants matrix: nobody yet; grant the account read on dev.
    let secrets = format!("{dev}/secrets");
    assert_eq!(sa.get(&secrets).await.0.as_u16(), 403, "no grant yet");
    b.client
        .goto(&format!("{base}/ui/orgs/acme/projects/api"))
        .await
        .expect("goto");
    b.click("#envs a.grants-link[href$='/envs/dev/grants']").await;
    let grants = "/ui/orgs/acme/projects/api/envs/dev/grants";
    b.wait_path(grants).await;
    assert_eq!(b.count("#no-grants").await, 1);
    b.element("#grant-subject")
        .await
        .select_by_value("service_account:ci")
        .await
        .expect("select ci");
    b.click("#grant-read").await;
    b.click("#add-grant button[type=submit]").await;
    let row = "#grants-matrix tr[data-subject='service_account:ci']";
    b.wait_count(row, 1).await;
    assert_eq!(b.count(&format!("{row} input:checked")).await, 1, "read only");
    assert_eq!(b.count(&format!("{row} input[name=read]:checked")).await, 1);
    // Exactly that: list on dev, no reveal, nothing on prod, no write.
    let (st, list) = sa.get(&secrets).await;
    assert_eq!(st.as_u16(), 200, "{list}");
    assert_eq!(sa.get(&format!("{secrets}/DB_URL?reveal=true")).await.0.as_u16(), 403);
    assert_eq!(sa.get(&format!("{prod}/secrets")).await.0.as_u16(), 403);
    let (st, _) = sa.post(&format!("{secrets}/NEW_KEY"), json!({"value": "x"})).await;
    assert_eq!(st.as_u16(), 403, "no create");
    // Add reveal in the row and save: the API now reveals.
    b.click(&format!("{row} input[name=reveal]")).await;
    b.click(&format!("{row} button.save-grant")).await;
    // The boxes are checked before the save lands: wait for the grant.
    let mut all = json!(null);
    for _ in 0..100 {
        all = root.get("/api/v1/orgs/acme/grants").await.1;
        if all["data"][0]["permissions"] == json!(["read", "reveal"]) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(all["data"].as_array().map(Vec::len), Some(1), "one grant: {all}");
    assert_eq!(all["data"][0]["permissions"], json!(["read", "reveal"]), "{all}");
    b.wait_count(&format!("{row} input:checked"), 2).await;
    let (st, got) = sa.get(&format!("{secrets}/DB_URL?reveal=true")).await;
    assert_eq!(st.as_u16(), 200, "{got}");
    assert_page_headers(&base, grants, &cookie).await;
    b.shot("grants").await;
    check_375(&b, "#grants-matrix").await;
    // Revoke: nothing again.
    b.click(&format!("{row} button.revoke-grant")).await;
    b.wait_count("#no-grants", 1).await;
    assert_eq!(sa.get(&secrets).await.0.as_u16(), 403, "revoked");

    // Every new POST without its CSRF token: 403, nothing done.
    for path in [
        "/ui/orgs/acme/access/members",
        "/ui/orgs/acme/access/members/remove",
        "/ui/orgs/acme/access/groups",
        "/ui/orgs/acme/access/groups/ops/members",
        "/ui/orgs/acme/access/groups/ops/members/remove",
        "/ui/orgs/acme/access/service-accounts",
        "/ui/orgs/acme/access/service-accounts/ci/tokens",
        "/ui/orgs/acme/access/service-accounts/ci/delete",
        "/ui/orgs/acme/projects/api/envs/dev/grants",
        "/ui/orgs/acme/projects/api/envs/dev/grants/revoke",
    ] {
        assert_eq!(post(&base, path, &cookie, None).await.0, 403, "{path} without CSRF");
        let (st, _) = post_form(&base, path, &cookie, &[("csrf", "forged"), ("name", "x")]).await;
        assert_eq!(st, 403, "{path} with a wrong CSRF token");
    }
    assert_eq!(
        sa.get("/api/v1/auth/whoami").await.0.as_u16(),
        200,
        "the account lives on"
    );
    let (_, groups) = root.get("/api/v1/orgs/acme/groups").await;
    assert_eq!(
        groups["data"][0]["members"],
        json!(["bob@acme.test"]),
        "nothing changed: {groups}"
    );

    // Change a role, take bob out of the group and the organization.
    let bob = "#member-table tr[data-email='bob@acme.test']";
    b.client.goto(&format!("{base}{access}")).await.expect("goto");
    b.element(&format!("{bob} select"))
        .await
        .select_by_value("admin")
        .await
        .expect("select admin");
    b.click(&format!("{bob} button.change-role")).await;
    let role_of = |members: &serde_json::Value, email: &str| {
        members["data"]
            .as_array()
            .and_then(|l| l.iter().find(|m| m["email"] == email))
            .map(|m| m["role"].as_str().unwrap_or("").to_owned())
    };
    let mut members = json!(null);
    for _ in 0..100 {
        members = root.get("/api/v1/orgs/acme/members").await.1;
        if role_of(&members, "bob@acme.test").as_deref() == Some("admin") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        role_of(&members, "bob@acme.test").as_deref(),
        Some("admin"),
        "{members}"
    );
    b.wait_count(".group[data-group='ops'] .group-member", 1).await;
    b.click(".group[data-group='ops'] li form button").await;
    b.wait_count(".group[data-group='ops'] .group-member", 0).await;
    b.click(&format!("{bob} button.remove-member")).await;
    b.wait_count(bob, 0).await;
    let (_, members) = root.get("/api/v1/orgs/acme/members").await;
    assert_eq!(role_of(&members, "bob@acme.test"), None, "removed: {members}");
    // Delete the service account: its token stops working.
    b.click("#sa-table tr[data-account='ci'] button.delete-account").await;
    b.wait_count("#sa-table tr[data-account='ci']", 0).await;
    assert_eq!(
        sa.get("/api/v1/auth/whoami").await.0.as_u16(),
        401,
        "deleted with its tokens"
    );

    // A member without admin rights: no admin control; forged POSTs 403.
    b.click("header form[action='/ui/logout'] button").await;
    b.wait_path("/ui/login").await;
    login(&b, &base, "vic@acme.test", None).await;
    let vic = session_cookie(&b).await;
    b.client.goto(&format!("{base}{access}")).await.expect("goto");
    b.wait_count("#no-admin", 1).await;
    let html = b.source().await;
    assert_eq!(b.count("main form").await, 0, "no admin control on the access page");
    assert_eq!(b.count("#service-accounts").await, 0, "no service accounts");
    assert_eq!(
        b.count("#member-table tr[data-email='ann@acme.test']").await,
        1,
        "members are visible"
    );
    b.client.goto(&format!("{base}{grants}")).await.expect("goto");
    b.wait_count("#no-admin", 1).await;
    assert_eq!(b.count("main form").await, 0, "no grant control");
    assert_eq!(b.count("#grants-matrix").await, 0);
    assert_page_headers(&base, grants, &vic).await;
    assert_page_headers(&base, access, &vic).await;
    let csrf = csrf_of(&html);
    let forged: [(&str, &[(&str, &str)]); 4] = [
        (
            "/ui/orgs/acme/access/members",
            &[("email", "vic@acme.test"), ("role", "admin")],
        ),
        ("/ui/orgs/acme/access/service-accounts", &[("name", "evil")]),
        ("/ui/orgs/acme/access/groups/ops/members", &[("email", "vic@acme.test")]),
        (grants, &[("subject", "user:vic@acme.test"), ("reveal", "on")]),
    ];
    for (path, fields) in forged {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        let (st, body) = post_form(&base, path, &vic, &all).await;
        assert_eq!(st, 403, "{path} from a member's session: {body}");
    }
    let (_, members) = root.get("/api/v1/orgs/acme/members").await;
    assert!(
        members["data"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["email"] == "vic@acme.test" && m["role"] == "member"),
        "still a member: {members}"
    );
    let (_, all) = root.get("/api/v1/orgs/acme/grants").await;
    assert_eq!(all["data"], json!([]), "no grant made: {all}");
    b.close().await;
}

/// My account: a token made in the page is shown once and works; revoking
/// it in the page makes it fail on the API. TOTP enrolment: the QR image,
/// the secret read from the page, a code computed here confirms it, the
/// recovery codes once; then a login requires TOTP.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_account_tokens_and_totp_enrolment() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let base = server.base.clone();
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::create_user(&root, "ann@acme.test", PASSWORD).await;

    let b = Browser::start().await;
    login(&b, &base, "ann@acme.test", None).await;
    let cookie = session_cookie(&b).await;
    b.click("nav.main-nav a[href='/ui/account']").await;
    b.wait_path("/ui/account").await;
    assert_page_headers(&base, "/ui/account", &cookie).await;
    assert_eq!(
        b.count("#token-table .badge").await,
        1,
        "this session's token is marked"
    );

    // A token, once.
    b.fill("#token-name", "laptop").await;
    b.click("#create-token button[type=submit]").await;
    let token = b.text("#new-token-value").await;
    util::remember_secret(&token);
    let mine = anon.with_token(&token);
    let (st, me) = mine.get("/api/v1/auth/whoami").await;
    assert_eq!(st.as_u16(), 200, "{me}");
    let accessor = me["data"]["accessor"].as_str().expect("accessor").to_owned();
    b.client.goto(&format!("{base}/ui/account")).await.expect("goto");
    let row = format!("#token-table tr[data-accessor='{accessor}']");
    b.wait_count(&row, 1).await;
    assert_eq!(b.count("#new-token-value").await, 0, "not shown again");
    assert!(!b.source().await.contains(&token));
    // Revoke it in the page: the API refuses it.
    b.click(&format!("{row} button.revoke-token")).await;
    b.wait_count(&row, 0).await;
    assert_eq!(mine.get("/api/v1/auth/whoami").await.0.as_u16(), 401, "revoked");

    // TOTP: QR and secret, a code computed here, recovery codes once.
    b.fill("#totp-password", PASSWORD).await;
    b.click("#totp-enroll button[type=submit]").await;
    let qr = b.element("#totp-qr").await;
    let src = qr.attr("src").await.expect("src").unwrap_or_default();
    assert!(
        src.starts_with("data:image/svg+xml;base64,"),
        "a QR image: {}",
        &src[..40.min(src.len())]
    );
    let secret = b.text("#totp-secret").await;
    util::remember_secret(&secret);
    assert_no_inline_code("totp", &b.source().await);
    b.shot("account-totp").await;
    let seed = util::base32_decode(&secret);
    let step = util::unix_now() / 30;
    b.fill("#totp-code", &util::totp_at(&seed, step)).await;
    b.click("#totp-verify button[type=submit]").await;
    b.wait_count("#recovery-codes li", 10).await;
    let first = b.text("#recovery-codes li").await;
    util::remember_secret(&first);
    b.client.goto(&format!("{base}/ui/account")).await.expect("goto");
    b.wait_count("#totp-on", 1).await;
    let html = b.source().await;
    assert!(!html.contains(&first) && !html.contains(&secret), "shown once");
    assert_eq!(b.count("#totp-enroll").await, 0);

    // Every account POST without its CSRF token: 403.
    for path in [
        "/ui/account/tokens",
        &format!("/ui/account/tokens/{accessor}/revoke"),
        "/ui/account/totp/enroll",
        "/ui/account/totp/verify",
    ] {
        assert_eq!(post(&base, path, &cookie, None).await.0, 403, "{path} without CSRF");
    }

    // A login now needs the second factor.
    b.click("header form[action='/ui/logout'] button").await;
    b.wait_path("/ui/login").await;
    b.fill("#email", "ann@acme.test").await;
    b.fill("#password", PASSWORD).await;
    b.click("form[action='/ui/login'] button[type=submit]").await;
    b.wait_text("p.error", "a TOTP code is required for this account").await;
    login(&b, &base, "ann@acme.test", Some(&util::totp_at(&seed, step + 1))).await;
    b.close().await;
}
