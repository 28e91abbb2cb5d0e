//! Share links in a real browser (issue 18): a link made by the CLI opens
//! on the `/s/<id>` page, decrypted by the page's WebCrypto (and the
//! vendored argon2id with a passphrase); loading the page burns no view,
//! only "Reveal" does; a second open fails like an unknown link; a wrong
//! passphrase shows no value; "My share links" on the account page lists
//! and revokes.

use serde_json::json;

use super::{Browser, PASSWORD, assert_no_inline_code, login, raw};
use crate::shares::{VALUE, coffer, create, link_id, open_api, setup, text};
use crate::util;

const SHARE_CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
                         img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                         frame-ancestors 'none'; base-uri 'none'";

/// Open `url` in the browser, click Reveal; the value shown.
async fn reveal(b: &Browser, url: &str, passphrase: Option<&str>) {
    // From another page: a fragment-only change would not load the page.
    b.client.goto("about:blank").await.expect("blank");
    b.client.goto(url).await.expect("goto link");
    b.element("#share-reveal").await;
    if let Some(p) = passphrase {
        b.wait_count("#share-pass-row:not([hidden])", 1).await;
        b.fill("#share-passphrase", p).await;
    }
    b.click("#share-reveal").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cli_link_opens_once_in_the_browser_with_and_without_passphrase() {
    let dir = util::tempdir();
    let (server, _root, token) = setup(dir.path(), "").await;
    util::remember_secret(VALUE);
    let home = dir.path().join("cli");
    let url = create(&server, &home, &token, None, &["--views", "1"], VALUE);

    // The page: its own CSP (wasm for argon2id only here), no inline code,
    // the same for any id.
    let res = raw()
        .get(format!("{}/s/{}", server.base, link_id(&url)))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status().as_u16(), 200);
    let csp = res
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(csp, SHARE_CSP);
    let page = res.text().await.unwrap();
    assert_no_inline_code("/s/", &page);
    assert!(!page.contains(VALUE));
    let other = raw().get(format!("{}/s/nope", server.base)).send().await.expect("GET");
    assert_eq!(
        other.text().await.unwrap(),
        page,
        "the page does not depend on the link"
    );

    let b = Browser::start().await;
    // Loading (twice, as an unfurler would) burns nothing: only Reveal does.
    b.client.goto(&url).await.expect("goto");
    b.element("#share-reveal").await;
    b.client.goto("about:blank").await.expect("blank");
    b.client.goto(&url).await.expect("goto again");
    b.element("#share-reveal").await;
    reveal(&b, &url, None).await;
    b.wait_text("#share-value", VALUE).await;
    // The key left the address bar.
    let now = b.client.current_url().await.unwrap();
    assert!(now.fragment().is_none(), "{now}");
    // A second open: spent, like an unknown link.
    reveal(&b, &url, None).await;
    b.wait_count("#share-error:not([hidden])", 1).await;
    assert!(b.text("#share-error").await.contains("already opened"), "second open");
    assert_eq!(b.count("#share-result:not([hidden])").await, 0);

    // With a passphrase (argon2id in the browser).
    let pass = "meadow-copper-lantern-42";
    util::remember_secret(pass);
    let url = create(
        &server,
        &home,
        &token,
        Some(pass),
        &["--passphrase", "--views", "1"],
        VALUE,
    );
    reveal(&b, &url, Some(pass)).await;
    b.wait_text("#share-value", VALUE).await;
    reveal(&b, &url, Some(pass)).await;
    b.wait_count("#share-error:not([hidden])", 1).await;
    assert!(b.text("#share-error").await.contains("already opened"));

    // A wrong passphrase: no value, a clear message.
    let url = create(
        &server,
        &home,
        &token,
        Some(pass),
        &["--passphrase", "--views", "1"],
        VALUE,
    );
    reveal(&b, &url, Some("not-the-passphrase")).await;
    b.wait_count("#share-error:not([hidden])", 1).await;
    assert!(b.text("#share-error").await.contains("could not be decrypted"));
    assert_eq!(b.count("#share-result:not([hidden])").await, 0);
    assert!(!b.source().await.contains(VALUE));

    // A browser-opened link is spent for the CLI too.
    let url = create(&server, &home, &token, None, &["--views", "1"], VALUE);
    reveal(&b, &url, None).await;
    b.wait_text("#share-value", VALUE).await;
    let out = coffer(&server, &dir.path().join("r"), None, None, &["share", "open", &url], "");
    assert!(!out.status.success() && text(&out.stdout).is_empty());
    b.close().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn my_share_links_are_listed_and_revoked_on_the_account_page() {
    let dir = util::tempdir();
    let (server, root, _) = setup(dir.path(), "").await;
    util::create_user(&root, "ann@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "ann@acme.test", "member").await;
    let s = util::login(&server.client(None), "ann@acme.test", PASSWORD).await;
    let ann = s["access_token"].as_str().unwrap().to_owned();
    let home = dir.path().join("cli");
    let url = create(&server, &home, &ann, None, &["--views", "3"], VALUE);
    let b = Browser::start().await;
    login(&b, &server.base, "ann@acme.test", None).await;
    b.client
        .goto(&format!("{}/ui/account", server.base))
        .await
        .expect("account");
    b.wait_count("#share-table tbody tr", 1).await;
    let row = b.text("#share-table tbody tr").await;
    assert!(row.contains("3 of 3") && row.contains("acme"), "{row}");
    assert!(!b.source().await.contains(VALUE));
    b.click("#share-table button.revoke-share").await;
    b.wait_path("/ui/account").await;
    b.wait_count("#share-table", 0).await;
    let anon = server.client(None);
    assert_eq!(open_api(&anon, &link_id(&url)).await.0, 404, "revoked");
    let recs = util::ok_data(
        "audit",
        root.get("/api/v1/audit/records?action=share.revoke&outcome=allowed")
            .await,
    );
    assert_eq!(recs.as_array().unwrap().len(), 1, "{recs}");
    assert_eq!(recs[0]["actor"], json!("ann@acme.test"), "{recs}");
    b.close().await;
    drop(server);
}
