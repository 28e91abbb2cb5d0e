//! One-time share links (issue 18, docs/share-links.md) on the real binary:
//! CLI → CLI round trips (with and without passphrase), a spent, expired,
//! revoked or unknown link answering exactly alike, concurrent last views
//! with one winner, a wrong passphrase yielding nothing, no plaintext or
//! fragment key in the store, the log or the audit trail, the organization
//! policy's limits, the purge job, and the audit records.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::util::{self, Http, Server};

pub(crate) const VALUE: &str = "s3cr3t-shared-value-7f1e";

/// Run `coffer` with `token`, acme/api/production, optional passphrase.
pub(crate) fn coffer(
    server: &Server,
    home: &Path,
    token: Option<&str>,
    pass: Option<&str>,
    args: &[&str],
    stdin: &str,
) -> Output {
    std::fs::create_dir_all(home).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.args(args)
        .current_dir(home)
        .env("COFFER_ADDR", &server.base)
        .env("COFFER_ORG", "acme")
        .env("COFFER_PROJECT", "api")
        .env("COFFER_ENV", "production")
        .env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .env_remove("COFFER_TOKEN")
        .env_remove("COFFER_CONTEXT")
        .env_remove("COFFER_SHARE_PASSPHRASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.env("COFFER_TOKEN", t);
    }
    if let Some(p) = pass {
        cmd.env("COFFER_SHARE_PASSPHRASE", p);
    }
    let mut child = cmd.spawn().expect("run coffer");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A server, booted, with acme/api/production; returns it, root, its token.
pub(crate) async fn setup(dir: &Path, extra: &str) -> (Server, Http, String) {
    let url = util::fresh_storage_url(dir).await;
    let server = Server::start_full(dir, &url, "tls_disable = true", extra, &[]);
    let (root, _) = util::boot(&server.client(None)).await;
    util::tenant(&root).await;
    let token = root.token().to_owned();
    (server, root, token)
}

/// `coffer share create` with `args`; returns the URL.
pub(crate) fn create(
    server: &Server,
    home: &Path,
    token: &str,
    pass: Option<&str>,
    args: &[&str],
    stdin: &str,
) -> String {
    let mut all = vec!["share", "create"];
    all.extend_from_slice(args);
    let out = coffer(server, home, Some(token), pass, &all, stdin);
    assert!(out.status.success(), "share create: {}", text(&out.stderr));
    let url = text(&out.stdout).trim().to_owned();
    assert!(
        url.starts_with(&format!("{}/s/", server.base)) && url.contains("#k="),
        "{url}"
    );
    remember_url(&url);
    url
}

/// The log scan must not find the fragment key (nor the value).
fn remember_url(url: &str) {
    let (_, frag) = url.split_once("#k=").unwrap();
    util::remember_secret(frag.split('&').next().unwrap());
}

/// The link id of a URL.
pub(crate) fn link_id(url: &str) -> String {
    url.split("/s/").nth(1).unwrap().split('#').next().unwrap().to_owned()
}

pub(crate) async fn open_api(anon: &Http, id: &str) -> (u16, Value) {
    let (st, b) = anon.post("/api/v1/shares/open", json!({ "id": id })).await;
    (st.as_u16(), b)
}

/// What an unknown link answers.
async fn unknown(anon: &Http) -> (u16, Value) {
    open_api(anon, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await
}

/// Create a link through the API with the client crypto of the CLI.
async fn create_api(http: &Http, org: &str, views: i64, expires_in: i64) -> (String, Value) {
    let sealed = coffer::crypto::share::seal(VALUE.as_bytes(), None).unwrap();
    let data = util::ok_data(
        "create link",
        http.post(
            &format!("/api/v1/orgs/{org}/shares"),
            json!({
                "ciphertext": base64::engine::general_purpose::STANDARD.encode(&sealed.ciphertext),
                "kdf": sealed.kdf,
                "expires_in": expires_in,
                "max_views": views,
            }),
        )
        .await,
    );
    (data["id"].as_str().unwrap().to_owned(), data)
}

async fn db(dir: &Path) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let url = std::fs::read_to_string(dir.join("coffer.toml")).unwrap();
    let url = url
        .lines()
        .find_map(|l| l.strip_prefix("url = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .to_owned();
    sqlx::AnyConnection::connect(&url).await.expect("connect to the store")
}

#[tokio::test]
async fn a_cli_link_opens_once_in_the_cli_then_answers_like_an_unknown_one() {
    let dir = util::tempdir();
    let (server, _root, token) = setup(dir.path(), "").await;
    util::remember_secret(VALUE);
    let home = dir.path().join("cli");
    let url = create(
        &server,
        &home,
        &token,
        None,
        &["--expires", "1h", "--views", "1"],
        VALUE,
    );
    // Opened by someone with no login at all.
    let other = dir.path().join("recipient");
    let out = coffer(&server, &other, None, None, &["share", "open", &url], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), VALUE);
    let again = coffer(&server, &other, None, None, &["share", "open", &url], "");
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already opened, has expired, or never existed"),
        "{}",
        text(&again.stderr)
    );
    assert!(text(&again.stdout).is_empty());
    let anon = server.client(None);
    assert_eq!(
        open_api(&anon, &link_id(&url)).await,
        unknown(&anon).await,
        "spent = unknown"
    );
    assert_eq!(unknown(&anon).await.0, 404);
    // A link without its fragment is refused before any request.
    let cut = url.split('#').next().unwrap();
    let out = coffer(&server, &other, None, None, &["share", "open", cut], "");
    assert!(text(&out.stderr).contains("after #"), "{}", text(&out.stderr));
    drop(server);
}

#[tokio::test]
async fn a_passphrase_is_a_second_factor_and_a_wrong_one_yields_nothing() {
    let dir = util::tempdir();
    let (server, _root, token) = setup(dir.path(), "").await;
    util::remember_secret(VALUE);
    let pass = "tulip-orbit-cascade-91";
    util::remember_secret(pass);
    let home = dir.path().join("cli");
    let url = create(
        &server,
        &home,
        &token,
        Some(pass),
        &["--passphrase", "--views", "2"],
        VALUE,
    );
    assert!(url.ends_with("&p=1"), "{url}");
    let other = dir.path().join("recipient");
    // No passphrase available: refused before the view is used.
    let out = coffer(&server, &other, None, None, &["share", "open", &url], "");
    assert!(
        text(&out.stderr).contains("needs a passphrase"),
        "{}",
        text(&out.stderr)
    );
    // Wrong passphrase: a clean error, no value (and a view is used).
    let out = coffer(&server, &other, None, Some("wrong-guess"), &["share", "open", &url], "");
    assert!(!out.status.success());
    assert!(text(&out.stdout).is_empty(), "no output on a wrong passphrase");
    assert!(
        text(&out.stderr).contains("could not be decrypted"),
        "{}",
        text(&out.stderr)
    );
    // The right one opens the last view.
    let out = coffer(&server, &other, None, Some(pass), &["share", "open", &url], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), VALUE);
    let out = coffer(&server, &other, None, Some(pass), &["share", "open", &url], "");
    assert!(!out.status.success());
    drop(server);
}

#[tokio::test]
async fn spent_expired_revoked_and_unknown_links_answer_exactly_alike() {
    let dir = util::tempdir();
    let (server, root, _) = setup(dir.path(), "[jobs]\ninterval_ms = 200\n").await;
    let anon = server.client(None);
    let nobody = unknown(&anon).await;
    assert_eq!(nobody.0, 404);

    // Two views, then spent.
    let (id, _) = create_api(&root, "acme", 2, 3600).await;
    util::remember_secret(&id);
    for left in [1, 0] {
        let (st, b) = open_api(&anon, &id).await;
        assert_eq!(st, 200, "view with {left} left: {b}");
        assert!(b["data"]["ciphertext"].is_string() && b["data"]["kdf"] == "none", "{b}");
    }
    assert_eq!(open_api(&anon, &id).await, nobody, "spent");

    // Revoked.
    let (id, made) = create_api(&root, "acme", 5, 3600).await;
    util::remember_secret(&id);
    let handle = made["handle"].as_str().unwrap();
    util::ok_data("revoke", root.delete(&format!("/api/v1/shares/{handle}")).await);
    assert_eq!(open_api(&anon, &id).await, nobody, "revoked");
    util::expect_error(
        "revoke twice",
        root.delete(&format!("/api/v1/shares/{handle}")).await,
        404,
        "not_found",
    );

    // Expired: its expiry moved into the past in the store; the purge job
    // then deletes the row, under an audit record.
    let (id, made) = create_api(&root, "acme", 5, 3600).await;
    util::remember_secret(&id);
    let handle = made["handle"].as_str().unwrap().to_owned();
    let mut conn = db(dir.path()).await;
    sqlx::query("UPDATE share_links SET expires_at = 1 WHERE id = $1")
        .bind(handle.clone())
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(open_api(&anon, &id).await, nobody, "expired");
    // Malformed ids too.
    for bad in ["", "x", "../../etc", &"A".repeat(300)] {
        assert_eq!(open_api(&anon, bad).await, nobody, "{bad:?}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM share_links WHERE id = $1")
            .bind(handle.clone())
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        if n == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "expired link not purged");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let rec = util::ok_data("audit", root.get("/api/v1/audit/records?action=share.expire").await);
    let recs = rec.as_array().cloned().unwrap_or_default();
    assert!(
        recs.iter()
            .any(|r| r["resource"].as_str().is_some_and(|x| x.ends_with(&handle)) && r["org"] == "acme"),
        "{rec}"
    );
    drop(server);
}

#[tokio::test]
async fn concurrent_last_views_have_one_winner() {
    let dir = util::tempdir();
    let (server, root, _) = setup(dir.path(), "").await;
    let anon = server.client(None);
    for _round in 0..3 {
        let (id, _) = create_api(&root, "acme", 1, 3600).await;
        util::remember_secret(&id);
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let anon = anon.clone();
                let id = id.clone();
                tokio::spawn(async move { open_api(&anon, &id).await.0 })
            })
            .collect();
        let mut codes = Vec::new();
        for t in tasks {
            codes.push(t.await.unwrap());
        }
        assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
        assert_eq!(codes.iter().filter(|c| **c == 404).count(), 9, "{codes:?}");
    }
    drop(server);
}

#[tokio::test]
async fn the_store_log_and_audit_hold_no_value_key_or_link_id() {
    let dir = util::tempdir();
    let (server, root, token) = setup(dir.path(), "").await;
    util::remember_secret(VALUE);
    util::write_secret(&root, util::ENV, "DB_PASSWORD", VALUE).await;
    let home = dir.path().join("cli");
    let url = create(
        &server,
        &home,
        &token,
        None,
        &["--from", "DB_PASSWORD", "--views", "2"],
        "",
    );
    let id = link_id(&url);
    util::remember_secret(&id);
    let key_b64 = url.split("#k=").nth(1).unwrap().to_owned();
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&key_b64)
        .unwrap();

    // The link records where the value came from, never the value.
    let mine = util::ok_data("list", root.get("/api/v1/shares").await);
    assert_eq!(mine[0]["source"], "api/production:DB_PASSWORD", "{mine}");
    assert!(!mine.to_string().contains(VALUE));
    let out = coffer(&server, &home, Some(&token), None, &["share", "list"], "");
    assert!(
        text(&out.stdout).contains("api/production:DB_PASSWORD"),
        "{}",
        text(&out.stdout)
    );

    // One view, so the row is still there to scan.
    let out = coffer(&server, &dir.path().join("r"), None, None, &["share", "open", &url], "");
    assert_eq!(text(&out.stdout), VALUE, "{}", text(&out.stderr));

    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("value", VALUE.as_bytes().to_vec()),
        ("fragment key", key.clone()),
        ("fragment key (base64)", key_b64.as_bytes().to_vec()),
        ("link id", id.as_bytes().to_vec()),
    ];
    let mut conn = db(dir.path()).await;
    let rows = sqlx::query(
        "SELECT id, lookup, org_id, created_by, creator_name, env_id, source, ciphertext, kdf FROM share_links",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    let mut stored: Vec<u8> = Vec::new();
    for c in ["id", "org_id", "created_by", "creator_name", "source", "kdf"] {
        stored.extend_from_slice(r.try_get::<String, _>(c).unwrap().as_bytes());
    }
    stored.extend(r.try_get::<Vec<u8>, _>("lookup").unwrap());
    stored.extend(r.try_get::<Vec<u8>, _>("ciphertext").unwrap());
    // SQLite: the whole database files too.
    if util::storage_kind() == "sqlite" {
        for f in ["coffer.db", "coffer.db-wal"] {
            if let Ok(b) = std::fs::read(dir.path().join(f)) {
                stored.extend(b);
            }
        }
    }
    // The secret's own version ciphertext is the server's encryption; the
    // value in clear must appear nowhere.
    for (what, n) in &needles {
        assert!(
            !stored.windows(n.len()).any(|w| w == n.as_slice()),
            "{what} found in the store"
        );
    }
    let audit = util::ok_data("audit", root.get("/api/v1/audit/records?limit=1000").await).to_string();
    for (what, n) in &needles[..] {
        if let Ok(s) = std::str::from_utf8(n) {
            assert!(!audit.contains(s), "{what} found in the audit trail");
        }
    }
    // Created, viewed: audited with the organization.
    for action in ["share.create", "share.open", "share.viewed"] {
        let recs = util::ok_data(
            action,
            root.get(&format!("/api/v1/audit/records?action={action}")).await,
        );
        assert!(!recs.as_array().unwrap().is_empty(), "no {action} record");
    }
    let viewed = util::ok_data("viewed", root.get("/api/v1/audit/records?action=share.viewed").await);
    assert_eq!(viewed[0]["org"], "acme", "{viewed}");
    // Revoke by handle through the CLI: audited, then gone from the list.
    let handle = mine[0]["handle"].as_str().unwrap();
    let out = coffer(&server, &home, Some(&token), None, &["share", "revoke", handle], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let recs = util::ok_data("revoke", root.get("/api/v1/audit/records?action=share.revoke").await);
    assert!(!recs.as_array().unwrap().is_empty());
    assert_eq!(util::ok_data("list", root.get("/api/v1/shares").await), json!([]));
    drop(server); // scans the server log for the value, key and id
}

#[tokio::test]
async fn the_organization_policy_limits_links_and_names_the_limit() {
    let dir = util::tempdir();
    let (server, root, _) = setup(dir.path(), "").await;
    let anon = server.client(None);
    util::create_user(&root, "bob@example.com", "bob-password-long-1").await;
    util::add_member(&root, "acme", "bob@example.com", "member").await;
    let bob = util::user_client(&anon, "bob@example.com", "bob-password-long-1").await;
    let sealed = coffer::crypto::share::seal(b"x", None).unwrap();
    let body = |expires: i64, from: Option<(&str, &str)>| {
        let mut b = json!({
            "ciphertext": base64::engine::general_purpose::STANDARD.encode(&sealed.ciphertext),
            "kdf": "none",
            "expires_in": expires,
        });
        if let Some((env, key)) = from {
            b["from"] = json!({ "project": "api", "env": env, "key": key });
        }
        b
    };
    // Defaults: 7 days, members, no protected environments.
    let p = util::ok_data("policy", bob.get("/api/v1/orgs/acme/share-policy").await);
    assert_eq!(
        p,
        json!({ "max_expiry": 604800, "min_role": "member", "allow_protected": false })
    );
    util::ok_data(
        "member creates",
        bob.post("/api/v1/orgs/acme/shares", body(3600, None)).await,
    );
    let (st, b) = bob.post("/api/v1/orgs/acme/shares", body(8 * 86400, None)).await;
    assert_eq!(st.as_u16(), 403, "{b}");
    assert!(b["message"].as_str().unwrap().contains("604800 s (max_expiry)"), "{b}");
    // Members may not change it.
    util::expect_error(
        "member sets policy",
        bob.put("/api/v1/orgs/acme/share-policy", json!({ "max_expiry": 60 }))
            .await,
        403,
        "permission_denied",
    );
    util::ok_data(
        "set policy",
        root.put(
            "/api/v1/orgs/acme/share-policy",
            json!({ "max_expiry": 1800, "min_role": "admin" }),
        )
        .await,
    );
    let (st, b) = bob.post("/api/v1/orgs/acme/shares", body(600, None)).await;
    assert_eq!((st.as_u16(), b["code"].as_str()), (403, Some("limit_exceeded")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("(min_role)"), "{b}");
    let (st, b) = root.post("/api/v1/orgs/acme/shares", body(3600, None)).await;
    assert_eq!(st.as_u16(), 403, "{b}");
    assert!(b["message"].as_str().unwrap().contains("1800 s (max_expiry)"), "{b}");
    util::expect_error(
        "bad role",
        root.put("/api/v1/orgs/acme/share-policy", json!({ "min_role": "god" }))
            .await,
        400,
        "invalid",
    );

    // Protected environments: refused by default, allowed by the policy.
    ok_env(&root, "vault", true).await;
    util::write_secret(
        &root,
        &util::env_path("acme", "api", "vault"),
        "ROOT_PW",
        "protected-value-123",
    )
    .await;
    util::write_secret(&root, util::ENV, "PLAIN", "plain-value-1234").await;
    util::ok_data(
        "from an unprotected env",
        root.post("/api/v1/orgs/acme/shares", body(600, Some(("production", "PLAIN"))))
            .await,
    );
    let (st, b) = root
        .post("/api/v1/orgs/acme/shares", body(600, Some(("vault", "ROOT_PW"))))
        .await;
    assert_eq!(st.as_u16(), 403, "{b}");
    assert!(b["message"].as_str().unwrap().contains("(allow_protected)"), "{b}");
    util::ok_data(
        "allow protected",
        root.put("/api/v1/orgs/acme/share-policy", json!({ "allow_protected": true }))
            .await,
    );
    util::ok_data(
        "now allowed",
        root.post("/api/v1/orgs/acme/shares", body(600, Some(("vault", "ROOT_PW"))))
            .await,
    );
    // `from` needs reveal on that environment: an outsider's claim is refused.
    util::ok_data(
        "member again",
        root.put("/api/v1/orgs/acme/share-policy", json!({ "min_role": "member" }))
            .await,
    );
    let (st, b) = bob
        .post("/api/v1/orgs/acme/shares", body(600, Some(("vault", "ROOT_PW"))))
        .await;
    assert_eq!(st.as_u16(), 403, "{b}");
    // Bad input is named.
    for (bad, field) in [
        (
            json!({ "ciphertext": "!!", "kdf": "none", "expires_in": 600 }),
            "ciphertext",
        ),
        (
            json!({ "ciphertext": "AAAA", "kdf": "none", "expires_in": 600 }),
            "ciphertext",
        ),
        (
            json!({ "ciphertext": body(600, None)["ciphertext"], "kdf": "md5", "expires_in": 600 }),
            "kdf",
        ),
        (
            json!({ "ciphertext": body(600, None)["ciphertext"], "kdf": "none", "expires_in": 5 }),
            "expires_in",
        ),
        (
            json!({ "ciphertext": body(600, None)["ciphertext"], "kdf": "none", "expires_in": 600, "max_views": 0 }),
            "max_views",
        ),
    ] {
        let (st, b) = root.post("/api/v1/orgs/acme/shares", bad).await;
        assert_eq!(st.as_u16(), 400, "{b}");
        assert!(b["message"].as_str().unwrap().contains(field), "{field}: {b}");
    }
    // The CLI names the limit too.
    let out = coffer(
        &server,
        &dir.path().join("cli"),
        Some(root.token()),
        None,
        &["share", "create", "--expires", "30d"],
        "v",
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("max_expiry"), "{}", text(&out.stderr));
    let recs = util::ok_data("audit", root.get("/api/v1/audit/records?action=share.policy_set").await);
    assert!(recs.as_array().unwrap().len() >= 3);
    drop(server);
}

async fn ok_env(root: &Http, slug: &str, protected: bool) {
    util::ok_data(
        "create env",
        root.post(
            "/api/v1/orgs/acme/projects/api/environments",
            json!({ "slug": slug, "name": slug, "protected": protected }),
        )
        .await,
    );
}
