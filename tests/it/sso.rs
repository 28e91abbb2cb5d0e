//! Single sign-on (issue 20) against a REAL OpenID Provider: the npm
//! package `oidc-provider` (OpenID-certified) run by `tests/oidc/provider.mjs`
//! on a random port, with a fixed client, users (one whose email is not
//! verified) and a groups claim. Its development interactions are plain
//! HTML forms, which the tests fill in over HTTP (a cookie jar and two form
//! POSTs): the "browser" here is scripted. Runs on SQLite and PostgreSQL
//! (`COFFER_TEST_STORAGE`).
//!
//! Shown: the code flow end to end (native API, Vault's `auth/oidc` wire,
//! the CLI's loopback redirect), JIT user creation and group mapping, a
//! group removed at the provider removing access at the next login, a
//! replayed / unknown state, a callback from another client, an unverified
//! email and a foreign domain refused, and an SSO-required organization
//! refusing password sessions (break-glass and root excepted). Tampered,
//! expired and wrong-nonce ID tokens are unit tests of the verification
//! path (`src/service/sso.rs`): this provider only signs good ones.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::util::{self, Http, Server};

pub const CLIENT_ID: &str = "coffer-test";
pub const CLIENT_SECRET: &str = "oidc-client-secret-3f9a1c7e5b2d";
const PASSWORD: &str = "correct horse battery staple 20";
pub const ALICE: &str = "alice@acme.test";

/// The test provider's directory.
fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// `npm ci` once per test run when `node_modules` is missing (scripts/test
/// does it up front).
fn npm_ci_once() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if *done || oidc_dir().join("node_modules/oidc-provider").is_dir() {
        *done = true;
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(oidc_dir())
        .output()
        .expect("run npm ci in tests/oidc (node and npm are needed)");
    assert!(
        out.status.success(),
        "npm ci failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    *done = true;
}

/// A running test OpenID Provider.
pub struct Idp {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub issuer: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    /// Start the provider with these users (login → claims).
    pub fn start(users: Value) -> Idp {
        npm_ci_once();
        util::remember_secret(CLIENT_SECRET);
        let cfg = json!({
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            // native client: any port on these loopback URIs (RFC 8252 7.3)
            "redirect_uris": [
                "http://127.0.0.1/ui/sso/callback",
                "http://127.0.0.1/oidc/callback",
                "http://localhost/oidc/callback",
            ],
            "users": users,
        });
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .arg(cfg.to_string())
            .current_dir(oidc_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node tests/oidc/provider.mjs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("provider's first line");
        let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|_| panic!("provider said {line:?}"));
        Idp {
            child,
            issuer: v["issuer"].as_str().expect("issuer").to_owned(),
        }
    }

    /// Change a user's claims for their next login (the test endpoint).
    pub async fn set_user(&self, login: &str, claims: Value) {
        let res = reqwest::Client::new()
            .post(format!("{}/test/users/{login}", self.issuer))
            .body(claims.to_string())
            .send()
            .await
            .expect("provider test endpoint");
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }

    /// The scripted browser: open `auth_url`, sign in as `login` on the
    /// provider's login form, consent, and return the URL the provider
    /// redirects back to (the redirect URI with `code` and `state`).
    pub async fn sign_in(&self, auth_url: &str, login: &str) -> reqwest::Url {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let mut jar: BTreeMap<String, String> = BTreeMap::new();
        let mut url = reqwest::Url::parse(auth_url).expect("auth url");
        let mut form: Option<Vec<(&str, String)>> = None;
        for _ in 0..20 {
            if !url.as_str().starts_with(&self.issuer) {
                return url;
            }
            let cookies = jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let req = match form.take() {
                Some(f) => client
                    .post(url.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(serde_urlencoded::to_string(&f).expect("form")),
                None => client.get(url.clone()),
            };
            let res = req.header("cookie", cookies).send().await.expect("provider request");
            for c in res.headers().get_all("set-cookie") {
                if let Some((k, v)) = c
                    .to_str()
                    .unwrap_or("")
                    .split(';')
                    .next()
                    .and_then(|p| p.split_once('='))
                {
                    jar.insert(k.to_owned(), v.to_owned());
                }
            }
            let status = res.status();
            if status.is_redirection() {
                let loc = res.headers()["location"].to_str().expect("location").to_owned();
                url = url.join(&loc).expect("redirect target");
                continue;
            }
            let body = res.text().await.unwrap_or_default();
            assert!(status.is_success(), "provider answered {status} at {url}: {body}");
            // The development interactions: a login form, then a consent form.
            form = Some(if body.contains("name=\"login\"") {
                vec![
                    ("prompt", "login".into()),
                    ("login", login.into()),
                    ("password", "any".into()),
                ]
            } else if body.contains("value=\"consent\"") {
                vec![("prompt", "consent".into())]
            } else {
                panic!("unexpected provider page at {url}: {body}");
            });
        }
        panic!("the provider did not redirect back");
    }
}

/// The users of the provider: alice (verified, group devs), bob (email
/// not verified), carol (another domain), dave (verified; also has a
/// coffer password), ops (break-glass).
pub fn users() -> Value {
    json!({
        "alice": {"email": ALICE, "email_verified": true, "groups": ["devs", "not-in-coffer"]},
        "bob": {"email": "bob@acme.test", "email_verified": false, "groups": ["devs"]},
        "carol": {"email": "carol@other.test", "email_verified": true, "groups": ["devs"]},
        "dave": {"email": "dave@acme.test", "email_verified": true, "groups": []},
    })
}

/// A booted server with org acme (api/production holding DB), groups devs
/// (read + reveal on production) and ops, and SSO configured.
pub async fn world(dir: &Path, idp: &Idp, extra: Value) -> (Server, Http, Http) {
    let url = util::fresh_storage_url(dir).await;
    let server = Server::start(dir, &url);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    let env = util::env_path("acme", "api", "production");
    util::remember_secret("sso-db-value-x20");
    util::write_secret(&root, &env, "DB", "sso-db-value-x20").await;
    for g in ["devs", "ops"] {
        util::ok_data("group", root.post("/api/v1/orgs/acme/groups", json!({"name": g})).await);
    }
    util::grant(
        &root,
        "acme",
        json!({"group": "devs", "project": "api", "environment": "production", "permissions": ["read", "reveal"]}),
    )
    .await;
    let mut cfg = json!({
        "display_name": "Acme IdP",
        "issuer": idp.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scopes": ["openid", "email", "groups"],
        "allowed_domains": ["acme.test"],
        "groups_claim": "groups",
    });
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let view = util::ok_data("configure sso", root.put("/api/v1/orgs/acme/sso", cfg).await);
    assert_eq!(view["client_secret_set"], true);
    assert!(
        !view.to_string().contains(CLIENT_SECRET),
        "the client secret is never returned: {view}"
    );
    (server, root, anon)
}

/// A fresh client nonce.
fn nonce() -> String {
    format!("nonce-{}", uuid::Uuid::new_v4().simple())
}

/// Native API start: the provider's authorization URL.
async fn start(anon: &Http, redirect: &str, client_nonce: &str) -> String {
    let data = util::ok_data(
        "sso start",
        anon.post(
            "/api/v1/auth/sso/acme/start",
            json!({"redirect_uri": redirect, "client_nonce": client_nonce}),
        )
        .await,
    );
    data["auth_url"].as_str().expect("auth_url").to_owned()
}

fn param(url: &reqwest::Url, name: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Native API callback with what came back to the redirect URI.
async fn callback(anon: &Http, back: &reqwest::Url, client_nonce: &str) -> (StatusCode, Value) {
    anon.post(
        "/api/v1/auth/sso/callback",
        json!({"state": param(back, "state"), "code": param(back, "code"), "client_nonce": client_nonce}),
    )
    .await
}

/// The whole API flow for `login`; the callback's answer.
async fn sso_login(anon: &Http, idp: &Idp, login: &str) -> (StatusCode, Value) {
    let n = nonce();
    let auth = start(anon, "http://127.0.0.1:9/oidc/callback", &n).await;
    let back = idp.sign_in(&auth, login).await;
    callback(anon, &back, &n).await
}

fn session_token(what: &str, answer: (StatusCode, Value)) -> (String, Value) {
    let data = util::ok_data(what, answer);
    let token = data["access_token"].as_str().expect("access_token").to_owned();
    util::remember_secret(&token);
    util::remember_secret(data["refresh_token"].as_str().unwrap_or(""));
    (token, data)
}

async fn reveal(http: &Http) -> (StatusCode, Value) {
    http.get(&format!(
        "{}/secrets/DB?reveal=true",
        util::env_path("acme", "api", "production")
    ))
    .await
}

#[tokio::test]
async fn code_flow_creates_the_person_maps_groups_and_a_removed_group_takes_access_away() {
    let dir = util::tempdir();
    let idp = Idp::start(users());
    let (_server, root, anon) = world(dir.path(), &idp, json!({})).await;

    // The authorization URL: code flow, PKCE S256, state and nonce.
    let n = nonce();
    let auth = start(&anon, "http://127.0.0.1:9/oidc/callback", &n).await;
    let auth_url = reqwest::Url::parse(&auth).expect("url");
    assert!(auth.starts_with(&format!("{}/auth?", idp.issuer)), "{auth}");
    assert_eq!(param(&auth_url, "response_type"), "code");
    assert_eq!(param(&auth_url, "code_challenge_method"), "S256");
    assert_eq!(param(&auth_url, "code_challenge").len(), 43);
    assert!(param(&auth_url, "state").len() >= 43 && param(&auth_url, "nonce").len() >= 43);
    assert_eq!(param(&auth_url, "client_id"), CLIENT_ID);

    let back = idp.sign_in(&auth, "alice").await;
    assert_eq!(back.path(), "/oidc/callback");
    let (token, data) = session_token("alice's first sso login", callback(&anon, &back, &n).await);
    assert_eq!(data["email"], ALICE);
    assert_eq!(data["created"], true, "created just in time: {data}");
    assert_eq!(
        data["groups"],
        json!(["devs"]),
        "only groups coffer has are mapped: {data}"
    );

    // A state is single use: the same callback again is refused.
    let (st, body) = callback(&anon, &back, &n).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("already used"),
        "{body}"
    );

    // The new person is a member, in group devs, and reads through its grant.
    let alice = anon.with_token(&token);
    let me = util::ok_data("whoami", alice.get("/api/v1/auth/whoami").await);
    assert_eq!(me["name"], ALICE);
    let groups = util::ok_data("groups", root.get("/api/v1/orgs/acme/groups").await);
    let devs = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "devs")
        .cloned()
        .unwrap();
    assert_eq!(devs["members"], json!([ALICE]));
    let secret = util::ok_data("reveal through the group grant", reveal(&alice).await);
    assert_eq!(secret["value"], "sso-db-value-x20");

    // The second login links the same account (no new user).
    let (_, again) = session_token("alice again", sso_login(&anon, &idp, "alice").await);
    assert_eq!(again["created"], false);

    // Removed from devs at the provider: the next login takes the grant
    // away — from every session of the person at once.
    idp.set_user("alice", json!({"groups": ["ops"]})).await;
    let (token2, after) = session_token("alice after removal", sso_login(&anon, &idp, "alice").await);
    assert_eq!(after["groups"], json!(["ops"]));
    tokio::time::sleep(Duration::from_millis(1100)).await; // the 1 s access cache
    for t in [&token, &token2] {
        let (st, body) = reveal(&anon.with_token(t)).await;
        assert!(
            st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND,
            "{st} {body}"
        );
    }

    // The logins are audited under auth.sso_login, with no code or token.
    let records = util::ok_data(
        "audit",
        root.get("/api/v1/audit/records?action=auth.sso_login&limit=100").await,
    );
    let text = records.to_string();
    assert!(text.contains(ALICE), "the person is named: {text}");
    assert!(
        !text.contains(&param(&back, "code")) && !text.contains(&token),
        "no code or token in audit"
    );
}

#[tokio::test]
async fn unverified_emails_foreign_domains_forged_state_and_other_clients_are_refused() {
    let dir = util::tempdir();
    let idp = Idp::start(users());
    let (_server, root, anon) = world(dir.path(), &idp, json!({})).await;

    // email_verified false: refused, nobody created.
    let (st, body) = sso_login(&anon, &idp, "bob").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "sso_failed");
    assert!(body["message"].as_str().unwrap_or("").contains("is verified"), "{body}");
    let (st, _) = root.get("/api/v1/users/bob@acme.test").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "no account for an unverified email");

    // A domain the organization does not accept.
    let (st, body) = sso_login(&anon, &idp, "carol").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("domain"), "{body}");

    // A state this server never issued.
    let n = nonce();
    let auth = start(&anon, "http://127.0.0.1:9/oidc/callback", &n).await;
    let back = idp.sign_in(&auth, "alice").await;
    let mut forged = back.clone();
    forged
        .query_pairs_mut()
        .clear()
        .append_pair("code", &param(&back, "code"))
        .append_pair("state", "forged-state");
    let (st, body) = callback(&anon, &forged, &n).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("unknown"), "{body}");

    // The real state, but presented by another client (another nonce):
    // refused, and the state is spent.
    let (st, body) = callback(&anon, &back, &nonce()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("client"), "{body}");
    let (st, _) = callback(&anon, &back, &n).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a refused state cannot be retried");

    // A code with a state of another sign-in (PKCE verifier and nonce of
    // that one): the provider refuses the code.
    let (n1, n2) = (nonce(), nonce());
    let a1 = start(&anon, "http://127.0.0.1:9/oidc/callback", &n1).await;
    let a2 = start(&anon, "http://127.0.0.1:9/oidc/callback", &n2).await;
    let b1 = idp.sign_in(&a1, "alice").await;
    let (st, body) = anon
        .post(
            "/api/v1/auth/sso/callback",
            json!({"state": param(&reqwest::Url::parse(&a2).unwrap(), "state"), "code": param(&b1, "code"), "client_nonce": n2}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("refused the code"),
        "{body}"
    );

    // Bad starts.
    let (st, body) = anon
        .post(
            "/api/v1/auth/sso/acme/start",
            json!({"redirect_uri": "https://evil.example/cb", "client_nonce": nonce()}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("loopback"), "{body}");
    let (st, _) = anon
        .post(
            "/api/v1/auth/sso/nope/start",
            json!({"redirect_uri": "http://127.0.0.1:9/oidc/callback", "client_nonce": nonce()}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Bad configuration: plain http off loopback, unreachable discovery.
    let (st, body) = root
        .put(
            "/api/v1/orgs/acme/sso",
            json!({"issuer": "http://idp.example.com", "client_id": "x", "client_secret": "y"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, body) = root
        .put(
            "/api/v1/orgs/acme/sso",
            json!({"issuer": "http://127.0.0.1:9", "client_id": "x", "client_secret": "y"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("discovery"), "{body}");
}

#[tokio::test]
async fn an_sso_required_org_refuses_password_sessions_but_not_root_or_break_glass() {
    let dir = util::tempdir();
    let idp = Idp::start(users());
    let (_server, root, anon) = world(
        dir.path(),
        &idp,
        json!({"sso_required": true, "break_glass": ["ops@acme.test"]}),
    )
    .await;
    // dave has a password and a grant; ops is the break-glass account.
    for who in ["dave@acme.test", "ops@acme.test"] {
        util::create_user(&root, who, PASSWORD).await;
        util::add_member(&root, "acme", who, "member").await;
        util::grant(
            &root,
            "acme",
            json!({"user": who, "project": "api", "environment": "production", "permissions": ["read", "reveal"]}),
        )
        .await;
    }
    let dave_pw = util::user_client(&anon, "dave@acme.test", PASSWORD).await;
    let (st, body) = reveal(&dave_pw).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "sso_required");
    assert!(
        body["message"].as_str().unwrap_or("").contains("single sign-on"),
        "{body}"
    );
    let (st, body) = dave_pw.get("/api/v1/orgs/acme/projects").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "every route of the org: {body}");

    // Root and the break-glass account keep their access.
    util::ok_data("root reads", reveal(&root).await);
    let ops = util::user_client(&anon, "ops@acme.test", PASSWORD).await;
    util::ok_data("break-glass reads", reveal(&ops).await);

    // dave signs in with SSO: linked to the existing account, and that
    // session (and its refresh) is accepted.
    let (token, data) = session_token("dave sso", sso_login(&anon, &idp, "dave").await);
    assert_eq!(data["created"], false, "linked by verified email");
    util::ok_data("sso session reads", reveal(&anon.with_token(&token)).await);
    let refreshed = util::ok_data(
        "refresh",
        anon.post("/api/v1/auth/refresh", json!({"refresh_token": data["refresh_token"]}))
            .await,
    );
    let t2 = refreshed["access_token"].as_str().unwrap().to_owned();
    util::remember_secret(&t2);
    util::ok_data("refreshed sso session reads", reveal(&anon.with_token(&t2)).await);
    // A token derived from the SSO session carries it too.
    let child = util::ok_data(
        "derived token",
        anon.with_token(&token)
            .post("/api/v1/tokens", json!({"name": "ci"}))
            .await,
    );
    let ct = child["token"].as_str().unwrap().to_owned();
    util::remember_secret(&ct);
    util::ok_data("derived token reads", reveal(&anon.with_token(&ct)).await);

    // The password session is still refused; turning the policy off lets it in.
    let (st, _) = reveal(&dave_pw).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let mut cfg = util::ok_data("sso config", root.get("/api/v1/orgs/acme/sso").await);
    cfg["sso_required"] = json!(false);
    util::ok_data("policy off", root.put("/api/v1/orgs/acme/sso", cfg).await);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    util::ok_data("password session reads again", reveal(&dave_pw).await);
}

#[tokio::test]
async fn vault_wire_and_the_cli_loopback_flow() {
    let dir = util::tempdir();
    let idp = Idp::start(users());
    let (server, _root, anon) = world(dir.path(), &idp, json!({})).await;

    // Vault's auth/oidc wire: auth_url (role = the organization), then
    // the callback with the loopback redirect's query and the client nonce.
    let n = nonce();
    let (st, body) = anon
        .post(
            "/v1/auth/oidc/oidc/auth_url",
            json!({"role": "acme", "redirect_uri": "http://localhost:8250/oidc/callback", "client_nonce": n}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let auth = body["data"]["auth_url"].as_str().expect("data.auth_url").to_owned();
    let back = idp.sign_in(&auth, "alice").await;
    assert_eq!(back.host_str(), Some("localhost"));
    let (st, body) = anon
        .get(&format!(
            "/v1/auth/oidc/oidc/callback?state={}&code={}&client_nonce={n}",
            param(&back, "state"),
            param(&back, "code")
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let token = body["auth"]["client_token"]
        .as_str()
        .expect("auth.client_token")
        .to_owned();
    util::remember_secret(&token);
    assert_eq!(body["auth"]["metadata"]["coffer_name"], ALICE);
    let (st, me) = anon.with_token(&token).get("/v1/auth/token/lookup-self").await;
    assert_eq!(st, StatusCode::OK, "{me}");
    let (st, body) = anon
        .post("/v1/auth/oidc/oidc/auth_url", json!({"client_nonce": nonce()}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a role is required: {body}");

    // The CLI: `coffer login --sso --org acme --no-browser` prints the URL,
    // the scripted browser signs in, the provider's redirect reaches the
    // CLI's loopback listener, and the CLI stores the session.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cli = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["login", "--sso", "--org", "acme", "--no-browser"])
        .env("COFFER_ADDR", &server.base)
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("COFFER_TOKEN")
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run coffer login --sso");
    let mut out = BufReader::new(cli.stdout.take().unwrap());
    let mut url = String::new();
    out.read_line(&mut url).expect("the CLI prints the sign-in URL");
    let back = idp.sign_in(url.trim(), "alice").await;
    assert_eq!(
        back.host_str(),
        Some("127.0.0.1"),
        "the CLI's loopback redirect: {back}"
    );
    assert_eq!(back.path(), "/oidc/callback");
    let page = reqwest::get(back.clone()).await.expect("the CLI's listener answers");
    assert_eq!(page.status(), StatusCode::OK);
    let status = tokio::task::spawn_blocking(move || cli.wait_with_output())
        .await
        .unwrap()
        .expect("cli exit");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert!(
        status.status.success(),
        "coffer login --sso: {}{}",
        rest,
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(rest.contains(ALICE), "logged in as alice: {rest}");
    let who = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["whoami"])
        .env("COFFER_ADDR", &server.base)
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("COFFER_TOKEN")
        .output()
        .expect("coffer whoami");
    assert!(String::from_utf8_lossy(&who.stdout).contains(ALICE), "{who:?}");
    let _ = std::io::stderr().flush();
}

/// `bao login -method=oidc role=acme` for real, headless: `skip_browser`
/// makes it print the URL, the scripted browser signs in, and the
/// provider's redirect reaches bao's own loopback listener.
#[tokio::test]
async fn bao_login_method_oidc() {
    let dir = util::tempdir();
    let idp = Idp::start(users());
    let (server, _root, anon) = world(dir.path(), &idp, json!({})).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let home = dir.path().join("bao-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut bao = Command::new(crate::vault_clients::bao_bin())
        .args([
            "login",
            "-method=oidc",
            "-format=json",
            "role=acme",
            "skip_browser=true",
        ])
        .arg("listenaddress=127.0.0.1")
        .arg(format!("port={port}"))
        .env("BAO_ADDR", &server.base)
        .env("HOME", &home)
        .env_remove("BAO_TOKEN")
        .env_remove("VAULT_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bao");
    let mut err = BufReader::new(bao.stderr.take().unwrap());
    let mut url = String::new();
    let mut seen = String::new();
    while url.is_empty() {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = bao.kill();
            panic!("bao printed no sign-in URL: {seen}");
        }
        seen.push_str(&line);
        if line.trim().starts_with("http") {
            url = line.trim().to_owned();
        }
    }
    let back = idp.sign_in(&url, "alice").await;
    assert_eq!(back.path(), "/oidc/callback", "{back}");
    assert_eq!(back.port(), Some(port));
    let mut to_bao = back.clone();
    let _ = to_bao.set_host(Some("127.0.0.1"));
    reqwest::get(to_bao).await.expect("bao's listener answers");
    let out = tokio::task::spawn_blocking(move || bao.wait_with_output())
        .await
        .unwrap()
        .expect("bao exit");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    assert!(
        out.status.success(),
        "bao login: {}{seen}{rest}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("bao's JSON");
    let token = v["auth"]["client_token"]
        .as_str()
        .expect("auth.client_token")
        .to_owned();
    util::remember_secret(&token);
    let me = util::ok_data(
        "whoami with bao's token",
        anon.with_token(&token).get("/api/v1/auth/whoami").await,
    );
    assert_eq!(me["name"], ALICE);
}

/// On a host without a display, `coffer login --sso` falls back to the
/// device flow: the person approves the code from an SSO session, and the
/// CLI's session joins that SSO session — so it passes the organization's
/// "SSO required" policy.
#[tokio::test]
async fn a_headless_cli_falls_back_to_the_device_flow_approved_from_an_sso_session() {
    let dir = util::tempdir();
    let idp = Idp::start(users());
    let (server, _root, anon) = world(dir.path(), &idp, json!({"sso_required": true})).await;
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let cli_env = |cmd: &mut Command| {
        cmd.env("COFFER_ADDR", &server.base)
            .env("COFFER_ORG", "acme")
            .env("COFFER_PROJECT", "api")
            .env("COFFER_ENV", "production")
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("COFFER_TOKEN")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.args(["login", "--sso", "--org", "acme"]);
    cli_env(&mut cmd);
    let mut cli = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run coffer login --sso");
    let mut err = BufReader::new(cli.stderr.take().unwrap());
    let mut seen = String::new();
    let code = loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("no device code printed: {seen}");
        }
        seen.push_str(&line);
        if let Some(rest) = line.split("coffer login approve ").nth(1) {
            break rest.split(',').next().unwrap_or("").trim().to_owned();
        }
    };
    assert!(seen.contains("No browser on this host"), "{seen}");

    // The person signs in with SSO (elsewhere) and approves the code.
    let (token, _) = session_token("alice sso", sso_login(&anon, &idp, "alice").await);
    util::ok_data(
        "approve from the sso session",
        anon.with_token(&token)
            .post("/api/v1/auth/device/approve", json!({"user_code": code}))
            .await,
    );
    let out = tokio::task::spawn_blocking(move || cli.wait_with_output())
        .await
        .unwrap()
        .expect("cli exit");
    assert!(out.status.success(), "coffer login --sso (device): {seen}{:?}", out);

    // The CLI's session reads in the SSO-required organization.
    let mut get = Command::new(env!("CARGO_BIN_EXE_coffer"));
    get.args(["secrets", "get", "DB"]);
    cli_env(&mut get);
    let got = get.output().expect("coffer secrets get");
    assert!(
        String::from_utf8_lossy(&got.stdout).contains("sso-db-value-x20"),
        "the device session is an SSO session: {got:?}"
    );
}
