//! Abuse limits on organizations: a user may create only
//! `[orgs] max_per_user` organizations (root is exempt), and on PostgreSQL
//! the connections a server opens stay bounded however many organizations
//! exist and are used (one tenant pool, not one pool per organization).

use serde_json::json;

use crate::util::{self, Server};

/// Most connections one server may hold: shared pool (16) + tenant pool
/// (16) + the LISTEN session + job-lock sessions (one held, one trying).
const SERVER_CONNECTIONS_MAX: i64 = 16 + 16 + 1 + 2;

#[tokio::test]
async fn a_user_may_create_only_max_per_user_organizations() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start_full(
        dir.path(),
        &url,
        "tls_disable = true",
        "[orgs]\nmax_per_user = 2\n",
        &[],
    );
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::create_user(&root, "ann@example.com", "correct horse battery").await;
    util::create_user(&root, "bob@example.com", "correct horse battery").await;
    let ann = util::user_client(&anon, "ann@example.com", "correct horse battery").await;
    for slug in ["ann-1", "ann-2"] {
        util::ok_data(
            slug,
            ann.post("/api/v1/orgs", json!({"slug": slug, "name": slug})).await,
        );
    }
    let third = ann
        .post("/api/v1/orgs", json!({"slug": "ann-3", "name": "ann-3"}))
        .await;
    let message = third.1["message"].as_str().unwrap_or_default().to_owned();
    util::expect_error("third org", third, 403, "limit_exceeded");
    assert!(
        message.contains("max_per_user") && message.contains("at most 2"),
        "the answer names the limit: {message}"
    );
    let (st, _) = ann.get("/api/v1/orgs/ann-3").await;
    assert_eq!(st, 404, "nothing was created");
    // The refused attempt did not use up anything: still exactly two.
    let (_, list) = ann.get("/api/v1/orgs").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2), "{list}");

    // Parallel attempts cannot overshoot the limit.
    let bob = util::user_client(&anon, "bob@example.com", "correct horse battery").await;
    let tries: Vec<_> = (0..6)
        .map(|i| {
            let bob = bob.clone();
            tokio::spawn(async move {
                let slug = format!("bob-{i}");
                bob.post("/api/v1/orgs", json!({"slug": slug, "name": slug}))
                    .await
                    .0
                    .as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tries {
        codes.push(t.await.unwrap());
    }
    codes.sort_unstable();
    assert_eq!(codes, [200, 200, 403, 403, 403, 403], "exactly max_per_user succeed");

    // Root is exempt.
    for i in 0..3 {
        let slug = format!("root-{i}");
        util::ok_data(
            &slug,
            root.post("/api/v1/orgs", json!({"slug": slug, "name": slug})).await,
        );
    }
}

/// Connections the PostgreSQL server has open for `app`.
async fn connections_of(admin: &mut sqlx::AnyConnection, app: &str) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE application_name = $1")
        .bind(app.to_owned())
        .fetch_one(admin)
        .await
        .unwrap()
        .get("n")
}

/// 120 organizations, each created and used (project, environment, a
/// secret written and read, then all read in parallel): every request
/// succeeds and the server never holds more than its bound of PostgreSQL
/// connections (it used to open a pool per organization and keep it:
/// about 80 organizations exhausted PostgreSQL's default 100).
#[tokio::test]
async fn many_organizations_keep_postgresql_connections_bounded() {
    if util::storage_kind() != "postgres" {
        // SQLite: one file, one pool; there are no per-organization pools.
        return;
    }
    use sqlx::Connection;
    let dir = util::tempdir();
    let base = util::fresh_storage_url(dir.path()).await;
    let app = format!("coffer_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{base}&application_name={app}");
    let server = Server::start(dir.path(), &url);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    let mut admin = sqlx::AnyConnection::connect(&base).await.unwrap();
    assert!(
        connections_of(&mut admin, &app).await > 0,
        "application_name identifies the server's sessions"
    );
    const ORGS: usize = 120;
    for i in 0..ORGS {
        let org = format!("o{i}");
        util::org_tree(&root, &org, &[("p", &["e"])]).await;
        let env = util::env_path(&org, "p", "e");
        util::write_secret(&root, &env, "K", &format!("value-{i}")).await;
        let v = util::ok_data(&org, root.get(&format!("{env}/secrets/K?reveal=true")).await);
        assert_eq!(v["value"], format!("value-{i}"));
        // Checked as it goes, so a regression fails long before it could
        // exhaust the shared PostgreSQL server.
        let n = connections_of(&mut admin, &app).await;
        assert!(
            n <= SERVER_CONNECTIONS_MAX,
            "after {} organizations: {n} connections",
            i + 1
        );
    }
    let reads: Vec<_> = (0..ORGS)
        .map(|i| {
            let root = root.clone();
            tokio::spawn(async move {
                let env = util::env_path(&format!("o{i}"), "p", "e");
                root.post(&format!("{env}/inject"), json!({})).await.0.as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for r in reads {
        codes.push(r.await.unwrap());
    }
    assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
    let n = connections_of(&mut admin, &app).await;
    assert!(
        n <= SERVER_CONNECTIONS_MAX,
        "after parallel use of all: {n} connections"
    );
}
