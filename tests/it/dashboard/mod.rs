//! The web dashboard in a real browser: Debian's `chromium` driven over
//! WebDriver (`chromedriver`, installed by `scripts/test` and `.ci/run`) on
//! the real binary. Each test runs its own server and its own chromedriver
//! on a free port, so they run in parallel. Headers and forged requests are
//! checked with a plain HTTP client carrying the browser's session cookie.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::util::{self, Http, Server};

// Later slices of the dashboard add their browser tests as submodules
// here (one file per area), sharing the harness above.
mod access;
mod admin;
mod approvals;
mod breach;
mod ci_sync;
mod db_creds;
mod jwt_auth;
mod webhooks;

pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
pub(crate) const PASSWORD: &str = "correct horse battery staple";
pub(crate) const VALUE: &str = "postgres://app:s3cr3t-dashboard-value@db/app";

/// A headless Chromium behind its own chromedriver.
pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

pub(crate) fn tool(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: install it with `apt-get install -y chromium chromium-driver` (scripts/test does as root)"
    );
    path
}

impl Browser {
    pub(crate) async fn start() -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let driver = Command::new(tool("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = util::tempdir();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": tool("chromium"),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,800", format!("--user-data-dir={}", profile.path().display())],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                    };
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver on {url} did not start a session: {last:?}");
    }

    pub(crate) async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    pub(crate) async fn path(&self) -> String {
        self.client.current_url().await.expect("url").path().to_owned()
    }

    pub(crate) async fn wait_path(&self, want: &str) {
        for _ in 0..100 {
            if self.path().await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the browser is at {}, not {want}", self.path().await);
    }

    /// The element `css` selects, waiting up to 10 s for it.
    pub(crate) async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        self.element(css).await.text().await.expect("text")
    }

    pub(crate) async fn fill(&self, css: &str, value: &str) {
        let el = self.client.find(Locator::Css(css)).await.expect(css);
        el.clear().await.expect("clear");
        el.send_keys(value).await.expect("type");
    }

    pub(crate) async fn click(&self, css: &str) {
        self.element(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Wait (10 s at most) until `css` matches `n` elements: the page after
    /// a submit, and its script, may still be on the way.
    pub(crate) async fn wait_count(&self, css: &str, n: usize) {
        for _ in 0..200 {
            if self.count(css).await == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(self.count(css).await, n, "{css}");
    }

    /// Wait (10 s at most) until the text of `css` is `want`.
    pub(crate) async fn wait_text(&self, css: &str, want: &str) {
        for _ in 0..200 {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && el.text().await.is_ok_and(|t| t == want)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(self.text(css).await, want, "{css}");
    }

    /// With `COFFER_SCREENSHOTS=DIR`: the page as `DIR/NAME.png` (how
    /// `docs/screenshots/` is made; the window is 1280×800).
    pub(crate) async fn shot(&self, name: &str) {
        if let Some(dir) = std::env::var_os("COFFER_SCREENSHOTS") {
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).expect("write screenshot");
        }
    }

    /// Keyboard only: Tab until the focused element's text (a link or
    /// button) or id is `want`, then press `key` (Enter) — or type `key`.
    pub(crate) async fn tab_to(&self, want: &str, key: &str) {
        for _ in 0..40 {
            let el = self.client.active_element().await.expect("focus");
            let text = el.text().await.unwrap_or_default();
            let id = el.attr("id").await.ok().flatten().unwrap_or_default();
            if text.trim() == want || id == want {
                el.send_keys(key).await.expect("keys");
                return;
            }
            el.send_keys(&Key::Tab.to_string()).await.expect("tab");
        }
        panic!("{want} is not reachable with Tab");
    }

    /// The page's width in CSS pixels (wider than the window: it scrolls sideways).
    pub(crate) async fn page_width(&self) -> u64 {
        self.client
            .execute("return document.documentElement.scrollWidth;", vec![])
            .await
            .expect("script")
            .as_u64()
            .expect("a width")
    }

    pub(crate) async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.expect("find").len()
    }

    pub(crate) async fn source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    pub(crate) async fn cookie(&self, name: &str) -> String {
        self.client
            .get_named_cookie(name)
            .await
            .unwrap_or_else(|e| panic!("cookie {name}: {e}"))
            .value()
            .to_owned()
    }
}

/// The page the browser shows has no inline script or style.
pub(crate) fn assert_no_inline_code(what: &str, html: &str) {
    let lower = html.to_ascii_lowercase();
    for (i, _) in lower.match_indices("<script") {
        let tag_end = lower[i..].find('>').map_or(lower.len(), |e| i + e);
        assert!(
            lower[i..tag_end].contains(" src="),
            "{what}: an inline <script>: {html}"
        );
    }
    assert!(!lower.contains(" style="), "{what}: a style attribute: {html}");
    assert!(!lower.contains("<style"), "{what}: a <style> element: {html}");
    assert!(
        !lower.contains(" onclick=") && !lower.contains("javascript:"),
        "{what}: inline handler"
    );
}

/// A plain client for headers and forged requests (no redirects followed).
pub(crate) fn raw() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// GET `path` with `cookie`: the dashboard's headers on it, and its HTML
/// free of inline code.
pub(crate) async fn assert_page_headers(base: &str, path: &str, cookie: &str) {
    let res = raw()
        .get(format!("{base}{path}"))
        .header("Cookie", cookie)
        .send()
        .await
        .expect("GET");
    let h = res.headers().clone();
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(get("content-security-policy"), CSP, "{path}: CSP");
    assert_eq!(get("cache-control"), "no-store", "{path}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{path}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{path}");
    let body = res.text().await.expect("body");
    assert_no_inline_code(path, &body);
}

pub(crate) async fn fresh_server(dir: &std::path::Path) -> Server {
    Server::start(dir, &util::fresh_storage_url(dir).await)
}

/// Issue 16: from uninitialized to serving in the browser — init 5/3,
/// each share shown once, a mistyped share refused with the API's message
/// and the progress unchanged, then three shares.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_ceremony_from_uninitialized_to_serving() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let b = Browser::start().await;

    b.client.goto(&format!("{}/", server.base)).await.expect("goto /");
    b.wait_path("/ui/init").await;
    assert_no_inline_code("init", &b.source().await);
    assert_page_headers(&server.base, "/ui/init", "").await;
    b.shot("init").await;
    b.fill("#shares", "5").await;
    b.fill("#threshold", "3").await;
    b.click("form[action='/ui/init'] button[type=submit]").await;

    // One step at a time: the share shown, "I stored it", the next.
    let mut shares = Vec::new();
    b.wait_count(".ceremony .step", 6).await;
    for _ in 0..5 {
        b.wait_count(".step:not([hidden])", 1).await;
        let share = b.text(".step:not([hidden]) .share-value").await;
        util::remember_secret(&share);
        shares.push(share);
        b.click(".step:not([hidden]) button.stored").await;
    }
    let root = b.text(".step:not([hidden]) .root-token").await;
    util::remember_secret(&root);
    b.click(".step:not([hidden]) button.stored").await;
    assert_eq!(b.count(".share-value").await, 0, "stored shares are gone from the page");
    b.click("#ceremony-done a").await;
    b.wait_path("/ui/unseal").await;
    assert_no_inline_code("unseal", &b.source().await);
    assert_page_headers(&server.base, "/ui/unseal", "").await;
    assert_eq!(b.text("#progress-count").await, "0");
    assert_eq!(
        b.client
            .find(Locator::Css("#share"))
            .await
            .expect("share field")
            .attr("type")
            .await
            .expect("type"),
        Some("password".into()),
        "the share field is masked"
    );

    // A mistyped share: the API's message, at once; progress unchanged.
    let typo = &shares[0][..shares[0].len() - 3];
    let (st, api) = anon.put("/v1/sys/unseal", json!({ "key": typo })).await;
    assert_eq!(st, 400, "{api}");
    b.fill("#share", typo).await;
    b.click("#unseal-form button[type=submit]").await;
    let shown = b.text("p.error").await;
    assert_eq!(
        shown,
        api["errors"][0].as_str().expect("API message"),
        "the API's message"
    );
    assert_eq!(b.text("#progress-count").await, "0", "progress unchanged");
    b.shot("unseal").await;

    for (i, share) in shares.iter().take(3).enumerate() {
        b.fill("#share", share).await;
        b.click("#unseal-form button[type=submit]").await;
        if i < 2 {
            b.wait_text("#progress-count", &(i + 1).to_string()).await;
            let bar = b.client.find(Locator::Css("#unseal-progress")).await.expect("bar");
            assert_eq!(bar.attr("value").await.expect("value"), Some((i + 1).to_string()));
        }
    }
    // The last share moves on by itself: serving, at the login page.
    b.wait_path("/ui/login").await;
    let (_, status) = anon.get("/v1/sys/seal-status").await;
    assert_eq!(status["sealed"], false, "{status}");
    assert_eq!(anon.with_token(&root).get("/api/v1/orgs").await.0, 200, "serving");
    assert_page_headers(&server.base, "/ui/login", "").await;
    b.close().await;
}

/// Enrol TOTP for a user (by its own token); returns the seed.
pub(crate) async fn enroll_totp(anon: &Http, email: &str) -> Vec<u8> {
    let user = util::user_client(anon, email, PASSWORD).await;
    let e = util::ok_data(
        "TOTP enrolment",
        user.post("/api/v1/auth/totp/enroll", json!({ "password": PASSWORD }))
            .await,
    );
    let seed = util::base32_decode(e["secret"].as_str().expect("secret"));
    let code = util::totp_at(&seed, util::unix_now() / 30);
    util::ok_data(
        "TOTP verify",
        user.post("/api/v1/auth/totp/verify", json!({ "code": code })).await,
    );
    seed
}

pub(crate) async fn login(b: &Browser, base: &str, email: &str, totp: Option<&str>) {
    b.client.goto(&format!("{base}/ui/login")).await.expect("goto login");
    b.fill("#email", email).await;
    b.fill("#password", PASSWORD).await;
    if let Some(code) = totp {
        b.fill("#totp", code).await;
    }
    b.click("form[action='/ui/login'] button[type=submit]").await;
    b.wait_path("/ui/orgs").await;
}

/// A POST to `path` with the session cookie and a CSRF token (or none).
pub(crate) async fn post(base: &str, path: &str, cookie: &str, csrf: Option<&str>) -> (u16, String) {
    let mut r = raw().post(format!("{base}{path}")).header("Cookie", cookie);
    if let Some(t) = csrf {
        r = r.header("X-CSRF-Token", t);
    }
    let res = r
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .expect("POST");
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

/// The session's CSRF token, as the page carries it.
pub(crate) fn csrf_of(html: &str) -> String {
    let pattern = "name=\"csrf-token\" content=\"";
    let at = html.find(pattern).expect("csrf meta") + pattern.len();
    html[at..].split('"').next().expect("token").to_owned()
}

/// Issue 16: login with TOTP, browse, reveal (then in the audit log);
/// a viewer sees masked values and no reveal control, and a forged reveal
/// from the viewer's session gets 403; a state change without the CSRF
/// token is refused; the session cookie is not an API token; logout ends
/// the session server-side; every page carries the CSP.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_login_browse_reveal_and_a_viewer() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["dev"])]).await;
    util::ok_data(
        "a protected environment",
        root.post(
            "/api/v1/orgs/acme/projects/api/environments",
            json!({"slug": "production", "name": "Production", "protected": true}),
        )
        .await,
    );
    let env = util::env_path("acme", "api", "production");
    util::write_secret(&root, &env, "DB_URL", VALUE).await;
    util::write_secret(&root, &env, "API_KEY", "another-secret-value-123").await;
    util::create_user(&root, "ann@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "ann@acme.test", "admin").await;
    util::create_user(&root, "kim@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "kim@acme.test", "admin").await;
    util::create_user(&root, "vic@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "vic@acme.test", "member").await;
    util::grant(
        &root,
        "acme",
        json!({"user": "vic@acme.test", "project": "api", "environment": "production", "permissions": ["read"]}),
    )
    .await;
    let seed = enroll_totp(&anon, "ann@acme.test").await;

    let b = Browser::start().await;
    // Without a session: the login form in place (401, recorded as denied).
    b.client.goto(&format!("{}/ui/orgs", server.base)).await.expect("goto");
    assert_eq!(b.text("p.error").await, "Log in to continue.");
    let res = raw().get(format!("{}/ui/orgs", server.base)).send().await.expect("GET");
    assert_eq!(res.status().as_u16(), 401, "no session");
    // The wrong code: the API's message, no session.
    b.fill("#email", "ann@acme.test").await;
    b.fill("#password", PASSWORD).await;
    b.click("form[action='/ui/login'] button[type=submit]").await;
    // The API's message (the page before showed another one).
    b.wait_text("p.error", "a TOTP code is required for this account").await;
    b.shot("login").await;
    let code = util::totp_at(&seed, util::unix_now() / 30 + 1);
    login(&b, &server.base, "ann@acme.test", Some(&code)).await;
    let cookie = format!("coffer_session={}", b.cookie("coffer_session").await);

    // Browse: org → project → environments (protected marked) → secrets.
    b.shot("orgs").await;
    b.click("#orgs a").await;
    b.wait_path("/ui/orgs/acme").await;
    b.click("#projects a").await;
    b.wait_path("/ui/orgs/acme/projects/api").await;
    assert_eq!(b.count("#envs .protected").await, 1, "production is marked protected");
    b.shot("environments").await;
    b.click("#envs a[href$='/envs/production']").await;
    let env_page = "/ui/orgs/acme/projects/api/envs/production";
    b.wait_path(env_page).await;
    b.wait_count("#secrets tbody tr", 2).await;
    let html = b.source().await;
    assert!(!html.contains(VALUE), "no value in the page before its reveal");
    assert_no_inline_code("secrets", &html);
    assert_eq!(b.count("#secrets tbody tr").await, 2);
    let csrf = csrf_of(&html);
    for page in ["/ui/orgs", "/ui/orgs/acme", "/ui/orgs/acme/projects/api", env_page] {
        assert_page_headers(&server.base, page, &cookie).await;
    }

    // Reveal: fetched only now, then masked again (Hide), and audited.
    let row = "#secrets tr[data-key='DB_URL']";
    b.click(&format!("{row} button.reveal")).await;
    for _ in 0..100 {
        if b.text(&format!("{row} .value")).await == VALUE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.text(&format!("{row} .value")).await, VALUE, "revealed");
    assert_eq!(
        b.count(&format!("{row} button.copy:not([hidden])")).await,
        1,
        "copy offered"
    );
    b.shot("secrets-revealed").await;
    b.click(&format!("{row} button.reveal")).await;
    assert!(!b.text(&format!("{row} .value")).await.contains(VALUE), "hidden again");
    let (st, found) = root.get("/api/v1/audit/records?org=acme&action=secret.reveal").await;
    assert_eq!(st, 200, "{found}");
    let reveals: Vec<&Value> = found["data"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["actor"] == "ann@acme.test" && r["outcome"] == "allowed")
        .collect();
    assert_eq!(reveals.len(), 1, "the reveal is in the audit log: {found}");
    assert!(
        reveals[0]["resource"]
            .as_str()
            .unwrap_or("")
            .ends_with("/secrets/DB_URL/reveal")
    );

    // CSRF: without the token nothing happens (the session lives on).
    let reveal_path = format!("{env_page}/secrets/API_KEY/reveal");
    assert_eq!(post(&server.base, &reveal_path, &cookie, None).await.0, 403);
    assert_eq!(post(&server.base, &reveal_path, &cookie, Some("forged")).await.0, 403);
    assert_eq!(post(&server.base, "/ui/logout", &cookie, None).await.0, 403);
    let (st, body) = post(&server.base, &reveal_path, &cookie, Some(&csrf)).await;
    assert_eq!(st, 200, "with the token: {body}");
    // The cookie is not an API token.
    let cookie_value = cookie.trim_start_matches("coffer_session=");
    assert_eq!(anon.with_token(cookie_value).get("/api/v1/orgs").await.0, 401);

    // Logout ends the session server-side.
    b.click("header form[action='/ui/logout'] button").await;
    b.wait_path("/ui/login").await;
    let res = raw()
        .get(format!("{}/ui/orgs", server.base))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status().as_u16(), 401, "the old cookie is dead");

    // A viewer (read, no reveal): masked values, no reveal control, and a
    // forged reveal from its own session is refused.
    login(&b, &server.base, "vic@acme.test", None).await;
    b.client
        .goto(&format!("{}{env_page}", server.base))
        .await
        .expect("goto");
    b.wait_path(env_page).await;
    let html = b.source().await;
    assert_eq!(b.count("#secrets tbody tr").await, 2, "the viewer sees the keys");
    assert_eq!(b.count("button.reveal").await, 0, "no reveal control");
    assert_eq!(b.count("#no-reveal").await, 1);
    b.shot("secrets-viewer").await;
    // Usable at 375 px: nothing wider than the window but the table's own scroller.
    b.client.set_window_size(375, 800).await.expect("resize");
    b.client.refresh().await.expect("reload");
    b.wait_count("#secrets tbody tr", 2).await;
    assert!(b.page_width().await <= 375, "the page scrolls sideways at 375 px");
    b.shot("secrets-375px").await;
    b.client.set_window_size(1280, 800).await.expect("resize");

    // Keyboard only, from logout to a reveal.
    b.tab_to("Log out", &Key::Enter.to_string()).await;
    b.wait_path("/ui/login").await;
    b.wait_count("#email", 1).await;
    b.tab_to("email", "kim@acme.test").await;
    b.tab_to("password", &format!("{PASSWORD}{}", Key::Enter)).await;
    b.wait_path("/ui/orgs").await;
    let enter = Key::Enter.to_string();
    b.tab_to("acme", &enter).await;
    b.wait_path("/ui/orgs/acme").await;
    b.tab_to("api", &enter).await;
    b.wait_path("/ui/orgs/acme/projects/api").await;
    b.tab_to("production", &enter).await;
    b.wait_path(env_page).await;
    b.wait_count("#secrets tbody tr", 2).await;
    b.tab_to("Reveal", &enter).await;
    b.wait_text("#secrets tr[data-key='API_KEY'] .value", "another-secret-value-123")
        .await;
    assert!(!html.contains(VALUE) && !html.contains("/reveal"));
    let viewer_cookie = format!("coffer_session={}", b.cookie("coffer_session").await);
    let (st, body) = post(
        &server.base,
        &format!("{env_page}/secrets/DB_URL/reveal"),
        &viewer_cookie,
        Some(&csrf_of(&html)),
    )
    .await;
    assert_eq!(st, 403, "forged reveal: {body}");
    assert!(!body.contains(VALUE));
    b.close().await;
}

/// A real `coffer login` (device flow) against `base`, with its own HOME:
/// the child, the user code it printed, and every stderr line so far.
pub(crate) struct CliLogin {
    pub(crate) child: Child,
    pub(crate) code: String,
    pub(crate) stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl CliLogin {
    pub(crate) fn start(base: &str, home: &std::path::Path) -> CliLogin {
        use std::io::{BufRead, BufReader};
        std::fs::create_dir_all(home).expect("home");
        let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .arg("login")
            .env("COFFER_ADDR", base)
            .env_remove("COFFER_TOKEN")
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("coffer login");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("coffer login approve ").nth(1) {
                    let _ = tx.send(rest.chars().take(9).collect::<String>());
                }
                if let Ok(mut v) = seen.lock() {
                    v.push(line);
                }
            }
        });
        let code = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("coffer login prints its code");
        CliLogin {
            child,
            code,
            stderr,
            reader,
        }
    }

    /// Wait (up to `within`) for the CLI to exit: its status, stdout and stderr.
    pub(crate) async fn finish(mut self, within: Duration) -> (std::process::ExitStatus, String, String) {
        let deadline = std::time::Instant::now() + within;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "coffer login did not finish");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut out = String::new();
        std::io::Read::read_to_string(&mut self.child.stdout.take().expect("stdout"), &mut out).expect("read");
        let _ = self.reader.join();
        let err = self.stderr.lock().map(|v| v.join("\n")).unwrap_or_default();
        (status, out, err)
    }
}

/// Issue 16: the `/device` page completes a `coffer login` (device flow)
/// running in the same test, after a login that comes back to it.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_device_page_completes_a_coffer_login() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::create_user(&root, "ann@acme.test", PASSWORD).await;

    let cli = CliLogin::start(&server.base, &dir.path().join("cli-home"));
    let code = cli.code.clone();

    let b = Browser::start().await;
    b.client.goto(&format!("{}/device", server.base)).await.expect("goto");
    assert_eq!(b.text("p.error").await, "Log in to continue.", "the login form first");
    b.fill("#email", "ann@acme.test").await;
    b.fill("#password", PASSWORD).await;
    b.click("form[action='/ui/login'] button[type=submit]").await;
    b.wait_path("/device").await;
    b.text("#device-code-form").await;
    assert_no_inline_code("device", &b.source().await);
    let cookie = format!("coffer_session={}", b.cookie("coffer_session").await);
    assert_page_headers(&server.base, "/device", &cookie).await;
    b.fill("#user_code", &code.to_lowercase()).await;
    b.shot("device").await;
    // The confirmation (which client asked: see admin.rs), then Approve.
    b.click("#device-code-form button[type=submit]").await;
    b.wait_path("/device/confirm").await;
    b.text("#device-form").await;
    b.fill("#device-password", PASSWORD).await;
    b.click("#device-form button[type=submit]").await;
    assert!(b.text("#device-approved").await.contains(&code), "approved");

    let (status, out, _) = cli.finish(Duration::from_secs(40)).await;
    assert!(status.success(), "coffer login: {out}");
    assert!(out.contains("ann@acme.test"), "{out}");
    b.close().await;
}
mod edit;
mod shares;
mod sso; // single sign-on (issue 20)
