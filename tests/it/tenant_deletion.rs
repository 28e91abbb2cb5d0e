//! Deleting environments, projects and organizations (issue 23) on the real
//! binary and whichever store `COFFER_TEST_STORAGE` names: delete hides and
//! makes unreadable, restore inside the window brings everything back with
//! its history, purge erases the ciphertexts and wrapped DEKs (the store is
//! scanned: SQLite file bytes, PostgreSQL rows) and an organization's KEKs;
//! non-admins are refused; the purge job erases what the window let go; every
//! step is audited.

use sqlx::{AnyConnection, Connection, Row};

use crate::cli_tenants::{ALICE, As, PASSWORD, fails, json, ok, slugs};
use crate::util::{self, Server};

async fn db(url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(url).await.expect("connect to the store")
}

/// Every ciphertext and wrapped DEK stored under the secrets of `env_sql`
/// (an `environments` filter with `$1` = org slug), with the version ids.
async fn blobs(url: &str, org: &str, env_filter: &'static str) -> (Vec<String>, Vec<Vec<u8>>) {
    let mut conn = db(url).await;
    let sql = format!(
        "SELECT v.id, v.ciphertext, v.wrapped_dek FROM secret_versions v \
         JOIN secrets s ON s.id = v.secret_id JOIN environments e ON e.id = s.env_id \
         JOIN orgs o ON o.id = e.org_id WHERE o.slug = $1 {env_filter}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org.to_owned())
        .fetch_all(&mut conn)
        .await
        .expect("versions");
    let mut ids = Vec::new();
    let mut out = Vec::new();
    for r in rows {
        ids.push(r.try_get::<String, _>("id").unwrap());
        out.push(r.try_get::<Vec<u8>, _>("ciphertext").unwrap());
        out.push(r.try_get::<Vec<u8>, _>("wrapped_dek").unwrap());
    }
    conn.close().await.ok();
    (ids, out)
}

/// The organization's id and its wrapped KEK versions.
async fn keks(url: &str, org: &str) -> (String, Vec<Vec<u8>>) {
    let mut conn = db(url).await;
    let id: String = sqlx::query("SELECT id FROM orgs WHERE slug = $1")
        .bind(org.to_owned())
        .fetch_one(&mut conn)
        .await
        .expect("org")
        .try_get("id")
        .unwrap();
    let rows = sqlx::query("SELECT wrapped_key FROM kms_keys WHERE org_id = $1")
        .bind(id.clone())
        .fetch_all(&mut conn)
        .await
        .expect("keks");
    let wrapped = rows
        .iter()
        .map(|r| r.try_get::<Vec<u8>, _>("wrapped_key").unwrap())
        .collect();
    conn.close().await.ok();
    (id, wrapped)
}

/// Scan the store for `needles` and the `ids` of versions: on SQLite every
/// byte of the database file and its write-ahead log, on PostgreSQL the
/// rows of every table that holds blobs. Returns what was found.
async fn scan(dir: &std::path::Path, url: &str, needles: &[Vec<u8>], ids: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let mut conn = db(url).await;
    for id in ids {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM secret_versions WHERE id = $1")
            .bind(id.clone())
            .fetch_one(&mut conn)
            .await
            .expect("count")
            .try_get("n")
            .unwrap();
        if n != 0 {
            found.push(format!("secret_versions row {id}"));
        }
    }
    if util::storage_kind() == "sqlite" {
        conn.close().await.ok();
        let mut bytes = Vec::new();
        for f in ["coffer.db", "coffer.db-wal"] {
            if let Ok(b) = std::fs::read(dir.join(f)) {
                bytes.extend_from_slice(&b);
            }
        }
        for (i, n) in needles.iter().enumerate() {
            if bytes.windows(n.len()).any(|w| w == n.as_slice()) {
                found.push(format!("blob {i} ({} bytes) in the SQLite files", n.len()));
            }
        }
    } else {
        for (table, col) in [
            ("secret_versions", "ciphertext"),
            ("secret_versions", "wrapped_dek"),
            ("kms_keys", "wrapped_key"),
        ] {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {col} AS b FROM {table}")))
                .fetch_all(&mut conn)
                .await
                .expect("scan");
            for r in rows {
                let b: Vec<u8> = r.try_get("b").unwrap();
                if needles.contains(&b) {
                    found.push(format!("a blob in {table}.{col}"));
                }
            }
        }
        conn.close().await.ok();
    }
    found
}

/// Allowed audit records of `action`.
async fn allowed(http: &util::Http, action: &str) -> usize {
    let (st, found) = http.get(&format!("/api/v1/audit/records?action={action}")).await;
    assert_eq!(st, 200, "{found}");
    found["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "allowed")
        .count()
}

#[tokio::test]
async fn delete_restore_and_purge_environments_and_organizations() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start(dir.path(), &url);
    let anon_http = server.client(None);
    let (http, _) = util::boot(&anon_http).await;
    let root_token = http.token().to_owned();
    util::org_tree(&http, "acme", &[("api", &["staging", "production"])]).await;
    util::org_tree(&http, "other", &[("web", &["dev"])]).await;
    util::create_user(&http, ALICE, PASSWORD).await;
    util::add_member(&http, "acme", ALICE, "member").await;
    util::grant(
        &http,
        "acme",
        serde_json::json!({"user": ALICE, "project": "api", "environment": "staging",
               "permissions": ["read", "reveal", "create", "update", "delete"]}),
    )
    .await;

    let root_home = dir.path().join("root");
    let root = As::Token(&root_home, &root_token);
    let alice_home = dir.path().join("alice");
    let alice = As::Login(&alice_home);
    ok(&server, &alice, &["login", "--email", ALICE], &format!("{PASSWORD}\n"));
    ok(&server, &alice, &["secrets", "set", "DB_URL"], "postgres://db/v1\n");
    ok(&server, &alice, &["secrets", "set", "DB_URL"], "postgres://db/v2\n");
    let prod = ["--env", "production"];
    ok(
        &server,
        &root,
        &[&["secrets", "set", "API_KEY"][..], &prod].concat(),
        "prod-key-1\n",
    );
    ok(
        &server,
        &root,
        &[
            "secrets",
            "set",
            "TOKEN",
            "--org",
            "other",
            "--project",
            "web",
            "--env",
            "dev",
        ],
        "other-1\n",
    );

    // A member may not delete; a wrong slug at the prompt cancels.
    let err = fails(&server, &alice, &["env", "delete", "staging", "--yes"], "");
    assert!(err.contains("403"), "{err}");
    let err = fails(&server, &root, &["env", "delete", "staging"], "production\n");
    assert!(err.contains("cancelled"), "{err}");
    assert_eq!(
        ok(&server, &alice, &["secrets", "get", "DB_URL"], ""),
        "postgres://db/v2\n"
    );

    // Delete by typing the slug: hidden and unreadable at once.
    let out = ok(&server, &root, &["env", "delete", "staging"], "staging\n");
    assert!(out.contains("Deleted environment acme/api/staging"), "{out}");
    assert_eq!(
        slugs(&json(&ok(&server, &root, &["env", "list", "--json"], ""))),
        ["production"]
    );
    for who in [&root, &alice] {
        let err = fails(&server, who, &["secrets", "get", "DB_URL"], "");
        assert!(err.contains("404"), "{err}");
    }
    let err = fails(&server, &root, &["env", "show", "staging"], "");
    assert!(err.contains("404"), "{err}");
    let (st, body) = http
        .post(
            &format!("{}/inject", util::env_path("acme", "api", "staging")),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(st, 404, "{body}");
    let deleted = json(&ok(&server, &root, &["env", "list", "--deleted", "--json"], ""));
    assert_eq!(deleted[0]["path"], "acme/api/staging", "{deleted}");
    assert!(deleted[0]["purge_after"].is_string(), "{deleted}");
    // The slug stays taken until the purge.
    let err = fails(&server, &root, &["env", "create", "staging"], "");
    assert!(err.contains("409"), "{err}");
    // Inside the window a purge needs --now.
    let err = fails(&server, &root, &["env", "purge", "staging", "--yes"], "");
    assert!(err.contains("409") && err.contains("--now"), "{err}");

    // A live environment is not restorable nor purgeable.
    for cmd in [
        &["env", "restore", "production"][..],
        &["env", "purge", "production", "--now", "--yes"],
    ] {
        let err = fails(&server, &root, cmd, "");
        assert!(err.contains("409") && err.contains("is not deleted"), "{err}");
    }
    // Restore: the value, its history and Alice's grant are back.
    let out = ok(&server, &root, &["env", "restore", "staging"], "");
    assert!(out.contains("Restored environment acme/api/staging"), "{out}");
    assert_eq!(
        ok(&server, &alice, &["secrets", "get", "DB_URL"], ""),
        "postgres://db/v2\n"
    );
    let hist = json(&ok(
        &server,
        &alice,
        &["secrets", "history", "DB_URL", "-o", "json"],
        "",
    ));
    assert_eq!(hist.as_array().map(Vec::len), Some(2), "{hist}");

    // Delete again and purge: only an owner (root here), and then nothing
    // of the versions is left in the store.
    let (ids, staging_blobs) = blobs(&url, "acme", "AND e.slug = 'staging'").await;
    assert_eq!(ids.len(), 2);
    let before = scan(dir.path(), &url, &staging_blobs, &[]).await;
    assert!(!before.is_empty(), "the scan must see the versions before the purge");
    ok(&server, &root, &["env", "delete", "staging", "--yes"], "");
    let err = fails(&server, &alice, &["env", "purge", "staging", "--now", "--yes"], "");
    assert!(err.contains("403"), "{err}");
    let out = ok(&server, &root, &["env", "purge", "staging", "--now"], "staging\n");
    assert!(out.contains("2 secret versions"), "{out}");
    let found = scan(dir.path(), &url, &staging_blobs, &ids).await;
    assert!(found.is_empty(), "purged versions still in the store: {found:?}");
    assert_eq!(
        json(&ok(&server, &root, &["env", "list", "--deleted", "--json"], "")),
        serde_json::json!([])
    );
    let err = fails(&server, &root, &["env", "restore", "staging"], "");
    assert!(err.contains("404"), "{err}");
    // The slug is free again; the new environment is empty.
    ok(&server, &root, &["env", "create", "staging"], "");
    let list = json(&ok(&server, &root, &["secrets", "list", "-o", "json"], ""));
    assert_eq!(list, serde_json::json!([]), "{list}");

    // The organization: a member may not delete it; delete, restore, delete, purge.
    let err = fails(&server, &alice, &["org", "delete", "acme", "--yes"], "");
    assert!(err.contains("403"), "{err}");
    ok(&server, &root, &["org", "delete", "acme", "--yes"], "");
    assert_eq!(
        slugs(&json(&ok(&server, &root, &["org", "list", "--json"], ""))),
        ["other"]
    );
    assert_eq!(
        json(&ok(&server, &alice, &["org", "list", "--json"], "")),
        serde_json::json!([])
    );
    let err = fails(
        &server,
        &root,
        &[&["secrets", "get", "API_KEY"][..], &prod].concat(),
        "",
    );
    assert!(err.contains("404"), "{err}");
    let deleted = json(&ok(&server, &root, &["org", "list", "--deleted", "--json"], ""));
    assert_eq!(deleted[0]["path"], "acme", "{deleted}");
    ok(&server, &root, &["org", "restore", "acme"], "");
    assert_eq!(
        ok(
            &server,
            &root,
            &[&["secrets", "get", "API_KEY"][..], &prod].concat(),
            ""
        ),
        "prod-key-1\n"
    );
    let (ids, mut acme_blobs) = blobs(&url, "acme", "").await;
    let (acme_id, wrapped_keks) = keks(&url, "acme").await;
    assert!(!ids.is_empty() && !wrapped_keks.is_empty());
    acme_blobs.extend(wrapped_keks);
    ok(&server, &root, &["org", "delete", "acme", "--yes"], "");
    let out = ok(&server, &root, &["org", "purge", "acme", "--now", "--yes"], "");
    assert!(out.contains("KEK versions destroyed"), "{out}");
    let found = scan(dir.path(), &url, &acme_blobs, &ids).await;
    assert!(found.is_empty(), "purged organization still in the store: {found:?}");
    let mut conn = db(&url).await;
    for table in [
        "kms_keys",
        "secrets",
        "environments",
        "projects",
        "memberships",
        "grants",
    ] {
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM {table} WHERE org_id = $1"
        )))
        .bind(acme_id.clone())
        .fetch_one(&mut conn)
        .await
        .expect("count")
        .try_get("n")
        .unwrap();
        assert_eq!(n, 0, "{table} rows of the purged organization");
    }
    conn.close().await.ok();
    // The other organization is untouched; acme's slug is free.
    assert_eq!(
        ok(
            &server,
            &root,
            &[
                "secrets",
                "get",
                "TOKEN",
                "--org",
                "other",
                "--project",
                "web",
                "--env",
                "dev"
            ],
            ""
        ),
        "other-1\n"
    );
    ok(&server, &root, &["org", "create", "acme"], "");

    // Every step audited.
    for (action, n) in [
        ("env.delete", 2),
        ("env.restore", 1),
        ("env.purge", 1),
        ("org.delete", 2),
        ("org.restore", 1),
        ("org.purge", 1),
    ] {
        assert_eq!(allowed(&http, action).await, n, "{action}");
    }
}

/// A project goes with its environments; the purge job erases what the
/// deletion window let go, under audit records of the `system` actor.
#[tokio::test]
async fn the_purge_job_erases_what_the_window_let_go() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start_full(
        dir.path(),
        &url,
        "tls_disable = true",
        "[orgs]\ndeletion_window_s = 1\n[jobs]\ninterval_ms = 200\n",
        &[],
    );
    let anon_http = server.client(None);
    let (http, _) = util::boot(&anon_http).await;
    let root_token = http.token().to_owned();
    util::org_tree(&http, "acme", &[("api", &["staging"]), ("web", &["dev"])]).await;
    util::write_secret(&http, &util::env_path("acme", "api", "staging"), "A", "a-1").await;
    util::write_secret(&http, &util::env_path("acme", "web", "dev"), "B", "b-1").await;
    let (ids, api_blobs) = blobs(&url, "acme", "AND e.slug = 'staging'").await;
    assert_eq!(ids.len(), 1);

    let root_home = dir.path().join("root");
    let root = As::Token(&root_home, &root_token);
    ok(&server, &root, &["project", "delete", "api", "--yes"], "");
    let err = fails(&server, &root, &["env", "list", "--project", "api"], "");
    assert!(err.contains("404"), "{err}");
    // Within a few job periods after the window, the project is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left = json(&ok(&server, &root, &["project", "list", "--deleted", "--json"], ""));
        if left == serde_json::json!([]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not purged: {left}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let found = scan(dir.path(), &url, &api_blobs, &ids).await;
    assert!(found.is_empty(), "{found:?}");
    // The other project is untouched.
    let (st, b) = http
        .get(&format!(
            "{}/secrets/B?reveal=true",
            util::env_path("acme", "web", "dev")
        ))
        .await;
    assert_eq!((st.as_u16(), b["data"]["value"].as_str()), (200, Some("b-1")), "{b}");
    // The job's purge is audited: a write-ahead record and its outcome.
    let mut conn = db(&url).await;
    let rows = sqlx::query(
        "SELECT actor_kind, outcome, org, resource FROM audit_log WHERE action = 'project.purge' ORDER BY seq",
    )
    .fetch_all(&mut conn)
    .await
    .expect("audit");
    let got: Vec<[String; 4]> = rows
        .iter()
        .map(|r| ["actor_kind", "outcome", "org", "resource"].map(|c| r.try_get::<String, _>(c).unwrap()))
        .collect();
    let want = |outcome: &str| ["system", outcome, "acme", "/api/v1/orgs/acme/projects/api"].map(str::to_owned);
    assert_eq!(got, [want("begun"), want("allowed")]);
}
