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
