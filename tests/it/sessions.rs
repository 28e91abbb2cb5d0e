//! Sessions and tokens (issue 13, docs/access.md "Sessions"): revoking a
//! token revokes everything descended from it, ending every session of a
//! user, device approval that proves the person, derived tokens that keep
//! their parent's limits, and account hygiene (password change, TOTP reset,
//! disable, delete).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::access::{PASSWORD, booted};
use crate::util::{self, Http, Server};

/// A token derived from `parent` with POST /tokens; returns (token, accessor).
async fn derive(parent: &Http, body: Value) -> (String, String) {
    let t = util::ok_data("derive a token", parent.post("/api/v1/tokens", body).await);
    util::remember_secret(t["token"].as_str().unwrap_or(""));
    (
        t["token"].as_str().unwrap_or_else(|| panic!("{t}")).to_owned(),
        t["accessor"].as_str().unwrap_or_else(|| panic!("{t}")).to_owned(),
    )
}

/// Status of whoami with `token` through `server`.
async fn whoami_status(http: &Http, token: &str) -> u16 {
    http.with_token(token).get("/api/v1/auth/whoami").await.0.as_u16()
}

/// Wait (at most 3 s: the token cache lives 1 s) until `token` is refused.
async fn refused_soon(what: &str, http: &Http, token: &str) {
    let start = Instant::now();
    loop {
        let st = whoami_status(http, token).await;
        if st == 401 {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "{what}: still {st} after 3 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn refresh(anon: &Http, refresh_token: &str) -> (reqwest::StatusCode, Value) {
    anon.post("/api/v1/auth/refresh", json!({"refresh_token": refresh_token}))
        .await
}

#[tokio::test]
async fn revoking_a_login_token_ends_its_refresh_family_and_every_derived_token_on_every_server() {
    let dir1 = util::tempdir();
    let dir2 = util::tempdir();
    let storage = util::fresh_storage_url(dir1.path()).await;
    let s1 = Server::start(dir1.path(), &storage);
    let (root, shares) = util::boot(&s1.client(None)).await;
    let s2 = Server::start(dir2.path(), &storage);
    let status = util::unseal(&s2.client(None), &[&shares[0], &shares[2]]).await;
    assert_eq!(status["sealed"], false, "{status}");
    let (anon1, anon2) = (s1.client(None), s2.client(None));
    util::create_user(&root, "ann@acme.test", PASSWORD).await;

    let s = util::login(&anon1, "ann@acme.test", PASSWORD).await;
    let access = s["access_token"].as_str().unwrap().to_owned();
    let accessor = s["accessor"].as_str().unwrap().to_owned();
    let refresh_token = s["refresh_token"].as_str().unwrap().to_owned();
    let ann = anon1.with_token(&access);
    let (child, _) = derive(&ann, json!({"name": "ci"})).await;
    let (grandchild, _) = derive(&anon1.with_token(&child), json!({"name": "ci-2"})).await;
    // Server 2 has the grandchild in its token cache.
    assert_eq!(whoami_status(&anon2, &grandchild).await, 200);

    util::ok_data(
        "root revokes the login's access token",
        root.delete(&format!("/api/v1/tokens/{accessor}")).await,
    );
    util::expect_error(
        "the login's refresh token after its access token was revoked",
        refresh(&anon1, &refresh_token).await,
        401,
        "unauthenticated",
    );
    assert_eq!(whoami_status(&anon1, &access).await, 401, "the revoked token");
    assert_eq!(whoami_status(&anon1, &child).await, 401, "a token derived from it");
    refused_soon(
        "a token derived from the derived token, on server 2",
        &anon2,
        &grandchild,
    )
    .await;

    // Revoking a derived token takes its subtree, not the session above it.
    let s = util::login(&anon1, "ann@acme.test", PASSWORD).await;
    let access = s["access_token"].as_str().unwrap().to_owned();
    let refresh_token = s["refresh_token"].as_str().unwrap().to_owned();
    let ann = anon1.with_token(&access);
    let (child, child_acc) = derive(&ann, json!({})).await;
    let (grandchild, _) = derive(&anon1.with_token(&child), json!({})).await;
    util::ok_data(
        "ann revokes the derived token",
        ann.delete(&format!("/api/v1/tokens/{child_acc}")).await,
    );
    assert_eq!(whoami_status(&anon1, &grandchild).await, 401, "below the revoked token");
    assert_eq!(whoami_status(&anon1, &access).await, 200, "the session above it stays");
    util::ok_data("refresh of the session above it", refresh(&anon1, &refresh_token).await);
}

#[tokio::test]
async fn every_session_of_a_user_ends_at_once_by_root_self_or_the_owner_of_their_only_org() {
    let dir = util::tempdir();
    let (server, root) = booted(dir.path()).await;
    let anon = server.client(None);
    for u in ["own@acme.test", "ann@acme.test", "bob@acme.test", "eve@evil.test"] {
        util::create_user(&root, u, PASSWORD).await;
    }
    let owner = util::user_client(&anon, "own@acme.test", PASSWORD).await;
    util::org_tree(&owner, "acme", &[]).await;
    util::add_member(&owner, "acme", "ann@acme.test", "member").await;
    util::add_member(&owner, "acme", "bob@acme.test", "member").await;
    let eve = util::user_client(&anon, "eve@evil.test", PASSWORD).await;
    util::org_tree(&eve, "evil", &[]).await;
    // bob is in evil as well: the acme owner may not end his sessions.
    util::add_member(&eve, "evil", "bob@acme.test", "member").await;

    let s1 = util::login(&anon, "ann@acme.test", PASSWORD).await;
    let s2 = util::login(&anon, "ann@acme.test", PASSWORD).await;
    let a1 = s1["access_token"].as_str().unwrap().to_owned();
    let (derived, _) = derive(&anon.with_token(&a1), json!({"name": "long"})).await;
    let bob = util::login(&anon, "bob@acme.test", PASSWORD).await;
    let bob_token = bob["access_token"].as_str().unwrap().to_owned();

    util::expect_error(
        "the owner of another org",
        eve.post("/api/v1/users/ann@acme.test/revoke-sessions", json!({})).await,
        404,
        "not_found",
    );
    util::expect_error(
        "a fellow member",
        anon.with_token(&bob_token)
            .post("/api/v1/users/ann@acme.test/revoke-sessions", json!({}))
            .await,
        404,
        "not_found",
    );
    util::expect_error(
        "the owner of one of two orgs of the user",
        owner
            .post("/api/v1/users/bob@acme.test/revoke-sessions", json!({}))
            .await,
        404,
        "not_found",
    );
    assert_eq!(whoami_status(&anon, &bob_token).await, 200);

    let done = util::ok_data(
        "the owner of ann's only org ends her sessions",
        owner
            .post("/api/v1/users/ann@acme.test/revoke-sessions", json!({}))
            .await,
    );
    assert!(done["revoked_tokens"].as_u64() >= Some(3), "{done}");
    for (what, t) in [
        ("session 1", &a1),
        ("session 2", &s2["access_token"].as_str().unwrap().to_owned()),
        ("derived token", &derived),
    ] {
        assert_eq!(whoami_status(&anon, t).await, 401, "{what}");
    }
    for s in [&s1, &s2] {
        util::expect_error(
            "refresh after revoke-sessions",
            refresh(&anon, s["refresh_token"].as_str().unwrap()).await,
            401,
            "unauthenticated",
        );
    }

    // The user for themself, and root for anyone.
    let bob_http = anon.with_token(&bob_token);
    util::ok_data(
        "bob ends his own sessions",
        bob_http
            .post("/api/v1/users/bob@acme.test/revoke-sessions", json!({}))
            .await,
    );
    assert_eq!(whoami_status(&anon, &bob_token).await, 401);
    let e = eve.clone();
    util::ok_data(
        "root ends eve's sessions",
        root.post("/api/v1/users/eve@evil.test/revoke-sessions", json!({}))
            .await,
    );
    util::expect_error(
        "eve after root",
        e.get("/api/v1/auth/whoami").await,
        401,
        "unauthenticated",
    );
}

async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.expect("connect to the test storage")
}

/// Make every login of the store look `minutes` old.
pub(crate) async fn age_logins(url: &str, minutes: i64) {
    let db = pool(url).await;
    let shift = minutes * 60_000;
    for sql in [
        "UPDATE tokens SET auth_at = auth_at - $1 WHERE auth_at IS NOT NULL",
        "UPDATE refresh_tokens SET auth_at = auth_at - $1",
    ] {
        sqlx::query(sql).bind(shift).execute(&db).await.expect("age the logins");
    }
}

/// A device code; returns (device_code, user_code).
async fn device_code(anon: &Http) -> (String, String) {
    let code = util::ok_data("device code", anon.post("/api/v1/auth/device/code", json!({})).await);
    (
        code["device_code"]
            .as_str()
            .unwrap_or_else(|| panic!("{code}"))
            .to_owned(),
        code["user_code"]
            .as_str()
            .unwrap_or_else(|| panic!("{code}"))
            .to_owned(),
    )
}

/// Poll until the device code yields a session (interval 5 s).
async fn device_session(anon: &Http, device_code: &str) -> Value {
    for _ in 0..4 {
        let (st, body) = anon
            .post("/api/v1/auth/device/token", json!({"device_code": device_code}))
            .await;
        if st.is_success() {
            return body["data"].clone();
        }
        assert!(
            matches!(body["code"].as_str(), Some("authorization_pending" | "slow_down")),
            "poll: {st} {body}"
        );
        tokio::time::sleep(Duration::from_millis(5_500)).await;
    }
    panic!("the device code never yielded a session");
}

#[tokio::test]
async fn approving_a_device_login_proves_the_person_and_joins_the_approvers_session() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start(dir.path(), &url);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::create_user(&root, "dev@acme.test", PASSWORD).await;
    let s = util::login(&anon, "dev@acme.test", PASSWORD).await;
    let dev = anon.with_token(s["access_token"].as_str().unwrap());
    // A token derived from the login, as a thief might hold it.
    let (stolen, _) = derive(&dev, json!({"name": "leaked"})).await;

    // An hour-old token (its login was 10 minutes ago) cannot approve alone.
    age_logins(&url, 10).await;
    // Past the 1-s token cache, so the server reads the aged rows.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let stolen = anon.with_token(&stolen);
    let (_, user_code) = device_code(&anon).await;
    for (what, client) in [("the leaked derived token", &stolen), ("the login's own token", &dev)] {
        util::expect_error(
            &format!("{what}, login 10 minutes old, no password"),
            client
                .post("/api/v1/auth/device/approve", json!({"user_code": user_code}))
                .await,
            401,
            "password_required",
        );
    }
    util::expect_error(
        "a wrong password",
        stolen
            .post(
                "/api/v1/auth/device/approve",
                json!({"user_code": user_code, "password": "not the password at all"}),
            )
            .await,
        401,
        "invalid_credentials",
    );
    util::ok_data(
        "approval with the password",
        dev.post(
            "/api/v1/auth/device/approve",
            json!({"user_code": user_code, "password": PASSWORD}),
        )
        .await,
    );

    // A fresh login may approve without the password; that session joins
    // the approver's, so revoking the approver's token ends it.
    let s2 = util::login(&anon, "dev@acme.test", PASSWORD).await;
    let approver = anon.with_token(s2["access_token"].as_str().unwrap());
    let (device, user_code) = device_code(&anon).await;
    util::ok_data(
        "approval by a login younger than 5 minutes",
        approver
            .post("/api/v1/auth/device/approve", json!({"user_code": user_code}))
            .await,
    );
    let session = device_session(&anon, &device).await;
    let device_token = session["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{session}"))
        .to_owned();
    util::remember_secret(&device_token);
    assert_eq!(whoami_status(&anon, &device_token).await, 200);
    util::ok_data(
        "root revokes the approver's token",
        root.delete(&format!("/api/v1/tokens/{}", s2["accessor"].as_str().unwrap()))
            .await,
    );
    assert_eq!(whoami_status(&anon, &device_token).await, 401, "the device's session");
    util::expect_error(
        "the device's refresh token",
        refresh(&anon, session["refresh_token"].as_str().unwrap()).await,
        401,
        "unauthenticated",
    );
    // A device approved into a session that ends before it collects its
    // login gets nothing.
    let s3 = util::login(&anon, "dev@acme.test", PASSWORD).await;
    let (device, user_code) = device_code(&anon).await;
    util::ok_data(
        "approval",
        anon.with_token(s3["access_token"].as_str().unwrap())
            .post("/api/v1/auth/device/approve", json!({"user_code": user_code}))
            .await,
    );
    util::ok_data(
        "root revokes the approver's token before the device polls",
        root.delete(&format!("/api/v1/tokens/{}", s3["accessor"].as_str().unwrap()))
            .await,
    );
    util::expect_error(
        "the device polls after its session ended",
        anon.post("/api/v1/auth/device/token", json!({"device_code": device}))
            .await,
        400,
        "access_denied",
    );
    // The first login is untouched by that.
    assert_eq!(whoami_status(&anon, s["access_token"].as_str().unwrap()).await, 200);
}

/// Seconds left of `token`, as Vault's lookup-self tells (0 = no expiry).
async fn ttl_left(http: &Http) -> i64 {
    let (st, body) = http.get("/v1/auth/token/lookup-self").await;
    assert_eq!(st, 200, "lookup-self: {body}");
    body["data"]["ttl"].as_i64().unwrap_or_else(|| panic!("ttl in {body}"))
}

#[tokio::test]
async fn derived_tokens_keep_their_parents_binding_session_and_expiry() {
    use crate::access_mtls::{mtls_server, spki_sha256, tls_client};
    let dir = util::tempdir();
    let d = dir.path();
    let server = mtls_server(d).await;
    let with = |cert: &str, token: Option<&str>| Http::from_client(&server.base, tls_client(d, Some(cert)), token);
    let (root, _) = util::boot(&with("a", None)).await;
    util::org_tree(&root, "acme", &[]).await;
    util::service_account(&root, "acme", "ci", json!({})).await;
    util::service_account(
        &root,
        "acme",
        "robot",
        json!({"certificate": {"spki_sha256": spki_sha256(d, "c")}}),
    )
    .await;

    // A child of a certificate-bound token is bound to the same certificate
    // and expires no later than its parent.
    let parent = util::sa_token(
        &root,
        "acme",
        "ci",
        json!({"ttl_seconds": 7200, "bind_spki_sha256": spki_sha256(d, "a")}),
    )
    .await;
    let bound_parent = parent["token"].as_str().unwrap();
    let child = util::ok_data(
        "child of a bound token, without bind_certificate",
        with("a", Some(bound_parent))
            .post("/api/v1/tokens", json!({"name": "child", "ttl_seconds": 86_400}))
            .await,
    );
    let child_token = child["token"].as_str().unwrap_or_else(|| panic!("{child}"));
    util::remember_secret(child_token);
    let left = ttl_left(&with("a", Some(child_token))).await;
    assert!(
        (1..=7200).contains(&left),
        "the child outlives its parent: {left} s: {child}"
    );
    util::expect_error(
        "the bound token's child presented with another certificate",
        with("b", Some(child_token)).get("/api/v1/auth/whoami").await,
        401,
        "certificate_required",
    );
    util::ok_data(
        "the child with the parent's certificate",
        with("a", Some(child_token)).get("/api/v1/auth/whoami").await,
    );

    // A certificate-only caller: the child is bound to that certificate and
    // lives an hour at most, natively and over Vault's auth/token/create.
    let native = util::ok_data(
        "token made by certificate C alone",
        with("c", None)
            .post("/api/v1/tokens", json!({"name": "robot-child"}))
            .await,
    );
    util::remember_secret(native["token"].as_str().unwrap_or(""));
    let left = ttl_left(&with("c", Some(native["token"].as_str().unwrap()))).await;
    assert!(
        (1..=3600).contains(&left),
        "expires within the hour, not {left} s: {native}"
    );
    util::expect_error(
        "the certificate-only caller's child with another certificate",
        with("b", Some(native["token"].as_str().unwrap()))
            .get("/api/v1/auth/whoami")
            .await,
        401,
        "certificate_required",
    );
    let (st, vault) = with("c", None).post("/v1/auth/token/create", json!({})).await;
    assert_eq!(st, 200, "{vault}");
    let lease = vault["auth"]["lease_duration"].as_i64().unwrap_or(0);
    assert!(
        (1..=3600).contains(&lease),
        "auth/token/create over mTLS: lease {lease}: {vault}"
    );
    let vault_token = vault["auth"]["client_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{vault}"));
    util::remember_secret(vault_token);
    let (st, _) = with("b", Some(vault_token)).get("/v1/auth/token/lookup-self").await;
    assert_eq!(st, 403, "the Vault child is bound to certificate C");
    let (st, body) = with("c", Some(vault_token)).get("/v1/auth/token/lookup-self").await;
    assert_eq!(st, 200, "{body}");

    // Org admins list and revoke their service accounts' tokens; members do not.
    for u in ["adm@acme.test", "mem@acme.test"] {
        util::create_user(&root, u, PASSWORD).await;
    }
    util::add_member(&root, "acme", "adm@acme.test", "admin").await;
    util::add_member(&root, "acme", "mem@acme.test", "member").await;
    let anon = with("a", None);
    let adm = util::user_client(&anon, "adm@acme.test", PASSWORD).await;
    let mem = util::user_client(&anon, "mem@acme.test", PASSWORD).await;
    util::expect_error(
        "a member lists a service account's tokens",
        mem.get("/api/v1/orgs/acme/service-accounts/ci/tokens").await,
        403,
        "permission_denied",
    );
    let list = util::ok_data(
        "the admin lists ci's tokens",
        adm.get("/api/v1/orgs/acme/service-accounts/ci/tokens").await,
    );
    let accessors: Vec<&str> = list
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .filter_map(|t| t["accessor"].as_str())
        .collect();
    assert!(
        accessors.contains(&parent["accessor"].as_str().unwrap())
            && accessors.contains(&child["accessor"].as_str().unwrap()),
        "{list}"
    );
    assert!(list.to_string().find("cfr_").is_none(), "never the secrets: {list}");
    util::ok_data(
        "the admin revokes the bound token",
        adm.delete(&format!("/api/v1/tokens/{}", parent["accessor"].as_str().unwrap()))
            .await,
    );
    util::expect_error(
        "the revoked token's child",
        with("a", Some(child_token)).get("/api/v1/auth/whoami").await,
        401,
        "unauthenticated",
    );
}

#[tokio::test]
async fn account_hygiene_password_change_totp_reset_disable_and_delete() {
    let dir = util::tempdir();
    let (server, root) = booted(dir.path()).await;
    let anon = server.client(None);
    for u in ["own@acme.test", "ann@acme.test", "mem@acme.test"] {
        util::create_user(&root, u, PASSWORD).await;
    }
    let owner = util::user_client(&anon, "own@acme.test", PASSWORD).await;
    util::org_tree(&owner, "acme", &[]).await;
    util::add_member(&owner, "acme", "ann@acme.test", "member").await;
    util::add_member(&owner, "acme", "mem@acme.test", "member").await;
    let mem = util::user_client(&anon, "mem@acme.test", PASSWORD).await;

    // Password change: the old password is required; other sessions end.
    let s1 = util::login(&anon, "ann@acme.test", PASSWORD).await;
    let s2 = util::login(&anon, "ann@acme.test", PASSWORD).await;
    let ann = anon.with_token(s1["access_token"].as_str().unwrap());
    let new_password = "a brand new passphrase 7";
    util::remember_secret(new_password);
    util::expect_error(
        "password change with a wrong old password",
        ann.post(
            "/api/v1/auth/password",
            json!({"old_password": "not my password at all", "new_password": new_password}),
        )
        .await,
        401,
        "invalid_credentials",
    );
    util::expect_error(
        "password change to a short password",
        ann.post(
            "/api/v1/auth/password",
            json!({"old_password": PASSWORD, "new_password": "short"}),
        )
        .await,
        400,
        "invalid",
    );
    util::ok_data(
        "password change",
        ann.post(
            "/api/v1/auth/password",
            json!({"old_password": PASSWORD, "new_password": new_password}),
        )
        .await,
    );
    assert_eq!(
        whoami_status(&anon, s2["access_token"].as_str().unwrap()).await,
        401,
        "the other session"
    );
    util::expect_error(
        "the other session's refresh token",
        refresh(&anon, s2["refresh_token"].as_str().unwrap()).await,
        401,
        "unauthenticated",
    );
    assert_eq!(
        whoami_status(&anon, s1["access_token"].as_str().unwrap()).await,
        200,
        "this session"
    );
    util::expect_error(
        "login with the old password",
        anon.post(
            "/api/v1/auth/login",
            json!({"email": "ann@acme.test", "password": PASSWORD}),
        )
        .await,
        401,
        "invalid_credentials",
    );
    let ann = util::user_client(&anon, "ann@acme.test", new_password).await;

    // TOTP enrolment needs the password; an owner resets a lost TOTP.
    util::expect_error(
        "TOTP enrolment with a token alone",
        ann.post("/api/v1/auth/totp/enroll", json!({})).await,
        401,
        "password_required",
    );
    let e = util::ok_data(
        "TOTP enrolment with the password",
        ann.post("/api/v1/auth/totp/enroll", json!({"password": new_password}))
            .await,
    );
    let secret = util::base32_decode(e["secret"].as_str().unwrap());
    let step = util::unix_now() / 30;
    util::ok_data(
        "TOTP verify",
        ann.post(
            "/api/v1/auth/totp/verify",
            json!({"code": util::totp_at(&secret, step)}),
        )
        .await,
    );
    let login_ann = || {
        anon.post(
            "/api/v1/auth/login",
            json!({"email": "ann@acme.test", "password": new_password}),
        )
    };
    util::expect_error("login without a code", login_ann().await, 401, "totp_required");
    util::expect_error(
        "a member resets another's TOTP",
        mem.delete("/api/v1/users/ann@acme.test/totp").await,
        404,
        "not_found",
    );
    util::expect_error(
        "ann resets her own TOTP with a token",
        ann.delete("/api/v1/users/ann@acme.test/totp").await,
        404,
        "not_found",
    );
    util::ok_data(
        "the owner of ann's only org resets her TOTP",
        owner.delete("/api/v1/users/ann@acme.test/totp").await,
    );
    util::ok_data("login without a code after the reset", login_ann().await);

    // Disable: every token dies at once; no login until enabled.
    let s = util::login(&anon, "ann@acme.test", new_password).await;
    let token = s["access_token"].as_str().unwrap().to_owned();
    let (derived, _) = derive(&anon.with_token(&token), json!({})).await;
    util::expect_error(
        "a member disables a user",
        mem.post("/api/v1/users/ann@acme.test/disable", json!({})).await,
        404,
        "not_found",
    );
    util::ok_data(
        "the owner disables ann",
        owner.post("/api/v1/users/ann@acme.test/disable", json!({})).await,
    );
    for t in [&token, &derived] {
        assert_eq!(whoami_status(&anon, t).await, 401, "a token of the disabled user");
    }
    util::expect_error("login when disabled", login_ann().await, 403, "account_disabled");
    util::expect_error(
        "refresh when disabled",
        refresh(&anon, s["refresh_token"].as_str().unwrap()).await,
        401,
        "unauthenticated",
    );
    util::ok_data(
        "root enables ann",
        root.post("/api/v1/users/ann@acme.test/enable", json!({})).await,
    );
    let s = util::ok_data("login when enabled again", login_ann().await);
    util::remember_secret(s["access_token"].as_str().unwrap_or(""));

    // Delete: root only; the user, memberships, grants and tokens go.
    util::grant(
        &owner,
        "acme",
        json!({"user": "ann@acme.test", "project": "*", "environment": "*", "role": "viewer"}),
    )
    .await;
    util::expect_error(
        "the owner deletes a user",
        owner.delete("/api/v1/users/ann@acme.test").await,
        404,
        "not_found",
    );
    util::ok_data("root deletes ann", root.delete("/api/v1/users/ann@acme.test").await);
    assert_eq!(whoami_status(&anon, s["access_token"].as_str().unwrap()).await, 401);
    util::expect_error("login after delete", login_ann().await, 401, "invalid_credentials");
    let members = util::ok_data("members", owner.get("/api/v1/orgs/acme/members").await);
    assert!(!members.to_string().contains("ann@acme.test"), "{members}");
    let grants = util::ok_data("grants", owner.get("/api/v1/orgs/acme/grants").await);
    assert_eq!(
        grants.as_array().map(Vec::len),
        Some(0),
        "ann's grant went with her: {grants}"
    );
    util::create_user(&root, "ann@acme.test", PASSWORD).await;
}

/// Issue 16: a user denies a pending device login through the API; the
/// device's poll answers `access_denied` at once (the CLI stops), and the
/// code can be neither denied again nor approved. Anonymous callers and
/// root (no person to deny as) are refused.
#[tokio::test]
async fn a_denied_device_login_stops_its_poll() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start(dir.path(), &url);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::create_user(&root, "dev@acme.test", PASSWORD).await;
    let dev = util::user_client(&anon, "dev@acme.test", PASSWORD).await;
    let (device, user_code) = device_code(&anon).await;
    util::remember_secret(&device);
    let deny = json!({"user_code": user_code.to_lowercase()});
    assert_eq!(anon.post("/api/v1/auth/device/deny", deny.clone()).await.0, 401);
    util::expect_error(
        "root denies",
        root.post("/api/v1/auth/device/deny", deny.clone()).await,
        400,
        "invalid",
    );
    let denied = util::ok_data("deny", dev.post("/api/v1/auth/device/deny", deny.clone()).await);
    assert_eq!(denied["denied"], Value::Bool(true), "{denied}");
    util::expect_error(
        "the poll after a denial",
        anon.post("/api/v1/auth/device/token", json!({"device_code": device}))
            .await,
        400,
        "access_denied",
    );
    util::expect_error(
        "denied twice",
        dev.post("/api/v1/auth/device/deny", deny).await,
        404,
        "not_found",
    );
    util::expect_error(
        "approved after a denial",
        dev.post(
            "/api/v1/auth/device/approve",
            json!({"user_code": user_code, "password": PASSWORD}),
        )
        .await,
        404,
        "not_found",
    );
}
