//! Database credentials (issue 21) against the real PostgreSQL at
//! 127.0.0.1:5432, on both coffer backends: dynamic leases (login, renew up
//! to the max, expiry drops the role and its sessions, revoke, revoke by
//! prefix, a killed server's leases still expire), the Vault wire, `coffer
//! run --db-role`, static rotation (held connections survive, a failed
//! verification restores the old password) and one scheduled rotation per
//! period across two servers.
//!
//! The test cluster's `pg_hba.conf` trusts 127.0.0.1 (any password logs
//! in), so "login refused" is asserted by the role's absence (PostgreSQL
//! refuses a login of a role that does not exist, trust or not), and a
//! failed verification is provoked with `NOLOGIN`; the restored password
//! is checked against the SCRAM verifier in `pg_authid`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::util::{self, ENV, Http, Server};

const JOBS: &str = "[jobs]\ninterval_ms = 250\n";
const TARGET_HOST: &str = "127.0.0.1:5432";
const TARGET_DB: &str = "postgres";

fn admin_url() -> String {
    format!("postgres://postgres@{TARGET_HOST}/{TARGET_DB}")
}

async fn admin() -> PgConnection {
    PgConnection::connect(&admin_url())
        .await
        .expect("connect to the target PostgreSQL")
}

async fn login(user: &str, password: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect(&format!("postgres://{user}:{password}@{TARGET_HOST}/{TARGET_DB}")).await
}

async fn role_exists(name: &str) -> bool {
    sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(name)
        .fetch_optional(&mut admin().await)
        .await
        .expect("pg_roles")
        .is_some()
}

async fn verifier(name: &str) -> String {
    let row: (Option<String>,) = sqlx::query_as("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(name)
        .fetch_one(&mut admin().await)
        .await
        .expect("pg_authid");
    row.0.unwrap_or_default()
}

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("hmac key");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Whether `password` matches a `SCRAM-SHA-256$<iter>:<salt>$<stored>:<server>` verifier.
fn scram_matches(verifier: &str, password: &str) -> bool {
    use sha2::Digest;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(rest) = verifier.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let Some((head, keys)) = rest.split_once('$') else {
        return false;
    };
    let (Some((iter, salt)), Some((stored, _))) = (head.split_once(':'), keys.split_once(':')) else {
        return false;
    };
    let (Ok(iter), Ok(salt)) = (iter.parse::<u32>(), b64.decode(salt)) else {
        return false;
    };
    // PBKDF2-HMAC-SHA-256, one block
    let mut u = hmac256(password.as_bytes(), &[salt.as_slice(), &1u32.to_be_bytes()].concat());
    let mut salted = u.clone();
    for _ in 1..iter {
        u = hmac256(password.as_bytes(), &u);
        for (s, x) in salted.iter_mut().zip(&u) {
            *s ^= x;
        }
    }
    let client_key = hmac256(&salted, b"Client Key");
    b64.encode(sha2::Sha256::digest(&client_key)) == stored
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

struct Fixture {
    server: Server,
    root: Http,
    shares: Vec<String>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let f = bare_fixture().await;
    connection(&f.root).await;
    f
}

/// A server with the acme tenant and no database connection.
async fn bare_fixture() -> Fixture {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start_full(dir.path(), &url, "tls_disable = true", JOBS, &[]);
    let (root, shares) = util::boot(&server.client(None)).await;
    util::tenant(&root).await;
    Fixture {
        server,
        root,
        shares,
        _dir: dir,
    }
}

/// The `main` connection, bound to acme/api/production.
async fn connection(root: &Http) {
    let c = util::ok_data(
        "create connection",
        root.post(
            "/api/v1/orgs/acme/database/connections",
            json!({"name": "main", "url": admin_url(), "project": "api", "environment": "production"}),
        )
        .await,
    );
    assert_eq!(c["url"], json!(admin_url()), "{c}");
}

async fn dynamic_role(root: &Http, name: &str, ttl: i64, max: i64) {
    util::ok_data(
        &format!("create role {name}"),
        root.post(
            "/api/v1/orgs/acme/database/roles",
            json!({"name": name, "connection": "main", "defaults": "read-write", "default_ttl": ttl, "max_ttl": max}),
        )
        .await,
    );
}

async fn creds(root: &Http, role: &str) -> Value {
    let c = util::ok_data(
        &format!("creds of {role}"),
        root.post(&format!("/api/v1/orgs/acme/database/creds/{role}"), json!({}))
            .await,
    );
    util::remember_secret(c["password"].as_str().unwrap_or(""));
    c
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("a string: {v}"))
}

/// Wait until `name` no longer exists; the time it took.
async fn gone_within(name: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !role_exists(name).await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn a_lease_logs_in_renews_up_to_its_max_and_expires_with_its_role_and_sessions() {
    let f = fixture().await;
    let role = unique("rw");
    dynamic_role(&f.root, &role, 2, 4).await;

    // A bad connection is refused, naming the cause, and nothing is stored.
    let (st, b) = f
        .root
        .post(
            "/api/v1/orgs/acme/database/connections",
            json!({"name": "bad", "url": "postgres://postgres@127.0.0.1:1/postgres", "project": "api", "environment": "production"}),
        )
        .await;
    assert_eq!(st, 400, "{b}");
    assert!(b.to_string().contains("not saved"), "{b}");
    let listed = util::ok_data(
        "connections",
        f.root.get("/api/v1/orgs/acme/database/connections").await,
    );
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // Quoted placeholders are refused (they are substituted quoted).
    let (st, b) = f
        .root
        .post(
            "/api/v1/orgs/acme/database/roles",
            json!({"name": "q", "connection": "main", "creation_sql": "CREATE ROLE \"{{name}}\" PASSWORD {{password}}"}),
        )
        .await;
    assert_eq!(st, 400, "{b}");

    let issued = Instant::now();
    let c = creds(&f.root, &role).await;
    let (user, password) = (s(&c["username"]).to_owned(), s(&c["password"]).to_owned());
    assert_eq!(c["lease_duration"], json!(2), "{c}");
    assert!(
        s(&c["lease_id"]).starts_with(&format!("database/creds/acme/{role}/")),
        "{c}"
    );
    assert_eq!(password.len(), 32);
    let mut held = login(&user, &password).await.expect("the lease logs in");
    let (me,): (String,) = sqlx::query_as("SELECT current_user::text")
        .fetch_one(&mut held)
        .await
        .expect("query");
    assert_eq!(me, user);
    let (until,): (Option<String>,) = sqlx::query_as("SELECT rolvaliduntil::text FROM pg_roles WHERE rolname = $1")
        .bind(&user)
        .fetch_one(&mut admin().await)
        .await
        .expect("valid until");
    assert!(until.is_some(), "the role has VALID UNTIL");

    // Renewal is capped at the max TTL (4 s from issue).
    let r = util::ok_data(
        "renew",
        f.root
            .post(
                "/api/v1/orgs/acme/database/leases/renew",
                json!({"lease_id": c["lease_id"], "increment": 100}),
            )
            .await,
    );
    let d = r["lease_duration"].as_i64().expect("duration");
    assert!((2..=4).contains(&d), "capped at the max: {r}");
    assert_eq!(r["renewable"], json!(false), "{r}");

    // Vault's wire: GET database/creds, PUT sys/leases/renew.
    let (st, v) = f.root.get(&format!("/v1/database/creds/acme/{role}")).await;
    assert_eq!(st, 200, "{v}");
    util::remember_secret(s(&v["data"]["password"]));
    assert_eq!(
        (v["renewable"].clone(), v["lease_duration"].clone()),
        (json!(true), json!(2)),
        "{v}"
    );
    let vault_user = s(&v["data"]["username"]).to_owned();
    login(&vault_user, s(&v["data"]["password"]))
        .await
        .expect("vault lease logs in");
    let (st, rv) = f
        .root
        .put(
            "/v1/sys/leases/renew",
            json!({"lease_id": v["lease_id"], "increment": 1}),
        )
        .await;
    assert_eq!(st, 200, "{rv}");
    assert_eq!(rv["lease_id"], v["lease_id"], "{rv}");

    // Expiry: the role and its session go, the login is refused.
    let took = gone_within(&user, Duration::from_secs(10))
        .await
        .expect("the role is dropped");
    let at = issued.elapsed();
    assert!(
        at >= Duration::from_millis(3500),
        "not before its renewed expiry: {at:?} ({took:?})"
    );
    assert!(at <= Duration::from_secs(7), "on time: {at:?}");
    assert!(
        sqlx::query("SELECT 1").execute(&mut held).await.is_err(),
        "its session was terminated"
    );
    let refused = login(&user, &password).await.expect_err("login refused");
    assert!(refused.to_string().contains("does not exist"), "{refused}");
    assert!(gone_within(&vault_user, Duration::from_secs(5)).await.is_some());

    let leases = util::ok_data("leases", f.root.get("/api/v1/orgs/acme/database/leases").await);
    assert!(
        leases
            .as_array()
            .expect("list")
            .iter()
            .all(|l| l["status"] == "revoked"),
        "{leases}"
    );
    let audit = util::ok_data(
        "audit",
        f.root
            .get("/api/v1/audit/records?org=acme&action=database.&limit=100")
            .await,
    )
    .to_string();
    for action in ["database.lease.create", "database.lease.renew", "database.lease.expire"] {
        assert!(audit.contains(action), "{action} audited: {audit}");
    }
    assert!(!audit.contains(&password), "no password in the audit");
    let conns = f.root.get("/api/v1/orgs/acme/database/connections").await.1.to_string();
    assert!(!conns.contains("sealed") && !conns.contains("password"), "{conns}");
}

#[tokio::test]
async fn leases_are_revoked_one_by_one_and_by_prefix() {
    let f = fixture().await;
    let (a, b) = (unique("ra"), unique("rb"));
    dynamic_role(&f.root, &a, 600, 600).await;
    dynamic_role(&f.root, &b, 600, 600).await;
    let mut users_a = Vec::new();
    let mut ids_a = Vec::new();
    for _ in 0..3 {
        let c = creds(&f.root, &a).await;
        users_a.push(s(&c["username"]).to_owned());
        ids_a.push(c["lease_id"].clone());
    }
    let cb = creds(&f.root, &b).await;
    let user_b = s(&cb["username"]).to_owned();
    for u in users_a.iter().chain([&user_b]) {
        assert!(role_exists(u).await, "{u}");
    }

    // One lease (native), then the rest of role a by prefix (Vault wire).
    util::ok_data(
        "revoke",
        f.root
            .post(
                "/api/v1/orgs/acme/database/leases/revoke",
                json!({"lease_id": ids_a[0]}),
            )
            .await,
    );
    assert!(!role_exists(&users_a[0]).await);
    assert!(role_exists(&users_a[1]).await);
    let (st, body) = f
        .root
        .put(
            &format!("/v1/sys/leases/revoke-prefix/database/creds/acme/{a}"),
            json!({}),
        )
        .await;
    assert_eq!(st, 204, "{body}");
    for u in &users_a {
        assert!(!role_exists(u).await, "{u} revoked by prefix");
    }
    assert!(role_exists(&user_b).await, "another role's lease is untouched");
    // An incident: everything of the organization.
    let out = util::ok_data(
        "revoke-prefix",
        f.root
            .post(
                "/api/v1/orgs/acme/database/leases/revoke-prefix",
                json!({"prefix": "database/creds/acme"}),
            )
            .await,
    );
    assert_eq!(out["revoked"], json!([cb["lease_id"]]), "{out}");
    assert!(!role_exists(&user_b).await);
    // A prefix that names no organization is refused.
    let (st, _) = f.root.put("/v1/sys/leases/revoke-prefix/database/", json!({})).await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn a_killed_server_s_leases_still_expire_on_time_after_restart() {
    let mut f = fixture().await;
    let role = unique("rk");
    dynamic_role(&f.root, &role, 4, 4).await;
    let issued = Instant::now();
    let c = creds(&f.root, &role).await;
    let user = s(&c["username"]).to_owned();
    f.server.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(role_exists(&user).await, "no server: the role is still there");
    f.server.restart_hard();
    let anon = f.server.client(None);
    util::unseal(&anon, &[&f.shares[0], &f.shares[1]]).await;
    gone_within(&user, Duration::from_secs(10))
        .await
        .expect("revoked after the restart");
    let at = issued.elapsed();
    assert!(
        at >= Duration::from_millis(3900) && at <= Duration::from_secs(7),
        "at its expiry: {at:?}"
    );
}

#[tokio::test]
async fn coffer_run_injects_a_fresh_database_url_and_revokes_it_when_the_program_exits() {
    let f = fixture().await;
    let role = unique("run");
    dynamic_role(&f.root, &role, 600, 600).await;
    let home = util::tempdir();
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["run", "--db-role", &role, "--", "sh", "-c"])
        .arg("psql \"$DATABASE_URL\" -Atc 'select current_user'")
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env("COFFER_ADDR", &f.server.base)
        .env("COFFER_TOKEN", f.root.token())
        .env("COFFER_ORG", "acme")
        .env("COFFER_PROJECT", "api")
        .env("COFFER_ENV", "production")
        .stdin(Stdio::null())
        .output()
        .expect("coffer run");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with(&format!("v_{}_", role.to_lowercase())), "{stdout}");
    assert!(!role_exists(&stdout).await, "revoked when the program exited");
    let leases = util::ok_data("leases", f.root.get("/api/v1/orgs/acme/database/leases").await);
    assert_eq!(leases[0]["status"], json!("revoked"), "{leases}");
}

async fn static_user(name: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE \"{name}\" LOGIN PASSWORD 'initial-password'"
    )))
    .execute(&mut admin().await)
    .await
    .expect("create static user");
}

async fn drop_user(name: &str) {
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS \"{name}\"")))
        .execute(&mut admin().await)
        .await;
}

async fn revealed(root: &Http, key: &str) -> String {
    let v = util::ok_data("reveal", root.get(&format!("{ENV}/secrets/{key}?reveal=true")).await);
    util::remember_secret(s(&v["value"]));
    s(&v["value"]).to_owned()
}

#[tokio::test]
async fn a_static_rotation_keeps_held_connections_and_a_failed_verification_rolls_back() {
    let f = fixture().await;
    let user = unique("app");
    static_user(&user).await;
    let mut app = login(&user, "initial-password").await.expect("app connects");
    let r = util::ok_data(
        "static role",
        f.root
            .post(
                "/api/v1/orgs/acme/database/roles",
                json!({"name": "app-static", "connection": "main", "kind": "static", "username": user, "secret_key": "APP_DB_PASSWORD"}),
            )
            .await,
    );
    assert_eq!(r["kind"], json!("static"), "{r}");
    let v1 = revealed(&f.root, "APP_DB_PASSWORD").await;
    assert!(
        scram_matches(&verifier(&user).await, &v1),
        "the database holds version 1"
    );
    assert!(!scram_matches(&verifier(&user).await, "initial-password"));

    // On demand, while the application holds its connection.
    let rot = util::ok_data(
        "rotate",
        f.root
            .post("/api/v1/orgs/acme/database/roles/app-static/rotate", json!({}))
            .await,
    );
    assert_eq!(rot["version"], json!(2), "{rot}");
    let v2 = revealed(&f.root, "APP_DB_PASSWORD").await;
    assert_ne!(v1, v2);
    assert!(scram_matches(&verifier(&user).await, &v2));
    sqlx::query("SELECT 1")
        .execute(&mut app)
        .await
        .expect("the held connection still works");
    login(&user, &v2).await.expect("a new connection with version 2");

    // The verification login fails (NOLOGIN): the old password comes back
    // and no version is committed.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER ROLE \"{user}\" NOLOGIN")))
        .execute(&mut admin().await)
        .await
        .expect("nologin");
    let (st, b) = f
        .root
        .post("/api/v1/orgs/acme/database/roles/app-static/rotate", json!({}))
        .await;
    assert_eq!(st, 409, "{b}");
    assert!(b.to_string().contains("previous password was restored"), "{b}");
    assert_eq!(revealed(&f.root, "APP_DB_PASSWORD").await, v2, "no new version");
    assert!(
        scram_matches(&verifier(&user).await, &v2),
        "the database holds version 2 again"
    );
    let history = util::ok_data(
        "history",
        f.root.get(&format!("{ENV}/secrets/APP_DB_PASSWORD/history")).await,
    );
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    let audit = util::ok_data(
        "audit",
        f.root
            .get("/api/v1/audit/records?org=acme&action=database.rotate&limit=100")
            .await,
    )
    .to_string();
    assert!(
        audit.contains("a login with the new password failed"),
        "the failure is audited: {audit}"
    );
    drop(app);
    drop_user(&user).await;
}

fn versions_ms(history: &Value) -> Vec<i128> {
    history
        .as_array()
        .expect("history")
        .iter()
        .map(|v| {
            time::OffsetDateTime::parse(s(&v["created_at"]), &time::format_description::well_known::Rfc3339)
                .expect("rfc3339")
                .unix_timestamp_nanos()
                / 1_000_000
        })
        .collect()
}

#[tokio::test]
async fn scheduled_rotation_runs_once_per_period_across_two_servers() {
    let f = fixture().await;
    let second = if util::storage_kind() == "postgres" {
        // A second server on the same storage; it unseals on its own.
        let dir = util::tempdir();
        let url = std::fs::read_to_string(f.server.config_path())
            .expect("config")
            .lines()
            .find_map(|l| l.strip_prefix("url = \"").map(|u| u.trim_end_matches('"').to_owned()))
            .expect("storage url");
        let b = Server::start_full(dir.path(), &url, "tls_disable = true", JOBS, &[]);
        util::unseal(&b.client(None), &[&f.shares[1], &f.shares[2]]).await;
        Some((b, dir))
    } else {
        None
    };
    let user = unique("sched");
    static_user(&user).await;
    util::ok_data(
        "static role",
        f.root
            .post(
                "/api/v1/orgs/acme/database/roles",
                json!({"name": "sched", "connection": "main", "kind": "static", "username": user,
                       "secret_key": "SCHED_PASSWORD", "rotation_period": 2}),
            )
            .await,
    );
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let history = util::ok_data(
        "history",
        f.root.get(&format!("{ENV}/secrets/SCHED_PASSWORD/history")).await,
    );
    let at = versions_ms(&history);
    assert!(at.len() >= 3, "created + at least two scheduled rotations: {history}");
    let mut sorted = at.clone();
    sorted.sort_unstable();
    for w in sorted.windows(2) {
        assert!(
            w[1] - w[0] >= 1500,
            "one rotation per period, never two at once: {history}"
        );
    }
    let current = revealed(&f.root, "SCHED_PASSWORD").await;
    assert!(
        scram_matches(&verifier(&user).await, &current),
        "the database holds the latest version"
    );
    drop(second);
    drop_user(&user).await;
}

/// `coffer database …` with `stdin`; (success, stdout, stderr).
fn cli(f: &Fixture, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let home = util::tempdir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("database")
        .args(args)
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env("COFFER_ADDR", &f.server.base)
        .env("COFFER_TOKEN", f.root.token())
        .env("COFFER_ORG", "acme")
        .env("COFFER_PROJECT", "api")
        .env("COFFER_ENV", "production")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("coffer database");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("coffer database output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_ok(f: &Fixture, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = cli(f, args, stdin);
    assert!(ok, "coffer database {args:?} failed:\n{out}\n{err}");
    out
}

fn cli_err(f: &Fixture, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = cli(f, args, stdin);
    assert!(!ok, "coffer database {args:?} should fail:\n{out}\n{err}");
    err
}

/// `KEY='value'` lines → value of `key`.
fn env_line(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim_matches('\'').to_owned())
        .unwrap_or_else(|| panic!("{key} in {out}"))
}

#[tokio::test]
async fn the_database_cli_manages_connections_roles_and_leases_against_the_real_postgresql() {
    let f = bare_fixture().await;
    // trust authentication accepts any password: this one must never come back
    let admin_pw = format!("adminpw{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    util::remember_secret(&admin_pw);
    let url = format!("postgres://postgres:{admin_pw}@{TARGET_HOST}/{TARGET_DB}");

    // The URL is never taken from argv; without --url-stdin a pipe is refused.
    let err = cli_err(&f, &["connection", "add", "main"], None);
    assert!(err.contains("--url-stdin"), "{err}");
    let err = cli_err(&f, &["connection", "add", "main", &url], None);
    assert!(err.contains("unexpected argument"), "{err}");
    // A connection that does not work is refused with the cause.
    let err = cli_err(
        &f,
        &["connection", "add", "bad", "--url-stdin"],
        Some("postgres://postgres:x@127.0.0.1:1/postgres\n"),
    );
    assert!(err.contains("not saved") && err.contains("bad"), "{err}");
    let out = cli_ok(
        &f,
        &["connection", "add", "main", "--url-stdin"],
        Some(&format!("{url}\n")),
    );
    assert!(out.contains("main") && out.contains("api/production"), "{out}");
    assert!(!out.contains(&admin_pw), "the admin password is printed: {out}");
    let list = cli_ok(&f, &["connection", "list"], None);
    assert!(
        list.contains(&format!("postgres://postgres@{TARGET_HOST}/{TARGET_DB}")),
        "{list}"
    );
    assert!(!list.contains(&admin_pw), "{list}");
    let json_list = cli_ok(&f, &["connection", "list", "--json"], None);
    assert!(!json_list.contains(&admin_pw), "{json_list}");

    // A dynamic role; bad combinations are refused with the flag named.
    let role = unique("cli");
    let err = cli_err(
        &f,
        &["role", "add", &role, "--connection", "main", "--dynamic", "--static"],
        None,
    );
    assert!(err.contains("--static") || err.contains("--dynamic"), "{err}");
    let err = cli_err(
        &f,
        &["role", "add", &role, "--connection", "main", "--dynamic", "--ttl", "1w"],
        None,
    );
    assert!(err.contains("--ttl") && err.contains("unit"), "{err}");
    let err = cli_err(&f, &["role", "add", &role, "--connection", "nope", "--dynamic"], None);
    assert!(err.contains("database connection nope"), "{err}");
    let out = cli_ok(
        &f,
        &[
            "role",
            "add",
            &role,
            "--connection",
            "main",
            "--dynamic",
            "--template",
            "read-write",
            "--ttl",
            "10m",
            "--max-ttl",
            "1h",
        ],
        None,
    );
    assert!(out.contains("ttl 600 s, max ttl 3600 s"), "{out}");
    let roles = cli_ok(&f, &["role", "list"], None);
    assert!(roles.contains(&role) && roles.contains("dynamic"), "{roles}");

    // Credentials as env lines: they log in.
    let out = cli_ok(&f, &["creds", &role], None);
    let (user, password, lease) = (
        env_line(&out, "DB_USERNAME"),
        env_line(&out, "DB_PASSWORD"),
        env_line(&out, "DB_LEASE_ID"),
    );
    util::remember_secret(&password);
    assert_eq!(env_line(&out, "DB_LEASE_DURATION"), "600", "{out}");
    assert!(lease.starts_with(&format!("database/creds/acme/{role}/")), "{out}");
    login(&user, &password).await.expect("the lease logs in");
    assert!(role_exists(&user).await);
    // … and as JSON, with a shorter TTL.
    let j: Value = serde_json::from_str(&cli_ok(&f, &["creds", &role, "--json", "--ttl", "2m"], None)).expect("json");
    util::remember_secret(s(&j["password"]));
    assert_eq!(j["lease_duration"], json!(120), "{j}");
    let user2 = s(&j["username"]).to_owned();
    assert!(role_exists(&user2).await);

    let leases = cli_ok(&f, &["lease", "list"], None);
    assert!(leases.contains(&lease) && leases.contains(&user), "{leases}");
    assert!(leases.contains(&format!("role {role}")), "{leases}");
    let out = cli_ok(&f, &["lease", "renew", &lease, "--increment", "20m"], None);
    assert!(out.contains("renewed"), "{out}");
    let err = cli_err(&f, &["lease", "renew", "database/creds/other/x/y"], None);
    assert!(err.contains("not of organization acme"), "{err}");

    let out = cli_ok(&f, &["lease", "revoke", &lease], None);
    assert!(out.contains("revoked"), "{out}");
    assert!(!role_exists(&user).await, "revoked: the PostgreSQL role is gone");
    assert!(role_exists(&user2).await);
    let out = cli_ok(
        &f,
        &["lease", "revoke-prefix", &format!("database/creds/acme/{role}")],
        None,
    );
    assert!(out.starts_with("1 leases"), "{out}");
    assert!(!role_exists(&user2).await, "revoked by prefix");

    // A static role: rotated at creation and on demand; the secret must be
    // in the connection's environment.
    let db_user = unique("clistatic");
    static_user(&db_user).await;
    let err = cli_err(
        &f,
        &[
            "role",
            "add",
            "legacy",
            "--connection",
            "main",
            "--static",
            "--username",
            &db_user,
            "--secret",
            "staging/LEGACY_PW",
        ],
        None,
    );
    assert!(err.contains("bound to api/production"), "{err}");
    let err = cli_err(
        &f,
        &[
            "role",
            "add",
            "legacy",
            "--connection",
            "main",
            "--static",
            "--secret",
            "production/LEGACY_PW",
        ],
        None,
    );
    assert!(err.contains("--username"), "{err}");
    let out = cli_ok(
        &f,
        &[
            "role",
            "add",
            "legacy",
            "--connection",
            "main",
            "--static",
            "--username",
            &db_user,
            "--secret",
            "production/LEGACY_PW",
            "--every",
            "24h",
        ],
        None,
    );
    assert!(out.contains("rotated every 86400 s"), "{out}");
    let v1 = revealed(&f.root, "LEGACY_PW").await;
    assert!(scram_matches(&verifier(&db_user).await, &v1));
    let out = cli_ok(&f, &["role", "rotate", "legacy"], None);
    assert!(out.contains("version 2"), "{out}");
    let v2 = revealed(&f.root, "LEGACY_PW").await;
    assert!(scram_matches(&verifier(&db_user).await, &v2));

    // Removal: a connection with roles is refused, naming the role.
    let err = cli_err(&f, &["connection", "remove", "main"], None);
    assert!(err.contains("used by role"), "{err}");
    cli_ok(&f, &["role", "remove", "legacy"], None);
    cli_ok(&f, &["role", "remove", &role], None);
    let err = cli_err(&f, &["creds", &role], None);
    assert!(err.contains(&format!("database role {role}")), "{err}");
    cli_ok(&f, &["connection", "remove", "main"], None);
    assert!(cli_ok(&f, &["connection", "list"], None).contains("no database connections"));
    drop_user(&db_user).await;
}
