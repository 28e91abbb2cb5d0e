//! Issue 16, the admin pages in a real browser: the audit page (a reveal
//! made in the dashboard found by filter, record detail, verify chain,
//! keyset pages, its server time with 1,000+ records), keys and server
//! (root only: KEK versions after a rotation, rewrap progress, seal with
//! confirmation), the root-token login, and `/device` showing which client
//! asked before a Deny that stops a real `coffer login`.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Browser, CliLogin, PASSWORD, VALUE, assert_page_headers, csrf_of, fresh_server, login, post, raw};
use crate::util;

/// A form POST (`application/x-www-form-urlencoded`) with the session cookie.
async fn post_form(base: &str, path: &str, cookie: &str, form: &[(&str, &str)]) -> (u16, String) {
    let res = raw()
        .post(format!("{base}{path}"))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).expect("form"))
        .send()
        .await
        .expect("POST");
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

/// GET with the session cookie: status and how long the server took.
async fn timed_get(base: &str, path: &str, cookie: &str) -> (u16, Duration, String) {
    let start = Instant::now();
    let res = raw()
        .get(format!("{base}{path}"))
        .header("Cookie", cookie)
        .send()
        .await
        .expect("GET");
    let status = res.status().as_u16();
    let body = res.text().await.unwrap_or_default();
    (status, start.elapsed(), body)
}

/// The root token's dashboard login (`/ui/login/token`); lands on the server page.
async fn root_login(b: &Browser, base: &str, token: &str) {
    b.client.goto(&format!("{base}/ui/login")).await.expect("goto login");
    b.click("#root-login").await;
    b.wait_path("/ui/login/token").await;
    b.fill("#root-token", token).await;
    b.click("#token-form button[type=submit]").await;
    b.wait_path("/ui/server").await;
}

async fn session_cookie(b: &Browser) -> String {
    format!("coffer_session={}", b.cookie("coffer_session").await)
}

/// Issue 16: a reveal made in the dashboard appears on the audit page
/// (filter `secret.reveal`), the filter narrows the table, the record's
/// detail shows its fields, keyset pages go back in time; an organization
/// admin sees their organization's records but no Verify and no Server;
/// root verifies the chain (OK); a verify without the CSRF token is 403.
/// The page stays fast with 1,000+ records.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_audit_page_finds_a_reveal_and_verifies_the_chain() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["dev"])]).await;
    let env = util::env_path("acme", "api", "dev");
    util::write_secret(&root, &env, "DB_URL", VALUE).await;
    util::create_user(&root, "ann@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "ann@acme.test", "admin").await;
    // 1,000+ records of acme (each read is one record).
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let root = root.clone();
        reads.spawn(async move {
            for _ in 0..130 {
                assert_eq!(root.get("/api/v1/orgs/acme/projects").await.0, 200);
            }
        });
    }
    while let Some(r) = reads.join_next().await {
        r.expect("reads");
    }

    let b = Browser::start().await;
    login(&b, &server.base, "ann@acme.test", None).await;
    let cookie = session_cookie(&b).await;
    assert_eq!(b.count("#nav-server").await, 0, "no Server link for a user");
    assert_eq!(b.count("header nav a[href='/ui/audit']").await, 1, "the Audit link");

    // The reveal, in the dashboard.
    let env_page = "/ui/orgs/acme/projects/api/envs/dev";
    b.client
        .goto(&format!("{}{env_page}", server.base))
        .await
        .expect("goto");
    let row = "#secrets tr[data-key='DB_URL']";
    b.click(&format!("{row} button.reveal")).await;
    b.wait_text(&format!("{row} .value"), VALUE).await;

    // The audit page: the admin's organization, newest first.
    b.click("header nav a[href='/ui/audit']").await;
    b.wait_path("/ui/audit").await;
    b.wait_count("#audit tbody tr", 50).await;
    assert_eq!(b.count("#verify-form").await, 0, "verify is root's");
    let seqs = |html: &str| -> Vec<i64> {
        html.split("data-seq=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next()?.parse().ok())
            .collect()
    };
    let first_page = seqs(&b.source().await);
    assert!(
        first_page.windows(2).all(|w| w[0] > w[1]),
        "newest first: {first_page:?}"
    );
    // The next page continues below the last seq shown.
    b.click("#older").await;
    b.wait_count("#newest", 1).await;
    let second_page = seqs(&b.source().await);
    assert_eq!(second_page.len(), 50);
    assert!(
        second_page[0] < *first_page.last().expect("rows"),
        "keyset: older records"
    );

    // Filter by action: only the reveal.
    b.click("#newest").await;
    b.wait_count("#older", 1).await;
    b.fill("#f-action", "secret.reveal").await;
    b.click("#audit-filters button[type=submit]").await;
    b.wait_count("#audit tbody tr", 1).await;
    assert_eq!(
        b.count("#audit tbody tr[data-action='secret.reveal']").await,
        1,
        "narrowed"
    );
    assert_eq!(b.text("#audit tbody td.actor").await, "ann@acme.test");
    assert!(
        b.text("#audit tbody td.resource")
            .await
            .ends_with("/secrets/DB_URL/reveal")
    );
    assert_eq!(b.count("#older").await, 0, "one page");
    b.shot("audit").await;
    let audit_url = b.client.current_url().await.expect("url");
    let audit_path = format!("{}?{}", audit_url.path(), audit_url.query().unwrap_or(""));
    assert!(!audit_path.contains(VALUE));

    // Record detail.
    b.click("#audit tbody td a").await;
    b.wait_count("#record", 1).await;
    let field = |name: &str| format!("#record dd[data-field='{name}']");
    assert_eq!(b.text(&field("Action")).await, "secret.reveal");
    assert_eq!(b.text(&field("Actor")).await, "ann@acme.test");
    assert_eq!(b.text(&field("Outcome")).await, "allowed");
    assert_eq!(b.text(&field("Organization")).await, "acme");
    assert_eq!(b.text(&field("HTTP status")).await, "200");
    assert_eq!(b.text(&field("Hash")).await.len(), 64, "the chain hash");
    assert!(b.text(&field("Resource")).await.ends_with("/secrets/DB_URL/reveal"));
    assert!(!b.source().await.contains(VALUE), "no value in the record");
    b.shot("audit-record").await;
    let record_url = b.client.current_url().await.expect("url");
    let record_path = format!("{}?{}", record_url.path(), record_url.query().unwrap_or(""));

    for page in ["/ui/audit", audit_path.as_str(), record_path.as_str()] {
        assert_page_headers(&server.base, page, &cookie).await;
    }

    // The budget: the audit page with 1,000+ records (debug build).
    let (st, took, html) = timed_get(&server.base, "/ui/audit", &cookie).await;
    assert_eq!(st, 200);
    let (_, took_filtered, _) = timed_get(&server.base, &audit_path, &cookie).await;
    let (_, all) = root.get("/api/v1/audit/records?limit=10000").await;
    let total = all["data"].as_array().map_or(0, Vec::len);
    assert!(total >= 1_000, "{total} records");
    eprintln!(
        "audit page with {total} records: {took:?} (first page, {} KB), {took_filtered:?} (filtered)",
        html.len() / 1024
    );
    assert!(took < Duration::from_secs(2) && took_filtered < Duration::from_secs(2));

    // Not root: no server page, no verification.
    let res = raw()
        .get(format!("{}/ui/server", server.base))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status().as_u16(), 403, "/ui/server for a user");
    let csrf = csrf_of(&b.source().await);
    assert_eq!(
        post_form(&server.base, "/ui/audit/verify", &cookie, &[("csrf", &csrf)])
            .await
            .0,
        403,
        "verify is root's"
    );

    // At 375 px: the audit page does not scroll sideways.
    b.client.set_window_size(375, 800).await.expect("resize");
    b.client.goto(&format!("{}/ui/audit", server.base)).await.expect("goto");
    b.wait_count("#audit tbody tr", 50).await;
    assert!(b.page_width().await <= 375, "the audit page scrolls sideways at 375 px");
    b.client.set_window_size(1280, 800).await.expect("resize");

    // Root: the whole log, and Verify chain.
    b.click("header form[action='/ui/logout'] button").await;
    b.wait_path("/ui/login").await;
    root_login(&b, &server.base, root.token()).await;
    let root_cookie = session_cookie(&b).await;
    assert_eq!(b.count("#nav-server").await, 1, "root sees Server");
    b.click("header nav a[href='/ui/audit']").await;
    b.wait_path("/ui/audit").await;
    b.click("#verify-form button").await;
    b.wait_path("/ui/audit/verify").await;
    let result = b.element("#verify-result").await;
    assert_eq!(result.attr("data-ok").await.expect("attr"), Some("true".into()));
    let checked: u64 = b.text("#verify-records").await.parse().expect("a count");
    assert!(checked >= 1_000, "{checked} records checked");
    assert!(b.text("#verify-result").await.starts_with("OK: "));
    // CSRF: none or forged → 403, nothing verified.
    assert_eq!(post(&server.base, "/ui/audit/verify", &root_cookie, None).await.0, 403);
    assert_eq!(
        post_form(&server.base, "/ui/audit/verify", &root_cookie, &[("csrf", "forged")])
            .await
            .0,
        403
    );
    assert_page_headers(&server.base, "/ui/login/token", "").await;
    // The root-token login needs its double-submit CSRF token too.
    assert_eq!(post(&server.base, "/ui/login/token", "", None).await.0, 403);
    let (st, _) = post_form(
        &server.base,
        "/ui/login/token",
        "coffer_csrf=abcdefghijabcdefghijabcdefghijabcdefghijabc",
        &[
            ("csrf", "abcdefghijabcdefghijabcdefghijabcdefghijxyz"),
            ("token", root.token()),
        ],
    )
    .await;
    assert_eq!(st, 403, "a token that does not match the cookie");
    b.close().await;
}

/// Issue 16: keys and server is root's: a user gets no Server link and 403;
/// root (logged in with the root token) sees the KEK versions of an
/// organization after a rotation and the rewrap progress, and seals with a
/// confirmation step: the browser lands on the unseal page and the API
/// says sealed. Without the CSRF token nothing is sealed.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_server_page_shows_keks_and_seals_with_confirmation() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["dev"])]).await;
    let env = util::env_path("acme", "api", "dev");
    for key in ["A", "B", "C"] {
        util::write_secret(&root, &env, key, "a-test-value-for-rewrap").await;
    }
    util::ok_data("rotate", root.post("/api/v1/orgs/acme/keks/rotate", json!({})).await);
    util::create_user(&root, "vic@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "vic@acme.test", "member").await;

    let b = Browser::start().await;
    login(&b, &server.base, "vic@acme.test", None).await;
    assert_eq!(b.count("#nav-server").await, 0, "no Server link");
    let user_cookie = session_cookie(&b).await;
    let res = raw()
        .get(format!("{}/ui/server", server.base))
        .header("Cookie", &user_cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status().as_u16(), 403);
    b.click("header form[action='/ui/logout'] button").await;
    b.wait_path("/ui/login").await;

    root_login(&b, &server.base, root.token()).await;
    let cookie = session_cookie(&b).await;
    assert_eq!(b.text("#seal-state").await, "unsealed, serving");
    let org = ".org-keys[data-org='acme']";
    b.wait_count(&format!("{org} tbody tr"), 2).await;
    assert_eq!(
        b.text(&format!("{org} tr[data-version='2'] .badge.active")).await,
        "active"
    );
    assert_eq!(b.text(&format!("{org} tr[data-version='1'] td.references")).await, "3");
    assert_eq!(b.text(&format!("{org} .rewrap-count")).await, "0 of 3");
    b.shot("server").await;
    // Rewrapped (through the API): the progress follows.
    util::ok_data(
        "rewrap",
        root.post("/api/v1/orgs/acme/keks/rewrap", json!({"batch": 100})).await,
    );
    b.client.refresh().await.expect("reload");
    b.wait_text(&format!("{org} .rewrap-count"), "3 of 3").await;
    for page in ["/ui/server", "/ui/server/seal"] {
        assert_page_headers(&server.base, page, &cookie).await;
    }

    // CSRF: without it (or forged, or unconfirmed) nothing is sealed.
    assert_eq!(post(&server.base, "/ui/server/seal", &cookie, None).await.0, 403);
    let forged = [("csrf", "forged"), ("confirm", "seal")];
    assert_eq!(
        post_form(&server.base, "/ui/server/seal", &cookie, &forged).await.0,
        403
    );
    let csrf = csrf_of(&b.source().await);
    let (st, _) = post_form(&server.base, "/ui/server/seal", &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(st, 303, "unconfirmed: back to the confirmation");
    let (_, status) = anon.get("/v1/sys/seal-status").await;
    assert_eq!(status["sealed"], false, "{status}");

    // Seal now → the confirmation → sealed, at the unseal page.
    b.click("#seal-link").await;
    b.wait_path("/ui/server/seal").await;
    assert_eq!(b.count("#seal-form").await, 1);
    b.click("#seal-form button[type=submit]").await;
    b.wait_path("/ui/unseal").await;
    let (_, status) = anon.get("/v1/sys/seal-status").await;
    assert_eq!(status["sealed"], true, "{status}");
    b.close().await;
}

/// Issue 16: `/device` shows which client asked (its User-Agent, address
/// and time) once the code is entered; Deny stops a real `coffer login`,
/// which exits non-zero saying it was denied. The new POSTs need the CSRF
/// token.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_device_page_shows_the_client_and_denies() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::create_user(&root, "ann@acme.test", PASSWORD).await;

    let cli = CliLogin::start(&server.base, &dir.path().join("cli-home"));
    let code = cli.code.clone();

    let b = Browser::start().await;
    b.client.goto(&format!("{}/device", server.base)).await.expect("goto");
    b.fill("#email", "ann@acme.test").await;
    b.fill("#password", PASSWORD).await;
    b.click("form[action='/ui/login'] button[type=submit]").await;
    b.wait_path("/device").await;
    let cookie = session_cookie(&b).await;
    assert_page_headers(&server.base, "/device", &cookie).await;
    let csrf = csrf_of(&b.source().await);
    // CSRF first: without it neither the lookup nor the denial runs.
    for path in ["/device/confirm", "/device/deny"] {
        assert_eq!(post(&server.base, path, &cookie, None).await.0, 403, "{path}");
        let forged = [("csrf", "forged"), ("user_code", code.as_str())];
        assert_eq!(post_form(&server.base, path, &cookie, &forged).await.0, 403, "{path}");
    }
    // An unknown code: the message, no client shown.
    let (st, body) = post_form(
        &server.base,
        "/device/confirm",
        &cookie,
        &[("csrf", &csrf), ("user_code", "BCDF-BCDF")],
    )
    .await;
    assert_eq!(st, 404, "{body}");

    b.fill("#user_code", &code.to_lowercase()).await;
    b.click("#device-code-form button[type=submit]").await;
    b.wait_path("/device/confirm").await;
    assert_eq!(b.text("#device-code").await, code);
    let agent = b.text("#device-agent").await;
    assert!(agent.starts_with("coffer-cli/"), "the client: {agent}");
    assert_eq!(b.text("#device-address").await, "127.0.0.1");
    let asked = b.text("#device-asked").await;
    assert!(asked.starts_with("20") && asked.ends_with('Z'), "asked at: {asked}");
    assert_eq!(b.count("#device-form").await, 1, "Approve");
    b.shot("device-confirm").await;
    let confirm_html = b.source().await;
    super::assert_no_inline_code("device confirm", &confirm_html);

    b.click("#device-deny-form button[type=submit]").await;
    assert!(b.text("#device-denied").await.contains(&code), "denied");

    // The CLI stops at its next poll, non-zero, saying so.
    let (status, _, err) = cli.finish(Duration::from_secs(30)).await;
    assert!(!status.success(), "coffer login must fail: {err}");
    assert!(err.contains("denied"), "a denied message: {err}");
    // Denied once: the code can no longer be approved.
    let ann = util::user_client(&anon, "ann@acme.test", PASSWORD).await;
    let (st, _) = ann
        .post(
            "/api/v1/auth/device/approve",
            json!({"user_code": code, "password": PASSWORD}),
        )
        .await;
    assert_eq!(st.as_u16(), 404);
    b.close().await;
}
