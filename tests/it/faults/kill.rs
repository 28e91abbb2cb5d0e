//! kill -9 in the middle of each long operation (issue 22 §3,
//! docs/reliability.md): KEK rotation and the re-wrap after it, root key
//! rotation, rekey (new Shamir shares), restore of a backup, audit prune.
//! After the kill a rerun (after a restart and unseal where the server was
//! the one killed) completes, every secret version still reveals its value
//! and the audit chain verifies.
//!
//! The re-wrap and the restore are long: the test kills when their own
//! progress output says they started and have not finished. The other
//! operations are one transaction each (or, for a rekey, in-memory state
//! plus one compare-and-swap of the keyring row): the tests kill the server
//! at a sweep of delays after the request is sent and check that each
//! outcome is all or nothing, never a mix.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Row;

use super::assert_audit_verifies;
use crate::util::*;

/// Values written by [`populate`]: key → value of each version, oldest first.
type Expected = BTreeMap<String, Vec<String>>;

/// `n` single-version secrets (pushed 500 a request, each push one
/// transaction) and five keys with three versions each.
async fn populate(root: &Http, n: usize) -> Expected {
    let mut expected = Expected::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut file = String::new();
        for i in chunk {
            let (k, v) = (format!("S{i}"), format!("single-{i}-value"));
            file.push_str(&format!("{k}={v}\n"));
            expected.insert(k, vec![v]);
        }
        let r = ok_data(
            "bulk push",
            root.post(
                &format!("{ENV}/sync/push"),
                json!({"content": file, "format": "env", "apply": true}),
            )
            .await,
        );
        assert_eq!(r["applied"], true, "{r}");
    }
    for m in 0..5 {
        let key = format!("M{m}");
        for v in 1..=3 {
            let value = format!("multi-{m}-version-{v}");
            write_secret(root, ENV, &key, &value).await;
            expected.entry(key.clone()).or_default().push(value);
        }
    }
    expected
}

/// Every version of every secret reveals the value it was written with:
/// the current ones through one inject, the older ones through KV v2.
async fn assert_nothing_lost(root: &Http, expected: &Expected) {
    let b = ok_data("inject", root.post(&format!("{ENV}/inject"), json!({})).await);
    for (key, versions) in expected {
        assert_eq!(
            b[key].as_str(),
            versions.last().map(String::as_str),
            "current value of {key}"
        );
        if versions.len() > 1 {
            for (i, value) in versions.iter().enumerate() {
                let (st, d) = root
                    .get(&format!("/v1/secret/data/acme/api/production/{key}?version={}", i + 1))
                    .await;
                assert_eq!(st, 200, "{key} version {}: {d}", i + 1);
                assert_eq!(d["data"]["data"]["value"], json!(value), "{key} version {}", i + 1);
            }
        }
    }
}

/// A server on the backend under test, initialized 3/2, unsealed, with acme/api/production.
async fn booted(dir: &std::path::Path, extra: &str) -> (Server, Http, Vec<String>, String) {
    let url = fresh_storage_url(dir).await;
    let server = Server::start_full(dir, &url, "tls_disable = true", extra, &[]);
    let (root, keys) = boot(&server.client(None)).await;
    org_tree(&root, "acme", &[("api", &["production"])]).await;
    (server, root, keys, url)
}

/// Restart after a kill and unseal with `shares`; returns a root client.
async fn restart(server: &mut Server, token: &str, shares: &[&str]) -> Http {
    server.restart_hard();
    let status = unseal(&server.client(None), shares).await;
    assert_eq!(status["sealed"], false, "unseal after the kill: {status}");
    server.client(Some(token))
}

/// Send one request without waiting for it (its answer may never come),
/// on a client already connected to the server: the delay before the kill
/// is then the server's time, not a TLS root store load or a TCP connect.
async fn fire(base: &str, token: &str, method: &str, path: &str, body: Value) -> tokio::task::JoinHandle<Option<u16>> {
    let client = reqwest::Client::new();
    client
        .get(format!("{base}/v1/sys/health"))
        .send()
        .await
        .expect("warm the connection");
    let (url, token, method) = (format!("{base}{path}"), token.to_owned(), method.to_owned());
    tokio::spawn(async move {
        let method = reqwest::Method::from_bytes(method.as_bytes()).ok()?;
        let r = client
            .request(method, url)
            .header("X-Vault-Token", token)
            .json(&body)
            .send()
            .await
            .ok()?;
        Some(r.status().as_u16())
    })
}

/// Kill at [`ANSWERED`]: once the answer has come.
const ANSWERED: Duration = Duration::MAX;

/// Delays after which the server is killed, spanning an operation that
/// took `d` once uninterrupted: before its request can have arrived, at
/// fractions of its length, past it (a loaded host makes it slower than
/// measured), and once it answered.
fn sweep(d: Duration) -> Vec<Duration> {
    let mut v: Vec<Duration> = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0]
        .into_iter()
        .map(|f| d.mul_f64(f))
        .collect();
    v.push(ANSWERED);
    v
}

/// kill -9 the server `d` after `req` was sent (or once it answered);
/// returns its status if an answer came.
async fn kill_after(server: &mut Server, req: tokio::task::JoinHandle<Option<u16>>, d: Duration) -> Option<u16> {
    if d == ANSWERED {
        let answered = req.await.ok().flatten();
        server.kill9();
        return answered;
    }
    tokio::time::sleep(d).await;
    server.kill9();
    req.await.ok().flatten()
}

/// Report where the kills landed; the sweep must have seen both ends: a
/// kill before the operation took effect and one after.
#[track_caller]
fn assert_spanned(what: &str, delays: &[Duration], outcomes: &[bool]) {
    let shown: Vec<String> = delays
        .iter()
        .zip(outcomes)
        .map(|(d, o)| {
            let at = if *d == ANSWERED {
                "answered".to_owned()
            } else {
                format!("{:.1} ms", d.as_secs_f64() * 1e3)
            };
            format!("{at}: {}", if *o { "done" } else { "not done" })
        })
        .collect();
    eprintln!("{what}: killed after {}", shown.join(", "));
    assert!(
        outcomes.contains(&false) && outcomes.contains(&true),
        "{what}: the kills did not span the operation: {shown:?}"
    );
}

/// `coffer ARGS` against `server`, stdin `input`, stdout/stderr piped.
fn coffer(server: &Server, token: &str, args: &[&str], input: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env("COFFER_ADDR", &server.base)
        .env("COFFER_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run coffer");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    child
}

fn finish(what: &str, child: Child) -> String {
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn active_kek(root: &Http) -> i64 {
    let keks = ok_data("keks", root.get("/api/v1/orgs/acme/keks").await);
    keks.as_array()
        .and_then(|a| a.iter().find(|k| k["active"] == true))
        .and_then(|k| k["version"].as_i64())
        .unwrap_or_else(|| panic!("no active KEK: {keks}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_kek_rotation_and_rewrap_then_rerun_loses_nothing() {
    let dir = tempdir();
    let (mut server, mut root, keys, _) = booted(dir.path(), "").await;
    let token = root.token().to_owned();
    let expected = populate(&root, 2000).await;

    // KEK rotation: one INSERT of the new version. Killed at any point it
    // is there or not; the rerun rotates once more.
    let started = Instant::now();
    ok_data(
        "rotate kek",
        root.post("/api/v1/orgs/acme/keks/rotate", json!({})).await,
    );
    let delays = sweep(started.elapsed());
    let mut outcomes = Vec::new();
    for d in &delays {
        let before = active_kek(&root).await;
        let req = fire(&server.base, &token, "POST", "/api/v1/orgs/acme/keks/rotate", json!({})).await;
        let answered = kill_after(&mut server, req, *d).await;
        root = restart(&mut server, &token, &[&keys[0], &keys[1]]).await;
        let after = active_kek(&root).await;
        assert!(after == before || after == before + 1, "KEK {before} → {after}");
        if answered == Some(200) {
            assert_eq!(after, before + 1, "answered 200 but not rotated");
        }
        outcomes.push(after == before + 1);
        assert_nothing_lost(&root, &expected).await;
    }
    assert_spanned("KEK rotation", &delays, &outcomes);
    let v = active_kek(&root).await;
    finish(
        "rotate-kek rerun",
        coffer(&server, &token, &["operator", "rotate-kek", "--org", "acme"], ""),
    );
    assert_eq!(active_kek(&root).await, v + 1);

    // Re-wrap, 10 DEKs a request: killed once its progress bar shows it
    // started and has not finished.
    let mut child = coffer(
        &server,
        &token,
        &["operator", "rewrap", "--org", "acme", "--batch", "10"],
        "",
    );
    let mut err = child.stderr.take().expect("stderr");
    let total = expected.values().map(Vec::len).sum::<usize>();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // `\rrewrap [###…] done/total (… DEKs/s)`
        let mut buf = [0u8; 4096];
        let mut text = String::new();
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if let Some(last) = text.rsplit('\r').find(|s| s.contains('/')) {
                let done = last
                    .split("] ")
                    .nth(1)
                    .and_then(|s| s.split('/').next())
                    .and_then(|s| s.parse::<usize>().ok());
                if let Some(d) = done {
                    let _ = tx.send(d);
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let at = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(done) if done >= 200 => break done,
            Ok(_) => {}
            Err(e) => panic!("rewrap showed no progress: {e}"),
        }
        assert!(Instant::now() < deadline, "rewrap made no progress");
    };
    server.kill9();
    let _ = child.wait();
    assert!(at < total, "rewrap finished ({at}/{total}) before it could be killed");
    root = restart(&mut server, &token, &[&keys[0], &keys[1]]).await;
    assert_nothing_lost(&root, &expected).await;
    let out = finish(
        "rewrap rerun",
        coffer(
            &server,
            &token,
            &["operator", "rewrap", "--org", "acme", "--batch", "500"],
            "",
        ),
    );
    let moved: usize = out
        .split("Re-wrapped ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("rewrap summary: {out}"));
    assert!(
        moved > 0 && moved <= total - at,
        "resumed: {moved} moved after {at}/{total}"
    );
    eprintln!("rewrap killed at {at}/{total} DEKs; the rerun moved the other {moved}");
    let keks = ok_data("keks", root.get("/api/v1/orgs/acme/keks").await);
    for k in keks.as_array().expect("keks") {
        if k["active"] != true {
            assert_eq!(k["references"], 0, "an old KEK still wraps something: {keks}");
        }
    }
    assert_nothing_lost(&root, &expected).await;
    assert_audit_verifies(&root).await;
}

/// The stored keyring row and every wrapped KEK.
async fn key_material(url: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    let db = crate::keys::pool(url).await;
    let root: Vec<u8> = sqlx::query("SELECT encrypted_root FROM keyring")
        .fetch_one(&db)
        .await
        .expect("keyring")
        .get("encrypted_root");
    let keks = sqlx::query("SELECT wrapped_key FROM kms_keys ORDER BY org_id, version")
        .fetch_all(&db)
        .await
        .expect("keks")
        .iter()
        .map(|r| r.get("wrapped_key"))
        .collect();
    db.close().await;
    (root, keks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_root_rotation_is_all_or_nothing_and_a_rerun_completes() {
    let dir = tempdir();
    let (mut server, mut root, keys, url) = booted(dir.path(), "").await;
    let token = root.token().to_owned();
    let expected = populate(&root, 200).await;
    // 200 KEK versions for the rotation to re-wrap in its transaction.
    for _ in 0..200 {
        ok_data(
            "rotate kek",
            root.post("/api/v1/orgs/acme/keks/rotate", json!({})).await,
        );
    }
    // One uninterrupted rotation gives the length of the sweep.
    ok_data_vault("share", root.put("/v1/sys/rotate-root", json!({"key": keys[0]})).await);
    let started = Instant::now();
    let done = ok_data_vault("share", root.put("/v1/sys/rotate-root", json!({"key": keys[1]})).await);
    assert_eq!(done["complete"], true, "{done}");
    let delays = sweep(started.elapsed());
    let mut outcomes = Vec::new();
    for d in &delays {
        let (root_before, keks_before) = key_material(&url).await;
        ok_data_vault(
            "first share",
            root.put("/v1/sys/rotate-root", json!({"key": keys[0]})).await,
        );
        let req = fire(
            &server.base,
            &token,
            "PUT",
            "/v1/sys/rotate-root",
            json!({"key": keys[1]}),
        )
        .await;
        let answered = kill_after(&mut server, req, *d).await;
        // The same shares unseal whichever root is stored.
        root = restart(&mut server, &token, &[&keys[0], &keys[2]]).await;
        let (root_after, keks_after) = key_material(&url).await;
        let rotated = root_after != root_before;
        // All or nothing: the root and every KEK moved together.
        assert_eq!(keks_after.len(), keks_before.len());
        let moved = keks_after.iter().zip(&keks_before).filter(|(a, b)| a != b).count();
        assert_eq!(
            moved,
            if rotated { keks_before.len() } else { 0 },
            "killed after {d:?}: root rotated = {rotated}, {moved}/{} KEKs re-wrapped",
            keks_before.len()
        );
        if answered == Some(200) {
            assert!(rotated, "answered 200 but not rotated");
        }
        outcomes.push(rotated);
        assert_nothing_lost(&root, &expected).await;
    }
    assert_spanned("root rotation", &delays, &outcomes);
    // The rerun completes.
    ok_data_vault(
        "share 1",
        root.put("/v1/sys/rotate-root", json!({"key": keys[1]})).await,
    );
    let done = ok_data_vault(
        "share 2",
        root.put("/v1/sys/rotate-root", json!({"key": keys[2]})).await,
    );
    assert_eq!(done["complete"], true, "{done}");
    root = restart(&mut server, &token, &[&keys[1], &keys[2]]).await;
    assert_nothing_lost(&root, &expected).await;
    assert_audit_verifies(&root).await;
}

/// A Vault-style answer (no envelope): 200 and its body.
#[track_caller]
fn ok_data_vault(what: &str, (st, body): (reqwest::StatusCode, Value)) -> Value {
    assert_eq!(st, 200, "{what}: {body}");
    body
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

/// Start a rekey to `n` shares / threshold `t` with verification and hand
/// in `current` (a quorum of the shares in effect); returns the new shares
/// and the verification nonce.
async fn rekey_start(root: &Http, current: &[&str], (n, t): (usize, usize)) -> (Vec<String>, String) {
    let _ = root.delete("/v1/sys/rekey/init").await;
    let b = ok_data_vault(
        "rekey init",
        root.put(
            "/v1/sys/rekey/init",
            json!({"secret_shares": n, "secret_threshold": t, "require_verification": true}),
        )
        .await,
    );
    let nonce = b["nonce"].as_str().expect("nonce").to_owned();
    let mut last = Value::Null;
    for s in current {
        last = ok_data_vault(
            "rekey update",
            root.put("/v1/sys/rekey/update", json!({"key": s, "nonce": nonce}))
                .await,
        );
    }
    assert_eq!(last["complete"], true, "{last}");
    let new = strings(&last["keys"]);
    for s in &new {
        remember_secret(s);
    }
    (new, last["verification_nonce"].as_str().expect("vnonce").to_owned())
}

/// Threshold of a share set of this test (3 shares: 2, 4 shares: 3).
fn threshold_of(shares: &[String]) -> usize {
    if shares.len() == 4 { 3 } else { 2 }
}

fn quorum(shares: &[String]) -> Vec<&str> {
    shares[..threshold_of(shares)].iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_rekey_keeps_one_working_share_set_and_a_rerun_completes() {
    let dir = tempdir();
    let (mut server, mut root, keys, _) = booted(dir.path(), "").await;
    let token = root.token().to_owned();
    let expected = populate(&root, 200).await;
    let mut outcomes = Vec::new();
    let mut in_effect: Vec<String> = keys.clone();
    // Verification on: the new shares take effect (one compare-and-swap of
    // the keyring row) only when the K'-th new share is verified. Killed
    // around that request, exactly one share set works afterwards.
    // One uninterrupted rekey (3/2 → 4/3) gives the length of the sweep.
    let (new, vnonce) = rekey_start(&root, &quorum(&in_effect), (4, 3)).await;
    for s in &new[..2] {
        ok_data_vault(
            "verify",
            root.put("/v1/sys/rekey/verify", json!({"key": s, "nonce": vnonce}))
                .await,
        );
    }
    let started = Instant::now();
    let done = ok_data_vault(
        "verify",
        root.put("/v1/sys/rekey/verify", json!({"key": new[2], "nonce": vnonce}))
            .await,
    );
    assert_eq!(done["complete"], true, "{done}");
    let delays = sweep(started.elapsed());
    in_effect = new;
    for d in &delays {
        let target = if in_effect.len() == 3 { (4, 3) } else { (3, 2) };
        let (new, vnonce) = rekey_start(&root, &quorum(&in_effect), target).await;
        let new_t = threshold_of(&new);
        for s in &new[..new_t - 1] {
            ok_data_vault(
                "verify",
                root.put("/v1/sys/rekey/verify", json!({"key": s, "nonce": vnonce}))
                    .await,
            );
        }
        let req = fire(
            &server.base,
            &token,
            "PUT",
            "/v1/sys/rekey/verify",
            json!({"key": new[new_t - 1], "nonce": vnonce}),
        )
        .await;
        let answered = kill_after(&mut server, req, *d).await;
        server.restart_hard();
        let anon = server.client(None);
        let (_, status) = anon.get("/v1/sys/seal-status").await;
        let n = status["n"].as_u64().unwrap_or(0) as usize;
        let switched = n == new.len();
        assert!(n == in_effect.len() || switched, "{status}");
        if answered == Some(200) {
            assert!(switched, "verified (200) but the old shares are still in effect");
        }
        if switched {
            in_effect = new;
        }
        // The last K shares of the set in effect (other custodians than the
        // ones who took part) unseal.
        let t = threshold_of(&in_effect);
        let shares: Vec<&str> = in_effect[in_effect.len() - t..].iter().map(String::as_str).collect();
        let st = unseal(&anon, &shares).await;
        assert_eq!(st["sealed"], false, "the share set in effect unseals: {st}");
        root = server.client(Some(&token));
        outcomes.push(switched);
        assert_nothing_lost(&root, &expected).await;
    }
    assert_spanned("rekey (verification of the last new share)", &delays, &outcomes);

    // Killed in the update phase (some current shares handed in): the
    // ceremony lived in memory only and is gone; the old shares work.
    let _ = root.delete("/v1/sys/rekey/init").await;
    let b = ok_data_vault(
        "rekey init",
        root.put("/v1/sys/rekey/init", json!({"secret_shares": 5, "secret_threshold": 3}))
            .await,
    );
    let nonce = b["nonce"].as_str().expect("nonce").to_owned();
    ok_data_vault(
        "rekey update",
        root.put("/v1/sys/rekey/update", json!({"key": in_effect[0], "nonce": nonce}))
            .await,
    );
    server.kill9();
    root = restart(&mut server, &token, &quorum(&in_effect)).await;
    let b = ok_data_vault("rekey status", root.get("/v1/sys/rekey/init").await);
    assert_eq!(b["started"], false, "the killed ceremony is gone: {b}");
    // The rerun completes.
    let target = if in_effect.len() == 3 { (4, 3) } else { (3, 2) };
    let (new, vnonce) = rekey_start(&root, &quorum(&in_effect), target).await;
    let mut last = Value::Null;
    for s in &new[..threshold_of(&new)] {
        last = ok_data_vault(
            "verify",
            root.put("/v1/sys/rekey/verify", json!({"key": s, "nonce": vnonce}))
                .await,
        );
    }
    assert_eq!(last["complete"], true, "{last}");
    server.kill9();
    let t = threshold_of(&new);
    let shares: Vec<&str> = new[new.len() - t..].iter().map(String::as_str).collect();
    root = restart(&mut server, &token, &shares).await;
    assert_nothing_lost(&root, &expected).await;
    assert_audit_verifies(&root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_restore_leaves_the_target_empty_and_a_rerun_restores_everything() {
    let dir = tempdir();
    let (server, root, keys, _) = booted(dir.path(), "").await;
    let token = root.token().to_owned();
    let expected = populate(&root, 3000).await;
    let file = dir.path().join("coffer.backup");
    let f = file.to_str().expect("utf-8 path");
    finish("backup", coffer(&server, &token, &["operator", "backup", "-o", f], ""));
    drop(server);

    let target_dir = tempdir();
    let target = fresh_storage_url(target_dir.path()).await;
    let shares = format!("{}\n{}\n", keys[0], keys[1]);
    let restore = ["operator", "restore", f, "--storage", &target];
    // The restore is one transaction that reports each table as it goes:
    // killed once the first table is written and before the last one.
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(restore)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run restore");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(shares.as_bytes())
        .expect("shares");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    child.kill().expect("kill -9 the restore");
    let _ = child.wait();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(first.starts_with("keyring"), "the first table was written: {first:?}");
    assert!(
        !rest.iter().any(|l| l.starts_with("Restored")),
        "the restore finished before it could be killed: {rest:?}"
    );
    eprintln!(
        "restore killed after {} of the backup's tables were reported",
        1 + rest.len()
    );

    // The rerun into the same store finds it empty and completes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(restore)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run restore");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(shares.as_bytes())
        .expect("shares");
    let out = finish("restore rerun", child);
    assert!(out.contains("Restored"), "{out}");

    let server = Server::start(target_dir.path(), &target);
    let status = unseal(&server.client(None), &[&keys[1], &keys[2]]).await;
    assert_eq!(status["sealed"], false, "{status}");
    let root = server.client(Some(&token));
    assert_nothing_lost(&root, &expected).await;
    assert_audit_verifies(&root).await;
}

async fn audit_report(root: &Http) -> Value {
    let r = ok_data("audit verify", root.get("/api/v1/audit/verify").await);
    assert_eq!(r["ok"], true, "the audit chain does not verify: {r}");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_audit_prune_is_all_or_nothing_and_a_rerun_completes() {
    let dir = tempdir();
    let (mut server, mut root, keys, _) = booted(dir.path(), "[audit]\nretention_days = 0\n").await;
    let token = root.token().to_owned();
    let expected = populate(&root, 200).await;
    let mut outcomes = Vec::new();
    let mut delays: Vec<Duration> = Vec::new();
    // The first prune runs uninterrupted and gives the length of the sweep.
    for i in 0..=sweep(Duration::ZERO).len() {
        // About 200 records to delete in each prune.
        let mut reads = tokio::task::JoinSet::new();
        for w in 0..4 {
            let http = root.clone();
            reads.spawn(async move {
                for i in 0..50 {
                    let (st, b) = http.get(&format!("{ENV}/secrets/S{}", w * 50 + i)).await;
                    assert_eq!(st, 200, "{b}");
                }
            });
        }
        while let Some(r) = reads.join_next().await {
            r.expect("reader");
        }
        let before = audit_report(&root).await;
        let last = before["last_seq"].as_i64().expect("last_seq");
        let through = last - 5;
        if i == 0 {
            let started = Instant::now();
            ok_data(
                "prune",
                root.post("/api/v1/audit/prune", json!({"through_seq": through})).await,
            );
            delays = sweep(started.elapsed());
            continue;
        }
        let d = delays[i - 1];
        let req = fire(
            &server.base,
            &token,
            "POST",
            "/api/v1/audit/prune",
            json!({"through_seq": through}),
        )
        .await;
        let answered = kill_after(&mut server, req, d).await;
        root = restart(&mut server, &token, &[&keys[0], &keys[1]]).await;
        let after = audit_report(&root).await;
        let pruned = after["pruned_through"] == json!(through);
        if pruned {
            // The checkpoint and the deletion together.
            assert_eq!(after["first_seq"], json!(through + 1), "{after}");
        } else {
            assert_eq!(after["pruned_through"], before["pruned_through"], "{after}");
            assert_eq!(after["first_seq"], before["first_seq"], "nothing deleted: {after}");
            assert_eq!(answered, None, "answered but not pruned");
        }
        outcomes.push(pruned);
        assert_nothing_lost(&root, &expected).await;
    }
    assert_spanned("audit prune", &delays, &outcomes);
    // The rerun completes.
    let r = audit_report(&root).await;
    let through = r["last_seq"].as_i64().expect("last_seq") - 1;
    let done = ok_data(
        "prune rerun",
        root.post("/api/v1/audit/prune", json!({"through_seq": through})).await,
    );
    assert_eq!(done["through_seq"], json!(through), "{done}");
    let r = audit_report(&root).await;
    assert_eq!(r["pruned_through"], json!(through), "{r}");
}
