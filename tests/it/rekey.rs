//! Rekey (Vault's `sys/rekey/*`) and root rotation on the real binary.

use serde_json::{Value, json};
use sqlx::Row;

use crate::keys::pool;

/// `coffer operator ARGS` with `input` on stdin.
fn operator_stdin(server: &Server, token: &str, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("operator")
        .args(args)
        .env("COFFER_ADDR", &server.base)
        .env("COFFER_TOKEN", token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run coffer");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{input}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
use crate::util::{self, ENV, Http, Server};

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

async fn write_secrets(http: &Http) {
    util::tenant(http).await;
    for i in 0..5 {
        let (st, b) = http
            .post(&format!("{ENV}/secrets/K{i}"), json!({ "value": format!("v{i}") }))
            .await;
        assert_eq!(st, 200, "{b}");
    }
}

async fn assert_secrets(http: &Http) {
    for i in 0..5 {
        let (st, b) = http.get(&format!("{ENV}/secrets/K{i}?reveal=true")).await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["value"], format!("v{i}"));
    }
}

/// Submit `shares` to sys/unseal; returns the last (status, body).
async fn try_unseal(anon: &Http, shares: &[String]) -> (u16, Value) {
    let mut last = (0, Value::Null);
    for s in shares {
        let (st, b) = anon.put("/v1/sys/unseal", json!({ "key": s })).await;
        last = (st.as_u16(), b);
        if st != 200 {
            break;
        }
    }
    last
}

/// Run a rekey's update phase with `shares`; returns the final body.
async fn rekey_with(http: &Http, nonce: &str, shares: &[String]) -> Value {
    let mut last = Value::Null;
    for s in shares {
        let (st, b) = http
            .put("/v1/sys/rekey/update", json!({ "key": s, "nonce": nonce }))
            .await;
        assert_eq!(st, 200, "{b}");
        last = b;
    }
    last
}

#[tokio::test]
async fn rekey_3_of_5_to_2_of_3_revokes_old_shares() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let mut server = Server::start(dir.path(), &url);
    let anon = server.client(None);
    let (old, _, root) = util::init(&anon, 5, 3).await;
    util::unseal(&anon, &[&old[0], &old[1], &old[2]]).await;
    let http = anon.with_token(&root);
    write_secrets(&http).await;

    // Authenticated: no token, no rekey.
    let (st, _) = anon
        .put("/v1/sys/rekey/init", json!({"secret_shares": 3, "secret_threshold": 2}))
        .await;
    assert_eq!(st, 403);
    let (st, b) = http.get("/v1/sys/rekey/init").await;
    assert_eq!((st.as_u16(), &b["started"]), (200, &json!(false)), "{b}");
    let (st, b) = http
        .put("/v1/sys/rekey/init", json!({"secret_shares": 3, "secret_threshold": 2}))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        (b["t"].as_u64(), b["n"].as_u64(), b["required"].as_u64()),
        (Some(2), Some(3), Some(3))
    );
    let nonce = b["nonce"].as_str().unwrap().to_owned();
    let (st, _) = http
        .put("/v1/sys/rekey/init", json!({"secret_shares": 3, "secret_threshold": 2}))
        .await;
    assert_eq!(st, 400, "one rekey at a time");

    // A wrong nonce is refused and costs nothing.
    let (st, b) = http
        .put("/v1/sys/rekey/update", json!({"key": old[3], "nonce": "nope"}))
        .await;
    assert_eq!(st, 400, "{b}");
    let b = rekey_with(&http, &nonce, &old[2..4]).await;
    assert_eq!(b["progress"], 2, "{b}");
    let done = rekey_with(&http, &nonce, &old[4..5]).await;
    assert_eq!(done["complete"], true, "{done}");
    let new = strings(&done["keys"]);
    assert_eq!((new.len(), strings(&done["keys_base64"]).len()), (3, 3));
    let (_, b) = http.get("/v1/sys/rekey/init").await;
    assert_eq!(b["started"], false, "{b}");

    // Sealed: the old shares no longer unseal, two new ones do.
    let (st, _) = http.put("/v1/sys/seal", json!({})).await;
    assert_eq!(st, 204);
    let (st, b) = try_unseal(&anon, &old[0..3]).await;
    assert_eq!(st, 400, "old shares refused: {b}");
    let (st, b) = try_unseal(&anon, &new[1..3]).await;
    assert_eq!(
        (st, &b["sealed"], &b["t"], &b["n"]),
        (200, &json!(false), &json!(2), &json!(3)),
        "{b}"
    );
    assert_secrets(&http).await;

    // After a restart too.
    server.restart_hard();
    let anon = server.client(None);
    let (st, _) = try_unseal(&anon, &old[1..4]).await;
    assert_eq!(st, 400);
    let (st, b) = try_unseal(&anon, &[new[2].clone(), new[0].clone()]).await;
    assert_eq!((st, &b["sealed"]), (200, &json!(false)), "{b}");
    assert_secrets(&anon.with_token(&root)).await;
}

#[tokio::test]
async fn rekey_with_verification_keeps_old_shares_until_verified() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start(dir.path(), &url);
    let anon = server.client(None);
    let (old, _, root) = util::init(&anon, 3, 2).await;
    util::unseal(&anon, &[&old[0], &old[1]]).await;
    let http = anon.with_token(&root);
    write_secrets(&http).await;

    let (_, b) = http
        .put(
            "/v1/sys/rekey/init",
            json!({"secret_shares": 4, "secret_threshold": 3, "require_verification": true}),
        )
        .await;
    let nonce = b["nonce"].as_str().unwrap().to_owned();
    assert_eq!(b["verification_required"], true);
    // A foreign quorum (another init) is refused.
    let other_dir = util::tempdir();
    let other = Server::start(other_dir.path(), &util::fresh_storage_url(other_dir.path()).await);
    let (foreign, _, _) = util::init(&other.client(None), 3, 2).await;
    let (st, b) = http
        .put("/v1/sys/rekey/update", json!({"key": foreign[0], "nonce": nonce}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = http
        .put("/v1/sys/rekey/update", json!({"key": foreign[1], "nonce": nonce}))
        .await;
    assert_eq!(st, 400, "wrong quorum: {b}");

    let done = rekey_with(&http, &nonce, &old[1..3]).await;
    assert_eq!(
        (&done["complete"], &done["verification_required"]),
        (&json!(true), &json!(true))
    );
    let new = strings(&done["keys"]);
    let vnonce = done["verification_nonce"].as_str().unwrap().to_owned();
    // Not in effect yet.
    let (_, st) = anon.get("/v1/sys/seal-status").await;
    assert_eq!(st["n"], 3, "{st}");
    let (st, b) = http.get("/v1/sys/rekey/verify").await;
    assert_eq!((st.as_u16(), &b["t"], &b["n"]), (200, &json!(3), &json!(4)), "{b}");
    for s in &new[0..2] {
        let (st, b) = http
            .put("/v1/sys/rekey/verify", json!({"key": s, "nonce": vnonce}))
            .await;
        assert_eq!(st, 200, "{b}");
    }
    let (st, b) = http
        .put("/v1/sys/rekey/verify", json!({"key": new[3], "nonce": vnonce}))
        .await;
    assert_eq!((st.as_u16(), &b["complete"]), (200, &json!(true)), "{b}");
    let (_, st) = anon.get("/v1/sys/seal-status").await;
    assert_eq!((&st["t"], &st["n"]), (&json!(3), &json!(4)), "{st}");

    assert_eq!(http.put("/v1/sys/seal", json!({})).await.0, 204);
    // Three old shares (the new threshold) make a wrong key.
    assert_eq!(try_unseal(&anon, &old[0..3]).await.0, 400);
    let (st, b) = try_unseal(&anon, &new[1..4]).await;
    assert_eq!((st, &b["sealed"]), (200, &json!(false)), "{b}");
    assert_secrets(&http).await;
}

#[tokio::test]
async fn rotate_root_rewraps_keks_only_and_old_root_is_gone() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let mut server = Server::start(dir.path(), &url);
    let anon = server.client(None);
    let (keys, _, root) = util::init(&anon, 3, 2).await;
    util::unseal(&anon, &[&keys[0], &keys[1]]).await;
    let http = anon.with_token(&root);
    write_secrets(&http).await;
    let (st, _) = http.post("/api/v1/orgs", json!({"slug": "beta", "name": "Beta"})).await;
    assert_eq!(st, 200);
    let (st, _) = http.post("/api/v1/orgs/acme/keks/rotate", json!({})).await;
    assert_eq!(st, 200);

    let db = pool(&url).await;
    let snapshot = |db: sqlx::AnyPool| async move {
        let root: Vec<u8> = sqlx::query("SELECT encrypted_root FROM keyring")
            .fetch_one(&db)
            .await
            .unwrap()
            .get("encrypted_root");
        let keks: Vec<Vec<u8>> = sqlx::query("SELECT wrapped_key FROM kms_keys ORDER BY org_id, version")
            .fetch_all(&db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("wrapped_key"))
            .collect();
        let versions: Vec<(Vec<u8>, Vec<u8>)> =
            sqlx::query("SELECT ciphertext, wrapped_dek FROM secret_versions ORDER BY id")
                .fetch_all(&db)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get("ciphertext"), r.get("wrapped_dek")))
                .collect();
        (root, keks, versions)
    };
    let before = snapshot(db.clone()).await;
    // Shamir mode: a quorum of current shares, one per custodian.
    let out = operator_stdin(&server, &root, &["rotate-root"], &keys[2]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1/2"));
    assert_eq!(before, snapshot(db.clone()).await, "nothing changes before the quorum");
    let out = operator_stdin(&server, &root, &["rotate-root"], &keys[0]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 KEKs re-wrapped"));
    let after = snapshot(db.clone()).await;
    assert_ne!(before.0, after.0, "root blob replaced");
    assert_eq!(before.1.len(), 3);
    for (a, b) in before.1.iter().zip(&after.1) {
        assert_ne!(a, b, "every KEK re-wrapped");
    }
    assert_eq!(before.2, after.2, "no DEK or ciphertext touched");
    assert_secrets(&http).await;
    // New writes work with the new root; the same shares still unseal.
    let (st, _) = http.post(&format!("{ENV}/secrets/NEW"), json!({"value": "n"})).await;
    assert_eq!(st, 200);
    server.restart_hard();
    let anon = server.client(None);
    util::unseal(&anon, &[&keys[2], &keys[1]]).await;
    assert_secrets(&anon.with_token(&root)).await;
    let (st, _) = anon.with_token(&root).put("/v1/sys/rotate-root", json!({})).await;
    assert_eq!(
        st, 200,
        "rotates again after a restart (unseal key kept while unsealed)"
    );
}
