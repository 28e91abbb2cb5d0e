//! `coffer operator backup|restore`: a SQLite install moves to the store of
//! this run (PostgreSQL under `COFFER_TEST_STORAGE=postgres`), unseals with
//! its original shares, and keeps every secret and its history; a modified
//! file and a non-empty target are refused without writing anything.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::util::{self, ENV, Server};

fn coffer(args: &[&str], envs: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.args(args)
        .env_remove("COFFER_TOKEN")
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run coffer");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Everything a client can see of the secrets: metadata, current values
/// and the full history of each.
async fn dump(http: &util::Http) -> Value {
    let (st, list) = http.get(&format!("{ENV}/secrets")).await;
    assert_eq!(st, 200, "{list}");
    let mut out = serde_json::Map::new();
    for s in list["data"].as_array().expect("secret list") {
        let key = s["key"].as_str().expect("key");
        let (_, value) = http.get(&format!("{ENV}/secrets/{key}?reveal=true")).await;
        let (_, hist) = http.get(&format!("{ENV}/secrets/{key}/history")).await;
        out.insert(key.to_owned(), json!({ "meta": s, "value": value, "history": hist }));
    }
    Value::Object(out)
}

#[tokio::test]
async fn sqlite_backup_restores_into_an_empty_store_and_unseals_with_the_same_shares() {
    let dir = util::tempdir();
    let src_url = format!("sqlite://{}", dir.path().join("source.db").display());
    let source = Server::start(dir.path(), &src_url);
    let anon = source.client(None);
    let (shares, _, token) = util::init(&anon, 3, 2).await;
    util::unseal(&anon, &[&shares[0], &shares[1]]).await;
    let root = anon.with_token(&token);
    util::tenant(&root).await;
    // Plaintexts carry ':' (never in base64 or in the file's JSON names).
    for (k, v) in [
        ("DB_URL", "PLAIN:postgres"),
        ("API_KEY", "PLAIN:k1"),
        ("GONE", "PLAIN:x"),
    ] {
        util::write_secret(&root, ENV, k, v).await;
    }
    util::write_secret(&root, ENV, "API_KEY", "PLAIN:k2").await;
    util::write_secret(&root, ENV, "API_KEY", "PLAIN:k3").await;
    assert_eq!(root.delete(&format!("{ENV}/secrets/GONE")).await.0, 200);
    let before = dump(&root).await;
    assert_eq!(
        before["API_KEY"]["history"]["data"].as_array().map(Vec::len),
        Some(3),
        "{before}"
    );

    // Backup through the API with the root token; progress per table.
    let file = dir.path().join("coffer.backup");
    let file_s = file.to_str().unwrap();
    let out = coffer(
        &["operator", "backup", "-o", file_s],
        &[("COFFER_ADDR", &source.base), ("COFFER_TOKEN", &token)],
        "",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("secret_versions"), "{}", text(&out));
    let bytes = std::fs::read(&file).unwrap();
    let body = String::from_utf8(bytes.clone()).unwrap();
    assert!(!body.contains("PLAIN:"), "values stay encrypted");
    drop(source);

    // The two shares on stdin (threshold 2).
    let stdin = format!("{}\n{}\n", shares[0], shares[2]);

    // A modified file is refused and writes nothing: flip one character of
    // a ciphertext row.
    let tdir = util::tempdir();
    let target = util::fresh_storage_url(tdir.path()).await;
    let mut lines: Vec<String> = body.lines().map(str::to_owned).collect();
    let line = lines
        .iter()
        .position(|l| l.contains("\"t\":\"secret_versions\""))
        .expect("a secret_versions row");
    let mut row: Value = serde_json::from_str(&lines[line]).unwrap();
    let ct = row["r"][5].as_str().unwrap().to_owned();
    let flipped = if ct.starts_with('A') { "B" } else { "A" };
    row["r"][5] = json!(format!("{flipped}{}", &ct[1..]));
    lines[line] = row.to_string();
    let bad = dir.path().join("modified.backup");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let out = coffer(
        &["operator", "restore", bad.to_str().unwrap(), "--storage", &target],
        &[],
        &stdin,
    );
    assert!(!out.status.success(), "a modified backup must be refused");
    assert!(text(&out).contains("was modified"), "{}", text(&out));

    // A truncated file (a row line dropped) and an unknown format version
    // are refused with errors naming the problem.
    let mut cut: Vec<&str> = body.lines().collect();
    cut.remove(line);
    let cut_file = dir.path().join("cut.backup");
    std::fs::write(&cut_file, cut.join("\n") + "\n").unwrap();
    let out = coffer(
        &["operator", "restore", cut_file.to_str().unwrap(), "--storage", &target],
        &[],
        &stdin,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("header says"), "{}", text(&out));
    let v2 = body.replacen("\"version\":1", "\"version\":2", 1);
    let v2_file = dir.path().join("v2.backup");
    std::fs::write(&v2_file, v2).unwrap();
    let out = coffer(
        &["operator", "restore", v2_file.to_str().unwrap(), "--storage", &target],
        &[],
        &stdin,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("format version 2 is not supported"),
        "{}",
        text(&out)
    );

    // Wrong shares (another root) are refused too.
    let out = coffer(
        &["operator", "restore", file_s, "--storage", &target],
        &[],
        &format!("{}\n{}\n", shares[0], shares[0]),
    );
    assert!(!out.status.success(), "duplicate shares must not verify");

    // The real file restores into the (still empty) target.
    let out = coffer(&["operator", "restore", file_s, "--storage", &target], &[], &stdin);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("secret_versions") && text(&out).contains("Restored"),
        "{}",
        text(&out)
    );

    // Now the target is not empty: a second restore is refused.
    let out = coffer(&["operator", "restore", file_s, "--storage", &target], &[], &stdin);
    assert!(!out.status.success());
    assert!(text(&out).contains("not empty"), "{}", text(&out));

    // A server on the target unseals with the original shares and shows
    // every secret, value and history as before.
    let restored = Server::start(tdir.path(), &target);
    let anon = restored.client(None);
    let (st, sealed) = anon.get("/v1/sys/seal-status").await;
    assert_eq!((st.as_u16(), sealed["sealed"].clone()), (200, json!(true)), "{sealed}");
    let status = util::unseal(&anon, &[&shares[1], &shares[2]]).await;
    assert_eq!(status["sealed"], false, "{status}");
    let root2 = anon.with_token(&token);
    assert_eq!(dump(&root2).await, before);
    // Old versions decrypt too: roll API_KEY back to v1.
    let (st, b) = root2
        .post(&format!("{ENV}/secrets/API_KEY/rollback"), json!({"version": 1}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (_, v) = root2.get(&format!("{ENV}/secrets/API_KEY?reveal=true")).await;
    assert_eq!(v["data"]["value"], "PLAIN:k1", "{v}");
}

#[tokio::test]
async fn backup_needs_the_root_token() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start(dir.path(), &url);
    let (root, _) = util::boot(&server.client(None)).await;
    util::tenant(&root).await;
    let (st, _) = server.client(None).get("/v1/sys/backup").await;
    assert!(st == 401 || st == 403, "anonymous backup: {st}");
    let (st, b) = root.get("/v1/sys/backup").await;
    assert_eq!(st, 200);
    let file = b["file"].as_str().unwrap();
    assert!(file.lines().next().unwrap().contains("\"coffer-backup\""), "{file}");
    assert!(file.lines().last().unwrap().contains("hmac_sha256"), "{file}");
    // Tenant rows are read too (on PostgreSQL through row-level security).
    for t in ["kms_keys", "projects", "environments"] {
        assert!(file.contains(&format!("\"t\":\"{t}\"")), "{t} rows in {file}");
    }
}

/// `BACKUP_TABLES` names every table and column of the schema (a table or
/// column added by a migration but not to the list would silently be lost).
#[tokio::test]
async fn backup_table_list_covers_the_whole_schema() {
    use sqlx::{Connection, Row};
    let dir = util::tempdir();
    let url = format!("sqlite://{}", dir.path().join("schema.db").display());
    drop(Server::start(dir.path(), &url));
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("name"))
    .collect();
    let mut listed: Vec<&str> = coffer::storage::backup::BACKUP_TABLES.iter().map(|t| t.name).collect();
    listed.sort_unstable();
    assert_eq!(tables, listed, "tables of the schema vs BACKUP_TABLES");
    for t in coffer::storage::backup::BACKUP_TABLES {
        let mut cols: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{}') ORDER BY name",
            t.name
        )))
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("name"))
        .collect();
        cols.sort();
        let mut want: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
        want.sort_unstable();
        assert_eq!(cols, want, "columns of {}", t.name);
    }
}
