//! KEK lifecycle on the real binary: rotate, write, re-wrap (also across a
//! kill -9 of the server), destroy; the value ciphertexts never change.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Row;

use crate::util::{self, ENV, Http, Server};

/// Run `coffer operator ARGS` against `server` with `token`.
pub(crate) fn operator(server: &Server, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("operator")
        .args(args)
        .env("COFFER_ADDR", &server.base)
        .env("COFFER_TOKEN", token)
        .stdin(Stdio::null())
        .output()
        .expect("run coffer")
}

pub(crate) async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.expect("connect to the test storage")
}

/// id → (ciphertext, wrapped_dek, kek_version) of every secret version.
async fn versions(db: &sqlx::AnyPool) -> BTreeMap<String, (Vec<u8>, Vec<u8>, i64)> {
    sqlx::query("SELECT id, ciphertext, wrapped_dek, kek_version FROM secret_versions")
        .fetch_all(db)
        .await
        .expect("versions")
        .iter()
        .map(|r| {
            (
                r.get("id"),
                (r.get("ciphertext"), r.get("wrapped_dek"), r.get("kek_version")),
            )
        })
        .collect()
}

async fn count_under(db: &sqlx::AnyPool, kek_version: i64) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM secret_versions WHERE kek_version = $1")
        .bind(kek_version)
        .fetch_one(db)
        .await
        .expect("count")
        .get("n")
}

async fn put(http: &Http, key: &str, value: &str) {
    let (st, b) = http
        .post(&format!("{ENV}/secrets/{key}"), json!({ "value": value }))
        .await;
    assert_eq!(st, 200, "{b}");
}

async fn reveal(http: &Http, key: &str) -> String {
    let (st, b) = http.get(&format!("{ENV}/secrets/{key}?reveal=true")).await;
    assert_eq!(st, 200, "{key}: {b}");
    b["data"]["value"].as_str().expect("value").to_owned()
}

/// Roll `key` back to `version` and check the value that comes back:
/// decrypts that old version through its (re-wrapped) DEK.
async fn check_old_version(http: &Http, key: &str, version: i64, want: &str) {
    let (st, b) = http
        .post(&format!("{ENV}/secrets/{key}/rollback"), json!({ "version": version }))
        .await;
    assert_eq!(st, 200, "rollback {key}: {b}");
    assert_eq!(reveal(http, key).await, want, "{key} v{version}");
}

/// A server on fresh storage, initialized, unsealed, with the acme tenant.
async fn ready(dir: &std::path::Path) -> (Server, String, Vec<String>, String) {
    let url = util::fresh_storage_url(dir).await;
    let server = Server::start(dir, &url);
    let anon = server.client(None);
    let (keys, _, root) = util::init(&anon, 3, 2).await;
    util::unseal(&anon, &[&keys[0], &keys[1]]).await;
    util::tenant(&anon.with_token(&root)).await;
    (server, root, keys, url)
}

#[tokio::test]
async fn rotate_write_rewrap_moves_every_dek_and_no_ciphertext() {
    let dir = util::tempdir();
    let (mut server, root, keys, url) = ready(dir.path()).await;
    let http = server.client(Some(&root));
    let db = pool(&url).await;

    for i in 0..30 {
        put(&http, &format!("K{i}"), &format!("one-{i}")).await;
        if i % 2 == 0 {
            put(&http, &format!("K{i}"), &format!("two-{i}")).await;
        }
    }
    let out = operator(&server, &root, &["rotate-kek", "--org", "acme"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("KEK version 2 is now active"));
    // Written after the rotation: under version 2 at once.
    for i in 0..10 {
        put(&http, &format!("K{i}"), &format!("three-{i}")).await;
    }
    let before = versions(&db).await;
    assert_eq!(count_under(&db, 2).await, 10);
    let stale = count_under(&db, 1).await;
    assert_eq!(stale, 45);

    // Version 1 still wraps DEKs: it cannot be destroyed yet.
    let (st, b) = http.delete("/api/v1/orgs/acme/keks/1").await;
    assert_eq!(st, 409, "{b}");
    assert!(b["message"].as_str().unwrap().contains("45 secret versions"), "{b}");

    let out = operator(&server, &root, &["rewrap", "--org", "acme", "--batch", "7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Re-wrapped 45 DEKs of acme to KEK version 2"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("45/45"), "progress bar");

    let after = versions(&db).await;
    assert_eq!(before.len(), after.len());
    for (id, (ct, dek, kek)) in &before {
        let (ct2, dek2, kek2) = &after[id];
        assert_eq!(ct, ct2, "ciphertext of {id} must be byte-identical");
        assert_eq!(*kek2, 2, "{id} references the newest KEK");
        if *kek == 1 {
            assert_ne!(dek, dek2, "{id}: DEK re-wrapped");
        } else {
            assert_eq!(dek, dek2, "{id}: already under v2, untouched");
        }
    }
    // A second run finds nothing to do.
    let out = operator(&server, &root, &["rewrap", "--org", "acme"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Re-wrapped 0 DEKs"));

    // Crypto-shred v1, restart (no KEK cached), every version still decrypts.
    let (st, b) = http.delete("/api/v1/orgs/acme/keks/2").await;
    assert_eq!(st, 409, "active version: {b}");
    let out = operator(&server, &root, &["destroy-kek", "--org", "acme", "--version", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, keks) = http.get("/api/v1/orgs/acme/keks").await;
    assert_eq!(keks["data"].as_array().unwrap().len(), 1, "{keks}");
    server.restart_hard();
    let anon = server.client(None);
    util::unseal(&anon, &[&keys[2], &keys[0]]).await;
    let http = server.client(Some(&root));
    for i in 0..30 {
        let want = match i {
            0..10 => format!("three-{i}"),
            _ if i % 2 == 0 => format!("two-{i}"),
            _ => format!("one-{i}"),
        };
        assert_eq!(reveal(&http, &format!("K{i}")).await, want);
        check_old_version(&http, &format!("K{i}"), 1, &format!("one-{i}")).await;
    }
    let (st, b) = http.post(&format!("{ENV}/inject"), json!({})).await;
    assert_eq!(st, 200, "{b}");
}

#[tokio::test]
async fn rewrap_killed_mid_run_resumes_and_loses_nothing() {
    let dir = util::tempdir();
    let (mut server, root, keys, url) = ready(dir.path()).await;
    let http = server.client(Some(&root));
    let db = pool(&url).await;
    const N: usize = 300;
    for i in 0..N {
        put(&http, &format!("S{i}"), &format!("value-{i}")).await;
    }
    let (st, _) = http.post("/api/v1/orgs/acme/keks/rotate", json!({})).await;
    assert_eq!(st, 200);
    let before = versions(&db).await;

    // One DEK per batch, so the run is long enough to be killed in the middle.
    let mut rewrap = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["operator", "rewrap", "--org", "acme", "--batch", "1"])
        .env("COFFER_ADDR", &server.base)
        .env("COFFER_TOKEN", &root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rewrap");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let moved = count_under(&db, 2).await;
        if moved >= 20 {
            assert!(moved < N as i64, "rewrap finished before it could be killed");
            break;
        }
        assert!(Instant::now() < deadline, "rewrap made no progress");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill9();
    let _ = rewrap.wait();
    // PostgreSQL finishes a statement already received from a killed client:
    // count once the last batch in flight has landed or not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let partial = count_under(&db, 2).await;
    assert!(partial > 0 && partial < N as i64, "killed in the middle: {partial}/{N}");

    server.restart_hard();
    util::unseal(&server.client(None), &[&keys[1], &keys[2]]).await;
    let out = operator(&server, &root, &["rewrap", "--org", "acme", "--batch", "64"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("Re-wrapped {} DEKs", N as i64 - partial)),
        "resumed where it stopped: {stdout}"
    );
    let after = versions(&db).await;
    assert_eq!(after.len(), N);
    for (id, (ct, _, _)) in &before {
        assert_eq!(&after[id].0, ct, "ciphertext of {id} unchanged");
        assert_eq!(after[id].2, 2);
    }
    let http = server.client(Some(&root));
    let (st, b) = http.post(&format!("{ENV}/inject"), json!({})).await;
    assert_eq!(st, 200, "{b}");
    for i in 0..N {
        assert_eq!(b["data"][format!("S{i}")], format!("value-{i}"));
    }
}

/// A stand-in OpenID Provider: discovery, an empty key set, and a token
/// endpoint that records what it was sent (the client authentication) and
/// refuses the code. Enough to see the SSO client secret decrypted and
/// sent by coffer's callback, without a browser sign-in.
struct TokenEndpointSpy {
    issuer: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TokenEndpointSpy {
    async fn start() -> TokenEndpointSpy {
        use axum::routing::{get, post};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let doc = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let log = seen.clone();
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let doc = doc.clone();
                    async move { axum::Json(doc) }
                }),
            )
            .route("/jwks", get(|| async { axum::Json(json!({"keys": []})) }))
            .route(
                "/token",
                post(move |headers: axum::http::HeaderMap, body: String| {
                    let log = log.clone();
                    async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("Basic "))
                            .and_then(|b| {
                                use base64::Engine;
                                base64::engine::general_purpose::STANDARD.decode(b).ok()
                            })
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default();
                        log.lock().expect("log").push(format!("{auth} {body}"));
                        (
                            axum::http::StatusCode::BAD_REQUEST,
                            axum::Json(json!({"error": "invalid_grant"})),
                        )
                    }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TokenEndpointSpy { issuer, seen }
    }
}

/// Issue 21: after a KEK rotation, `coffer operator rewrap` moves every
/// credential sealed under the old version (webhook signing secret, CI sync
/// token, SSO client secret, database connection URL) in its own format,
/// so the old version can be destroyed, and each still works after a
/// restart: the webhook delivers and verifies, CI sync pushes to the fake
/// GitHub, the SSO callback sends the decrypted client secret, and a
/// database lease is issued on the real PostgreSQL.
#[tokio::test]
async fn rewrap_moves_every_credential_sealed_under_the_kek_and_each_still_works() {
    const SSO_SECRET: &str = "sso-client-secret-rewrap-4b7d";
    util::remember_secret(SSO_SECRET);
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let mut server = Server::start_full(
        dir.path(),
        &url,
        "tls_disable = true",
        "[jobs]\ninterval_ms = 200\n",
        &[],
    );
    let (root, shares) = util::boot(&server.client(None)).await;
    util::tenant(&root).await;
    let db = pool(&url).await;

    // One credential of each kind, all under KEK version 1.
    let receiver = crate::webhooks::Receiver::start(0).await;
    crate::webhooks::add_hook(&root, &receiver, json!(["approval.requested"]), "coffer").await;
    let gh = crate::ci_sync::FakeGitHub::start("acme", "api").await;
    util::write_secret(&root, ENV, "SYNCED", "synced-value-one").await;
    util::ok_data(
        "ci sync target",
        root.post("/api/v1/orgs/acme/ci-sync", crate::ci_sync::github_spec(&gh, json!({})))
            .await,
    );
    gh.wait_for(&[("SYNCED", "synced-value-one")]).await;
    let idp = TokenEndpointSpy::start().await;
    util::ok_data(
        "sso",
        root.put(
            "/api/v1/orgs/acme/sso",
            json!({"issuer": idp.issuer, "client_id": "coffer-rewrap", "client_secret": SSO_SECRET,
                   "scopes": ["openid", "email"], "allowed_domains": ["acme.test"]}),
        )
        .await,
    );
    util::ok_data(
        "database connection",
        root.post(
            "/api/v1/orgs/acme/database/connections",
            json!({"name": "main", "url": "postgres://postgres@127.0.0.1:5432/postgres",
                   "project": "api", "environment": "production"}),
        )
        .await,
    );
    let role = format!("rewrap_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    util::ok_data(
        "database role",
        root.post(
            "/api/v1/orgs/acme/database/roles",
            json!({"name": role, "connection": "main", "default_ttl": 600}),
        )
        .await,
    );
    let sealed = |table: &'static str, column: &'static str| {
        let db = db.clone();
        async move {
            let r = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {column} AS blob, kek_version FROM {table}"
            )))
            .fetch_one(&db)
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
            (r.get::<Vec<u8>, _>("blob"), r.get::<i64, _>("kek_version"))
        }
    };
    let tables = [
        ("webhooks", "sealed_secret"),
        ("ci_sync_targets", "wrapped_dek"),
        ("sso_providers", "client_secret"),
        ("db_connections", "sealed_url"),
    ];
    let mut before = Vec::new();
    for (t, c) in tables {
        let (blob, v) = sealed(t, c).await;
        assert_eq!(v, 1, "{t} under KEK v1");
        before.push(blob);
    }
    let (ci_cipher_before,): (Vec<u8>,) = sqlx::query_as("SELECT credential FROM ci_sync_targets")
        .fetch_one(&db)
        .await
        .expect("ci credential");

    util::ok_data("rotate", root.post("/api/v1/orgs/acme/keks/rotate", json!({})).await);
    let (st, b) = root.delete("/api/v1/orgs/acme/keks/1").await;
    assert_eq!(st, 409, "v1 still seals credentials: {b}");

    let out = operator(&server, root.token(), &["rewrap", "--org", "acme"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 webhook secrets, 1 CI sync tokens, 1 SSO client secrets, 1 database connections"),
        "{stdout}"
    );
    for ((t, c), old) in tables.iter().zip(&before) {
        let (blob, v) = sealed(t, c).await;
        assert_eq!(v, 2, "{t} moved to KEK v2");
        assert_ne!(&blob, old, "{t} sealed again");
        assert_eq!(blob.len(), old.len(), "{t}: same format");
        assert_eq!(blob[0], old[0], "{t}: same format byte");
    }
    let (ci_cipher_after,): (Vec<u8>,) = sqlx::query_as("SELECT credential FROM ci_sync_targets")
        .fetch_one(&db)
        .await
        .expect("ci credential");
    assert_eq!(
        ci_cipher_before, ci_cipher_after,
        "the token ciphertext is untouched (DEK re-wrapped)"
    );
    let out = operator(&server, root.token(), &["rewrap", "--org", "acme"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 webhook secrets, 0 CI sync tokens"),
        "a second run moves nothing"
    );

    // v1 can go now; restart so that no KEK is cached.
    util::ok_data("destroy v1", root.delete("/api/v1/orgs/acme/keks/1").await);
    server.restart_hard();
    util::unseal(&server.client(None), &[&shares[1], &shares[2]]).await;
    let root = server.client(Some(root.token()));

    // Database: a lease on the real PostgreSQL.
    let c = util::ok_data(
        "creds",
        root.post(&format!("/api/v1/orgs/acme/database/creds/{role}"), json!({}))
            .await,
    );
    util::remember_secret(c["password"].as_str().unwrap_or(""));
    let user = c["username"].as_str().expect("username").to_owned();
    let conn = <sqlx::PgConnection as sqlx::Connection>::connect(&format!(
        "postgres://{user}:{}@127.0.0.1:5432/postgres",
        c["password"].as_str().unwrap_or("")
    ))
    .await
    .expect("the lease logs in");
    let _ = sqlx::Connection::close(conn).await;
    util::ok_data(
        "revoke",
        root.post(
            "/api/v1/orgs/acme/database/leases/revoke",
            json!({"lease_id": c["lease_id"]}),
        )
        .await,
    );

    // CI sync: a new value reaches the fake GitHub with the token.
    util::write_secret(&root, ENV, "SYNCED", "synced-value-two").await;
    gh.wait_for(&[("SYNCED", "synced-value-two")]).await;

    // SSO: the callback decrypts the client secret and sends it.
    let anon = server.client(None);
    let start = util::ok_data(
        "sso start",
        anon.post(
            "/api/v1/auth/sso/acme/start",
            json!({"redirect_uri": "http://127.0.0.1:9/oidc/callback", "client_nonce": "nonce-rewrap-0123456789"}),
        )
        .await,
    );
    let auth = reqwest::Url::parse(start["auth_url"].as_str().expect("auth_url")).expect("url");
    let state = auth
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let (st, b) = anon
        .post(
            "/api/v1/auth/sso/callback",
            json!({"state": state, "code": "code-1", "client_nonce": "nonce-rewrap-0123456789"}),
        )
        .await;
    assert!(!b.to_string().contains("does not decrypt"), "{st} {b}");
    let seen = idp.seen.lock().expect("seen").clone();
    assert!(
        seen.iter().any(|r| r.contains(SSO_SECRET)),
        "the token endpoint got the decrypted client secret: {seen:?}"
    );

    // Webhook: an approval request is delivered, and its signature verifies.
    util::create_user(&root, "dev@acme.test", "correct horse battery staple").await;
    util::add_member(&root, "acme", "dev@acme.test", "member").await;
    util::grant(
        &root,
        "acme",
        json!({"user": "dev@acme.test", "project": "api", "environment": "production",
               "permissions": ["read", "create", "update"]}),
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
    let dev = util::user_client(&anon, "dev@acme.test", "correct horse battery staple").await;
    let (st, b) = dev
        .post(&format!("{ENV}/secrets/SYNCED"), json!({"value": "synced-value-three"}))
        .await;
    assert_eq!(st, 202, "a change request: {b}");
    receiver.wait_for(1).await;
    assert_eq!(
        receiver.inner.bad.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the signature verified"
    );
}
