//! The workload-identity page in a real browser (issue 19): an org admin
//! adds a JWT issuer whose keys a local JWKS server in this test serves,
//! then a role; a real `POST /v1/auth/jwt/login` with a token signed by
//! the test key gets a token that reads the role's environment; a refused
//! role shows the service's message; removing the role (confirmed) makes
//! the same login fail; a member who is no admin gets no forms.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::{Browser, PASSWORD, assert_no_inline_code, fresh_server, login};
use crate::util;

const AUD: &str = "https://coffer.dashboard.test";
const SECRET: &str = "dashboard-jwt-secret-value-3";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

/// A local JWKS endpoint serving the public half of test key `rsa1`;
/// returns its base URL and a counter of the fetches it answered.
async fn jwks_server() -> (String, Arc<AtomicUsize>) {
    let all: Value = serde_json::from_slice(&fixture("public-jwks.json")).expect("jwks json");
    let jwk = all["rsa1"].clone();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwk = jwk.clone();
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({ "keys": [jwk] }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, hits)
}

fn ci_token(issuer: &str) -> String {
    let now = util::unix_now();
    let claims = json!({
        "iss": issuer, "aud": AUD, "sub": "repo:acme/api:ref:refs/heads/main",
        "repository": "acme/api", "ref": "refs/heads/main",
        "iat": now, "nbf": now - 5, "exp": now + 300,
    });
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa1".to_owned());
    let t = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_rsa_der(&fixture("rsa1.pk1.der"))).expect("sign");
    util::remember_secret(&t);
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_adds_an_issuer_and_a_role_that_a_ci_token_logs_in_with_then_removes_them() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    let env = util::env_path("acme", "api", "production");
    util::write_secret(&root, &env, "DB", SECRET).await;
    util::service_account(&root, "acme", "deployer", json!({})).await;
    util::grant(
        &root,
        "acme",
        json!({"service_account": "deployer", "project": "api", "environment": "production",
               "permissions": ["read", "reveal"]}),
    )
    .await;
    util::create_user(&root, "alice@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "alice@acme.test", "admin").await;
    util::create_user(&root, "bob@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "bob@acme.test", "member").await;
    let (issuer, hits) = jwks_server().await;

    let b = Browser::start().await;
    login(&b, &server.base, "alice@acme.test", None).await;
    b.click("a[href='/ui/orgs/acme']").await;
    b.click("#jwt-link").await;
    b.wait_path("/ui/orgs/acme/jwt").await;
    assert_no_inline_code("jwt", &b.source().await);
    b.wait_count("#no-issuers", 1).await;

    // The issuer: keys from a JWKS URL, fetched (and checked) on add.
    b.fill("#issuer-name", "ci").await;
    b.fill("#issuer-iss", &issuer).await;
    b.click("#issuer-source option[value=jwks_url]").await;
    b.fill("#issuer-url", &format!("{issuer}/jwks")).await;
    b.click("#issuer-form button[type=submit]").await;
    b.wait_count("tr[data-issuer=ci]", 1).await;
    assert!(hits.load(Ordering::SeqCst) >= 1, "the keys were fetched on add");
    let row = b.text("tr[data-issuer=ci]").await;
    assert!(row.contains(&format!("{issuer}/jwks")), "{row}");
    let fetched = b.text("tr[data-issuer=ci] .fetched").await;
    assert!(fetched.starts_with("20"), "the last key fetch is shown: {fetched}");

    // A refused role: the service's message on the page, nothing added.
    b.fill("#role-name", "deploy").await;
    b.fill("#role-audience", AUD).await;
    b.fill("#role-claims", "repository=acme/api\nref=refs/heads/main").await;
    b.fill("#role-sa", "nosuch").await;
    b.click("#role-form button[type=submit]").await;
    b.wait_count(".error", 1).await;
    assert!(
        b.text(".error").await.contains("service account nosuch"),
        "{}",
        b.text(".error").await
    );
    assert_eq!(b.count("tr[data-role]").await, 0);

    b.fill("#role-name", "deploy").await;
    b.fill("#role-audience", AUD).await;
    b.fill("#role-claims", "repository=acme/api\nref=refs/heads/main").await;
    b.fill("#role-sa", "deployer").await;
    b.fill("#role-ttl", "10m").await;
    b.click("#role-form button[type=submit]").await;
    b.wait_count("tr[data-role=deploy]", 1).await;
    b.wait_text("tr[data-role=deploy] .ttl", "600").await;
    b.wait_text("tr[data-role=deploy] .sa", "deployer").await;
    let claims = b.text("tr[data-role=deploy] .claims").await;
    assert!(
        claims.contains("repository=acme/api") && claims.contains("ref=refs/heads/main"),
        "{claims}"
    );
    b.shot("jwt").await;

    // A CI job's login on Vault's wire works with what the page made.
    let jwt = ci_token(&issuer);
    let (st, body) = anon
        .post(
            "/v1/auth/jwt/login",
            json!({"org": "acme", "role": "deploy", "jwt": jwt}),
        )
        .await;
    assert_eq!(st.as_u16(), 200, "{body}");
    let token = body["auth"]["client_token"].as_str().expect("client_token").to_owned();
    util::remember_secret(&token);
    assert_eq!(body["auth"]["lease_duration"], 600, "{body}");
    let ci = anon.with_token(&token);
    let (st, read) = ci.get(&format!("{env}/secrets/DB")).await;
    assert!(st.is_success(), "the CI token reads its environment: {st} {read}");

    // Removal, confirmed: the same login is refused.
    b.click("tr[data-role=deploy] .remove-role input[name=confirm]").await;
    b.click("tr[data-role=deploy] .remove-role button[type=submit]").await;
    b.wait_count("#no-roles", 1).await;
    let (st, body) = anon
        .post(
            "/v1/auth/jwt/login",
            json!({"org": "acme", "role": "deploy", "jwt": ci_token(&issuer)}),
        )
        .await;
    assert!(st.is_client_error(), "a removed role logs nobody in: {st} {body}");
    b.click("tr[data-issuer=ci] .remove-issuer input[name=confirm]").await;
    b.click("tr[data-issuer=ci] .remove-issuer button[type=submit]").await;
    b.wait_count("#no-issuers", 1).await;
    let listed = util::ok_data("issuers", root.get("/api/v1/orgs/acme/jwt/issuers").await);
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    b.close().await;

    // A member who is no admin: refused, no form.
    let b = Browser::start().await;
    login(&b, &server.base, "bob@acme.test", None).await;
    b.client
        .goto(&format!("{}/ui/orgs/acme/jwt", server.base))
        .await
        .expect("goto jwt");
    b.wait_count("h1", 1).await;
    assert_eq!(b.count("#issuer-form").await, 0);
    assert_eq!(b.count("#role-form").await, 0);
    assert!(b.source().await.to_lowercase().contains("permission denied"));
    b.close().await;
}
