//! Several servers over one PostgreSQL schema: writes, revocations and
//! grant removals made on one are enforced by the other within a second
//! (LISTEN/NOTIFY), and the background job runs exactly once per period
//! across both, moving to the survivor when its holder dies. On SQLite
//! (one process per file) the same test checks the local path: no
//! listener, the job runs on the only server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{self, ENV, Http, Server};

const JOBS: &str = "[jobs]\ninterval_ms = 250\n";
const PERIOD_MS: u64 = 250;

/// `(period, count)` of every "job purge_expired ran in period N" line.
fn job_periods(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split("job purge_expired ran in period ").nth(1))
        .filter_map(|rest| rest.split(':').next()?.trim().parse().ok())
        .collect()
}

/// Insert a token row that expired long ago, directly into the store.
async fn insert_expired_token(url: &str, accessor: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::query(
        "INSERT INTO tokens (accessor, token_hash, policy, display_name, created_at, expires_at) \
         VALUES ($1, $2, 'root', 'expired', 1, 2)",
    )
    .bind(accessor.to_owned())
    .bind(accessor.as_bytes().to_vec())
    .execute(&mut conn)
    .await
    .unwrap();
}

async fn token_exists(url: &str, accessor: &str) -> bool {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM tokens WHERE accessor = $1")
        .bind(accessor.to_owned())
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get("n");
    n > 0
}

/// End the listener sessions of this store's servers from the outside.
async fn terminate_listeners(url: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let schema = url.rsplit("search_path%3D").next().unwrap();
    let channel = coffer::storage::cluster::channel_of_schema(schema);
    sqlx::query(
        "SELECT COUNT(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND query LIKE $1",
    )
    .bind(format!("LISTEN \"{channel}\"%"))
    .execute(&mut conn)
    .await
    .unwrap();
}

/// Poll `probe` until it returns `want`; the time it took, or None after 3 s.
async fn time_until(http: &Http, path: &str, want: u16) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if http.get(path).await.0.as_u16() == want {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn two_servers_share_one_postgresql_and_see_each_others_changes() {
    let dir_a = util::tempdir();
    let url = util::fresh_storage_url(dir_a.path()).await;
    let a = Server::start_full(dir_a.path(), &url, "tls_disable = true", JOBS, &[]);
    let anon_a = a.client(None);
    let (shares, _, root_token) = util::init(&anon_a, 3, 2).await;
    util::unseal(&anon_a, &[&shares[0], &shares[1]]).await;
    let root_a = anon_a.with_token(&root_token);
    util::tenant(&root_a).await;
    insert_expired_token(&url, "expired-accessor").await;

    if util::storage_kind() == "sqlite" {
        // One process per SQLite file: no listener, jobs run locally.
        tokio::time::sleep(Duration::from_millis(4 * PERIOD_MS)).await;
        let log = a.log_text();
        assert!(log.contains("single-process storage: no cluster listener"), "{log}");
        assert!(!log.contains("cluster listener connected"), "{log}");
        let runs = job_periods(&log);
        assert!(runs.len() >= 2, "the job runs on the only server: {log}");
        assert!(!token_exists(&url, "expired-accessor").await, "expired token purged");
        return;
    }

    let dir_b = util::tempdir();
    let b = Server::start_full(dir_b.path(), &url, "tls_disable = true", JOBS, &[]);
    let anon_b = b.client(None);
    let status = util::unseal(&anon_b, &[&shares[1], &shares[2]]).await;
    assert_eq!(status["sealed"], false, "each server unseals on its own: {status}");
    let root_b = anon_b.with_token(&root_token);

    // A write on A is read on B, and an update on A replaces B's cached
    // inject rows.
    util::write_secret(&root_a, ENV, "DB_URL", "one").await;
    let (st, v) = root_b.get(&format!("{ENV}/secrets/DB_URL?reveal=true")).await;
    assert_eq!((st.as_u16(), v["data"]["value"].clone()), (200, json!("one")), "{v}");
    let (st, inj) = root_b.post(&format!("{ENV}/inject"), json!({})).await;
    assert_eq!(st, 200, "{inj}");
    util::write_secret(&root_a, ENV, "DB_URL", "two").await;
    let (_, inj) = root_b.post(&format!("{ENV}/inject"), json!({})).await;
    assert!(inj.to_string().contains("two"), "B injects the new value: {inj}");

    // KEK rotated on A: B's next write (well inside its env cache's
    // second) is already under the new version.
    util::write_secret(&root_b, ENV, "BEFORE_ROTATION", "x").await;
    let (st, _) = root_a.post("/api/v1/orgs/acme/keks/rotate", json!({})).await;
    assert_eq!(st, 200);
    tokio::time::sleep(Duration::from_millis(150)).await;
    util::write_secret(&root_b, ENV, "AFTER_ROTATION", "y").await;
    let (_, keks) = root_a.get("/api/v1/orgs/acme/keks").await;
    let v2 = keks["data"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["version"] == 2))
        .unwrap_or_else(|| panic!("{keks}"));
    assert_eq!(v2["references"], 1, "B wrote under the new KEK: {keks}");

    // A service account with a grant, its token used (and cached) on B.
    util::service_account(&root_a, "acme", "deployer", json!({})).await;
    let g = util::grant(
        &root_a,
        "acme",
        json!({"service_account": "deployer", "project": "api", "environment": "production",
               "permissions": ["read", "reveal"]}),
    )
    .await;
    let t1 = util::sa_token(&root_a, "acme", "deployer", json!({})).await;
    let t2 = util::sa_token(&root_a, "acme", "deployer", json!({})).await;
    let sa1 = b.client(t1["token"].as_str());
    let sa2 = b.client(t2["token"].as_str());
    let path = format!("{ENV}/secrets/DB_URL?reveal=true");
    assert_eq!(sa1.get(&path).await.0, 200);
    assert_eq!(sa2.get(&path).await.0, 200);

    // Token revoked on A: refused by B within a second.
    let accessor = t1["accessor"].as_str().unwrap();
    util::ok_data(
        "revoke on A",
        root_a.delete(&format!("/api/v1/tokens/{accessor}")).await,
    );
    let took = time_until(&sa1, &path, 401).await;
    assert!(
        took.is_some_and(|t| t <= Duration::from_secs(1)),
        "revocation seen by B after {took:?}"
    );
    eprintln!("revocation enforced by B after {took:?}");
    assert_eq!(sa2.get(&path).await.0, 200, "the other token still works");

    // Grant removed on A: enforced by B within a second.
    let gid = g["id"].as_str().unwrap();
    util::ok_data(
        "remove grant on A",
        root_a.delete(&format!("/api/v1/orgs/acme/grants/{gid}")).await,
    );
    let took = time_until(&sa2, &path, 403).await;
    assert!(
        took.is_some_and(|t| t <= Duration::from_secs(1)),
        "grant removal seen by B after {took:?}"
    );
    eprintln!("grant removal enforced by B after {took:?}");

    // The listeners lose their connections (terminated server-side): B
    // drops all caches, its listener reconnects, and a revocation after
    // the gap is still enforced within a second.
    util::grant(
        &root_a,
        "acme",
        json!({"service_account": "deployer", "project": "api", "environment": "production",
               "permissions": ["read", "reveal"]}),
    )
    .await;
    let t3 = util::sa_token(&root_a, "acme", "deployer", json!({})).await;
    let sa3 = b.client(t3["token"].as_str());
    assert_eq!(sa3.get(&path).await.0, 200);
    terminate_listeners(&url).await;
    let start = Instant::now();
    while !b.log_text().contains("cluster listener connection lost") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "B did not notice: {}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sa3.get(&path).await.0, 200, "B serves again after the gap");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accessor = t3["accessor"].as_str().unwrap();
    util::ok_data(
        "revoke on A after the gap",
        root_a.delete(&format!("/api/v1/tokens/{accessor}")).await,
    );
    let took = time_until(&sa3, &path, 401).await;
    assert!(
        took.is_some_and(|t| t <= Duration::from_secs(1)),
        "revocation after a gap seen after {took:?}"
    );
    eprintln!("revocation after a listener gap enforced by B after {took:?}");

    // The job: exactly one run per period across both servers.
    tokio::time::sleep(Duration::from_millis(8 * PERIOD_MS)).await;
    let (log_a, log_b) = (a.log_text(), b.log_text());
    assert!(log_a.contains("cluster listener connected") && log_b.contains("cluster listener connected"));
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for p in job_periods(&log_a).into_iter().chain(job_periods(&log_b)) {
        *seen.entry(p).or_default() += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "periods run twice: {doubled:?}");
    assert!(seen.len() >= 6, "the job runs every period: {seen:?}");
    assert!(!token_exists(&url, "expired-accessor").await, "expired token purged");
    let (runs_a, runs_b) = (job_periods(&log_a).len(), job_periods(&log_b).len());
    assert!(
        runs_a == 0 || runs_b == 0,
        "one server holds the job: A {runs_a}, B {runs_b}"
    );

    // The holder dies: the other server takes the job over.
    let (mut holder, survivor) = if runs_a > 0 { (a, b) } else { (b, a) };
    holder.kill9();
    let before = job_periods(&survivor.log_text()).len();
    tokio::time::sleep(Duration::from_millis(8 * PERIOD_MS)).await;
    let after = job_periods(&survivor.log_text()).len();
    assert!(after > before, "the survivor took the job over");
}

#[tokio::test]
async fn a_seal_on_one_server_seals_every_server() {
    let dir_a = util::tempdir();
    let url = util::fresh_storage_url(dir_a.path()).await;
    let a = Server::start(dir_a.path(), &url);
    let anon_a = a.client(None);
    let (shares, _, root_token) = util::init(&anon_a, 3, 2).await;
    util::unseal(&anon_a, &[&shares[0], &shares[1]]).await;
    if util::storage_kind() == "sqlite" {
        // Single process: sealing it is the whole cluster.
        let (st, _) = anon_a.with_token(&root_token).put("/v1/sys/seal", json!({})).await;
        assert_eq!(st, 204);
        let (_, s) = anon_a.get("/v1/sys/seal-status").await;
        assert_eq!(s["sealed"], true);
        return;
    }
    let dir_b = util::tempdir();
    let b = Server::start(dir_b.path(), &url);
    let anon_b = b.client(None);
    util::unseal(&anon_b, &[&shares[0], &shares[2]]).await;
    let (st, _) = anon_a.with_token(&root_token).put("/v1/sys/seal", json!({})).await;
    assert_eq!(st, 204);
    let start = Instant::now();
    loop {
        let (_, s) = anon_b.get("/v1/sys/seal-status").await;
        if s["sealed"] == true {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "B still unsealed: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // B unseals again with the same shares, on its own.
    let s = util::unseal(&anon_b, &[&shares[1], &shares[2]]).await;
    assert_eq!(s["sealed"], false, "{s}");
    let (_, s) = anon_a.get("/v1/sys/seal-status").await;
    assert_eq!(s["sealed"], true, "A stays sealed: {s}");
}

/// A root rotation on one server seals the others (their root is stale);
/// they unseal again with the same shares and read data re-wrapped under
/// the new root. On SQLite the single server simply keeps serving.
#[tokio::test]
async fn a_root_rotation_on_one_server_reseals_the_others() {
    let dir_a = util::tempdir();
    let url = util::fresh_storage_url(dir_a.path()).await;
    let a = Server::start(dir_a.path(), &url);
    let anon_a = a.client(None);
    let (shares, _, root_token) = util::init(&anon_a, 3, 2).await;
    util::unseal(&anon_a, &[&shares[0], &shares[1]]).await;
    let root_a = anon_a.with_token(&root_token);
    util::tenant(&root_a).await;
    util::write_secret(&root_a, ENV, "BEFORE", "v1").await;
    let peer = if util::storage_kind() == "postgres" {
        let dir_b = util::tempdir();
        let b = Server::start(dir_b.path(), &url);
        util::unseal(&b.client(None), &[&shares[1], &shares[2]]).await;
        Some((dir_b, b))
    } else {
        None
    };
    for key in &shares[..2] {
        let (st, body) = root_a.put("/v1/sys/rotate-root", json!({"key": key})).await;
        assert_eq!(st, 200, "rotate-root share: {body}");
    }
    // The rotating server keeps serving with the new root.
    let (st, v) = root_a.get(&format!("{ENV}/secrets/BEFORE?reveal=true")).await;
    assert_eq!((st.as_u16(), v["data"]["value"].clone()), (200, json!("v1")), "{v}");
    let Some((_dir_b, b)) = peer else {
        return;
    };
    let anon_b = b.client(None);
    let start = Instant::now();
    loop {
        let (_, s) = anon_b.get("/v1/sys/seal-status").await;
        if s["sealed"] == true {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "B still unsealed: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = util::unseal(&anon_b, &[&shares[0], &shares[2]]).await;
    assert_eq!(s["sealed"], false, "same shares after the rotation: {s}");
    util::write_secret(&root_a, ENV, "AFTER", "v2").await;
    let root_b = anon_b.with_token(&root_token);
    for (k, want) in [("BEFORE", "v1"), ("AFTER", "v2")] {
        let (st, v) = root_b.get(&format!("{ENV}/secrets/{k}?reveal=true")).await;
        assert_eq!(
            (st.as_u16(), v["data"]["value"].clone()),
            (200, json!(want)),
            "{k}: {v}"
        );
    }
}

/// `pg_notify` `payload` on the store's channel, as any role that can
/// connect could.
async fn notify_raw(url: &str, payload: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let schema = url.rsplit("search_path%3D").next().unwrap();
    let channel = coffer::storage::cluster::channel_of_schema(schema);
    sqlx::query("SELECT COUNT(*) AS n FROM (SELECT pg_notify($1, $2)) AS sent")
        .bind(channel)
        .bind(payload.to_owned())
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Whether `http`'s server reports itself sealed.
async fn sealed(http: &Http) -> bool {
    http.get("/v1/sys/seal-status").await.1["sealed"] == true
}

/// Anyone who can connect to the database can NOTIFY the events channel:
/// a forged seal message (the old unsigned format, or the signed format
/// with a wrong tag) and a replayed genuine one are refused, counted and
/// logged; a genuine seal still seals the other server.
#[tokio::test]
async fn forged_and_replayed_cluster_messages_do_not_seal_a_server() {
    if util::storage_kind() != "postgres" {
        // SQLite: one process per file, no channel to forge on.
        return;
    }
    let dir_a = util::tempdir();
    let url = util::fresh_storage_url(dir_a.path()).await;
    let a = Server::start(dir_a.path(), &url);
    let anon_a = a.client(None);
    let (shares, _, root_token) = util::init(&anon_a, 3, 2).await;
    util::unseal(&anon_a, &[&shares[0], &shares[1]]).await;
    let dir_b = util::tempdir();
    let b = Server::start(dir_b.path(), &url);
    let anon_b = b.client(None);
    util::unseal(&anon_b, &[&shares[0], &shares[2]]).await;

    // Record what goes over the channel.
    let schema = url.rsplit("search_path%3D").next().unwrap();
    let channel = coffer::storage::cluster::channel_of_schema(schema);
    let mut spy = sqlx::postgres::PgListener::connect(&url).await.unwrap();
    spy.listen(&channel).await.unwrap();

    let now = util::unix_now() * 1000;
    let node = "f".repeat(32);
    for forged in [
        format!("{node}|seal"),
        "seal".to_owned(),
        format!("v1|{node}|1|{now}|seal|{}", "00".repeat(32)),
        format!("v1|{node}|2|{now}|root|{}", "ab".repeat(32)),
    ] {
        notify_raw(&url, &forged).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!sealed(&anon_b).await, "a forged message sealed B");
    assert!(!sealed(&anon_a).await, "a forged message sealed A");
    let log = b.log_text();
    assert!(log.contains("cluster notification rejected"), "rejections are logged");
    assert!(!log.contains(&"00".repeat(32)), "the tag is not logged");

    // A genuine seal on A still seals B.
    let (st, _) = anon_a.with_token(&root_token).put("/v1/sys/seal", json!({})).await;
    assert_eq!(st, 204);
    let start = Instant::now();
    while !sealed(&anon_b).await {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the genuine seal did not reach B"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let genuine = loop {
        let n = tokio::time::timeout(Duration::from_secs(2), spy.recv())
            .await
            .expect("the seal went over the channel")
            .unwrap();
        if n.payload().contains("|seal|") && n.payload().starts_with("v1|") && !n.payload().contains(&node) {
            break n.payload().to_owned();
        }
    };

    // B unseals again; the captured genuine message, replayed, does nothing.
    util::unseal(&anon_b, &[&shares[1], &shares[2]]).await;
    assert!(!sealed(&anon_b).await);
    notify_raw(&url, &genuine).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!sealed(&anon_b).await, "a replayed seal message sealed B");
    let log = b.log_text();
    assert!(log.contains("replayed"), "the replay is logged: {log}");
    assert!(log.contains("bad_mac") && log.contains("malformed"), "{log}");
}
