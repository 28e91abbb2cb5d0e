//! `seal "pkcs11"` on SoftHSM2 with the real binary. Each test has its own
//! token directory and `SOFTHSM2_CONF`, passed to the processes it starts
//! only, so the tests are hermetic and run in parallel.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Row;

use crate::util::{self, ENV, Http, Server};

const TOKEN: &str = "coffer-test";
const KEY: &str = "coffer-root";
const PIN: &str = "1234-user";

fn module() -> String {
    let m = std::env::var("PKCS11_SOFTHSM2_MODULE").unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
    assert!(
        Path::new(&m).is_file(),
        "SoftHSM2 module not found at {m}: `apt-get install -y softhsm2` (or set PKCS11_SOFTHSM2_MODULE)"
    );
    m
}

/// A private SoftHSM2 with one initialized token.
pub(crate) struct SoftHsm {
    pub(crate) conf: PathBuf,
    pub(crate) tokens: PathBuf,
    pub(crate) pin_file: PathBuf,
}

impl SoftHsm {
    pub(crate) fn new(dir: &Path) -> SoftHsm {
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                TOKEN,
                "--pin",
                PIN,
                "--so-pin",
                "5678-so",
            ])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("softhsm2-util (apt-get install -y softhsm2)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let pin_file = dir.join("hsm-pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
        SoftHsm { conf, tokens, pin_file }
    }

    pub(crate) fn seal_section(&self) -> String {
        format!(
            "[seal]\ntype = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"{TOKEN}\"\nkey_label = \"{KEY}\"\npin_file = \"{}\"\n",
            module(),
            self.pin_file.display()
        )
    }

    pub(crate) fn env(&self) -> (&'static str, String) {
        ("SOFTHSM2_CONF", self.conf.display().to_string())
    }

    pub(crate) fn keygen(&self, config: &Path) -> Output {
        Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(["operator", "hsm-keygen", "--config"])
            .arg(config)
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .expect("run coffer")
    }
}

/// Start a pkcs11-mode server on fresh storage, with the key generated.
pub(crate) async fn pkcs11_server(dir: &Path, hsm: &SoftHsm) -> (Server, String) {
    let url = util::fresh_storage_url(dir).await;
    let (k, v) = hsm.env();
    let server = Server::start_full(dir, &url, "tls_disable = true", &hsm.seal_section(), &[(k, &v)]);
    let out = hsm.keygen(server.config_path());
    assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
    (server, url)
}

/// Poll seal-status until `pred` holds (or fail after 20 s).
pub(crate) async fn wait_status(http: &Http, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, b) = http.get("/v1/sys/seal-status").await;
        if pred(&b) {
            return b;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {b}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

async fn init_pkcs11(anon: &Http) -> (Vec<String>, String) {
    let (st, b) = anon
        .put("/v1/sys/init", json!({"recovery_shares": 5, "recovery_threshold": 3}))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["keys"], json!([]), "no unseal keys in pkcs11 mode: {b}");
    (
        strings(&b["recovery_keys"]),
        b["root_token"].as_str().unwrap().to_owned(),
    )
}

async fn reveal(http: &Http, key: &str) -> String {
    let (st, b) = http.get(&format!("{ENV}/secrets/{key}?reveal=true")).await;
    assert_eq!(st, 200, "{b}");
    b["data"]["value"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn pkcs11_init_restart_serves_without_any_share() {
    let dir = util::tempdir();
    let hsm = SoftHsm::new(dir.path());
    let (mut server, url) = pkcs11_server(dir.path(), &hsm).await;
    // The key exists now: a second keygen refuses to make another.
    let again = hsm.keygen(server.config_path());
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));

    let anon = server.client(None);
    let (_, st) = anon.get("/v1/sys/seal-status").await;
    assert_eq!(
        (&st["type"], &st["initialized"], &st["recovery_seal"]),
        (&json!("pkcs11"), &json!(false), &json!(true)),
        "{st}"
    );
    let (recovery, root) = init_pkcs11(&anon).await;
    assert_eq!(recovery.len(), 5);
    let (_, st) = anon.get("/v1/sys/seal-status").await;
    assert_eq!(
        (&st["sealed"], &st["t"], &st["n"]),
        (&json!(false), &json!(3), &json!(5)),
        "unsealed at init: {st}"
    );
    let http = anon.with_token(&root);
    util::tenant(&http).await;
    let (st, _) = http
        .post(&format!("{ENV}/secrets/DB"), json!({"value": "hsm-protected"}))
        .await;
    assert_eq!(st, 200);

    // The stored root blob is the HSM's, and no share is its key.
    let db = crate::keys::pool(&url).await;
    let row = sqlx::query("SELECT seal_type, encrypted_root, recovery_tag FROM keyring")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("seal_type"), "pkcs11");
    assert_eq!(row.get::<Vec<u8>, _>("encrypted_root")[0], 0x48);
    assert_eq!(row.get::<Vec<u8>, _>("recovery_tag").len(), 32);

    // Restart: serving again with no human share.
    let started = Instant::now();
    server.restart_hard();
    let anon = server.client(None);
    wait_status(&anon, "auto-unseal", |b| b["sealed"] == false).await;
    eprintln!("pkcs11 boot to unsealed: {:?}", started.elapsed());
    assert_eq!(reveal(&anon.with_token(&root), "DB").await, "hsm-protected");
    assert!(server.log_text().contains("unsealed through the HSM"));
    // Recovery shares do not unseal (they authorize; they decrypt nothing).
    assert_eq!(anon.with_token(&root).put("/v1/sys/seal", json!({})).await.0, 204);
    let (st, b) = anon.put("/v1/sys/unseal", json!({"key": recovery[0]})).await;
    assert_eq!(st, 400, "{b}");
    assert!(!server.log_text().contains(PIN), "the PIN never reaches the log");
}

#[tokio::test]
async fn pkcs11_wrong_pin_or_missing_token_stays_sealed_with_reason_then_recovers() {
    let dir = util::tempdir();
    let hsm = SoftHsm::new(dir.path());
    let (mut server, _) = pkcs11_server(dir.path(), &hsm).await;
    let anon = server.client(None);
    let (_, root) = init_pkcs11(&anon).await;
    let http = anon.with_token(&root);
    util::tenant(&http).await;
    http.post(&format!("{ENV}/secrets/A"), json!({"value": "a"})).await;

    // Wrong PIN: sealed, and seal-status, health and the log say why.
    std::fs::write(&hsm.pin_file, "0000-wrong\n").unwrap();
    server.restart_hard();
    let anon = server.client(None);
    let st = wait_status(&anon, "a PIN failure reason", |b| {
        b["sealed_reason"].as_str().is_some_and(|r| r.contains("PIN"))
    })
    .await;
    assert_eq!(st["sealed"], true);
    let (code, health) = anon.get("/v1/sys/health").await;
    assert_eq!(code, 503);
    assert!(
        health["sealed_reason"].as_str().unwrap().contains("refused the PIN"),
        "{health}"
    );
    assert_eq!(anon.with_token(&root).get("/api/v1/orgs").await.0, 503);
    // The dashboard's unseal page gives the reason, and no share field.
    let (code, page) = anon.get("/ui/unseal").await;
    let page = page.as_str().unwrap_or_default();
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("refused the PIN"), "{page}");
    assert!(
        !page.contains("action=\"/ui/unseal\""),
        "no share form in HSM mode: {page}"
    );
    assert!(server.log_text().contains("HSM auto-unseal failed"));
    assert!(
        !server.log_text().contains("0000-wrong"),
        "the PIN never reaches the log"
    );
    // Fixed: the retry loop unseals without a restart.
    std::fs::write(&hsm.pin_file, format!("{PIN}\n")).unwrap();
    wait_status(&anon, "recovery after the PIN fix", |b| b["sealed"] == false).await;
    assert_eq!(reveal(&anon.with_token(&root), "A").await, "a");

    // Token removed: sealed with that reason; put back: recovers.
    let away = dir.path().join("tokens-away");
    std::fs::rename(&hsm.tokens, &away).unwrap();
    std::fs::create_dir(&hsm.tokens).unwrap();
    server.restart_hard();
    let anon = server.client(None);
    wait_status(&anon, "a missing-token reason", |b| {
        b["sealed_reason"]
            .as_str()
            .is_some_and(|r| r.contains("no token labelled"))
    })
    .await;
    std::fs::remove_dir(&hsm.tokens).unwrap();
    std::fs::rename(&away, &hsm.tokens).unwrap();
    wait_status(&anon, "recovery after the token is back", |b| b["sealed"] == false).await;
    assert_eq!(reveal(&anon.with_token(&root), "A").await, "a");
}

#[tokio::test]
async fn pkcs11_recovery_shares_rekey_and_root_rotates_through_the_hsm() {
    let dir = util::tempdir();
    let hsm = SoftHsm::new(dir.path());
    let (mut server, _) = pkcs11_server(dir.path(), &hsm).await;
    let anon = server.client(None);
    let (recovery, root) = init_pkcs11(&anon).await;
    let http = anon.with_token(&root);
    util::tenant(&http).await;
    http.post(&format!("{ENV}/secrets/R"), json!({"value": "r"})).await;

    // Rekey the recovery shares 3/5 -> 2/3 (Vault's sys/rekey-recovery-key).
    let (st, b) = http
        .put(
            "/v1/sys/rekey-recovery-key/init",
            json!({"secret_shares": 3, "secret_threshold": 2}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let nonce = b["nonce"].as_str().unwrap().to_owned();
    let mut last = Value::Null;
    for s in &recovery[1..4] {
        let (st, b) = http
            .put("/v1/sys/rekey-recovery-key/update", json!({"key": s, "nonce": nonce}))
            .await;
        assert_eq!(st, 200, "{b}");
        last = b;
    }
    assert_eq!(last["complete"], true, "{last}");
    let new = strings(&last["keys"]);
    assert_eq!(new.len(), 3);
    let (_, st) = anon.get("/v1/sys/seal-status").await;
    assert_eq!((&st["t"], &st["n"]), (&json!(2), &json!(3)), "{st}");

    // The old recovery set no longer authorizes a rekey; the new one does.
    let (_, b) = http
        .put("/v1/sys/rekey/init", json!({"secret_shares": 3, "secret_threshold": 2}))
        .await;
    let nonce = b["nonce"].as_str().unwrap().to_owned();
    let (st, _) = http
        .put("/v1/sys/rekey/update", json!({"key": recovery[1], "nonce": nonce}))
        .await;
    assert_eq!(st, 200);
    let (st, b) = http
        .put("/v1/sys/rekey/update", json!({"key": recovery[2], "nonce": nonce}))
        .await;
    assert_eq!(st, 400, "old recovery shares refused: {b}");
    let (st, _) = http
        .put("/v1/sys/rekey/update", json!({"key": new[0], "nonce": nonce}))
        .await;
    assert_eq!(st, 200);
    let (st, b) = http
        .put("/v1/sys/rekey/update", json!({"key": new[2], "nonce": nonce}))
        .await;
    assert_eq!((st.as_u16(), &b["complete"]), (200, &json!(true)), "{b}");

    // Root rotation needs no share in pkcs11 mode: the HSM wraps the new root.
    let (st, b) = http.put("/v1/sys/rotate-root", json!({})).await;
    assert_eq!((st.as_u16(), &b["keks_rewrapped"]), (200, &json!(1)), "{b}");
    server.restart_hard();
    let anon = server.client(None);
    wait_status(&anon, "auto-unseal after root rotation", |b| b["sealed"] == false).await;
    assert_eq!(reveal(&anon.with_token(&root), "R").await, "r");
}

/// Rewrite the `[seal]` section of a running test server's config.
fn set_seal_section(server: &Server, section: &str) {
    let path = server.config_path();
    let text = std::fs::read_to_string(path).unwrap();
    let base = text.split("[seal]").next().unwrap().to_owned();
    std::fs::write(path, format!("{base}{section}")).unwrap();
}

#[tokio::test]
async fn seal_migrates_shamir_to_pkcs11_and_back_with_the_quorum() {
    let dir = util::tempdir();
    let hsm = SoftHsm::new(dir.path());
    let url = util::fresh_storage_url(dir.path()).await;
    let (k, v) = hsm.env();
    // A shamir server first (no [seal] section).
    let mut server = Server::start_full(dir.path(), &url, "tls_disable = true", "", &[(k, &v)]);
    let anon = server.client(None);
    let (shares, _, root) = util::init(&anon, 3, 2).await;
    util::unseal(&anon, &[&shares[0], &shares[1]]).await;
    let http = anon.with_token(&root);
    util::tenant(&http).await;
    http.post(&format!("{ENV}/secrets/M"), json!({"value": "moved"})).await;

    // Config now says pkcs11: sealed, migration pending, plain unseal refused.
    set_seal_section(&server, &hsm.seal_section());
    let out = hsm.keygen(server.config_path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.restart_hard();
    let anon = server.client(None);
    let st = wait_status(&anon, "migration pending", |b| b["migration"] == true).await;
    assert_eq!((&st["sealed"], &st["type"]), (&json!(true), &json!("shamir")), "{st}");
    let (code, b) = anon.put("/v1/sys/unseal", json!({"key": shares[2]})).await;
    assert_eq!(code, 400, "{b}");
    assert!(b["errors"][0].as_str().unwrap().contains("migrate=true"), "{b}");
    for s in &shares[1..3] {
        let (code, b) = anon.put("/v1/sys/unseal", json!({"key": s, "migrate": true})).await;
        assert_eq!(code, 200, "{b}");
    }
    let (_, st) = anon.get("/v1/sys/seal-status").await;
    assert_eq!(
        (&st["sealed"], &st["type"], &st["recovery_seal"], &st["migration"]),
        (&json!(false), &json!("pkcs11"), &json!(true), &json!(false)),
        "{st}"
    );
    assert_eq!(reveal(&anon.with_token(&root), "M").await, "moved");
    // Now the HSM unseals it at boot, with no share.
    server.restart_hard();
    let anon = server.client(None);
    wait_status(&anon, "auto-unseal after migration", |b| b["sealed"] == false).await;

    // Back to shamir: the HSM seal disabled, the same shares (now recovery shares) migrate.
    set_seal_section(&server, &format!("{}disabled = true\n", hsm.seal_section()));
    server.restart_hard();
    let anon = server.client(None);
    wait_status(&anon, "migration back pending", |b| b["migration"] == true).await;
    let (code, _) = anon
        .put("/v1/sys/unseal", json!({"key": shares[0], "migrate": true}))
        .await;
    assert_eq!(code, 200);
    let (code, b) = anon
        .put("/v1/sys/unseal", json!({"key": shares[2], "migrate": true}))
        .await;
    assert_eq!(
        (code.as_u16(), &b["type"], &b["sealed"]),
        (200, &json!("shamir"), &json!(false)),
        "{b}"
    );
    // Without any [seal] section, the shares unseal as before; the data is intact.
    set_seal_section(&server, "");
    server.restart_hard();
    let anon = server.client(None);
    let st = util::unseal(&anon, &[&shares[1], &shares[0]]).await;
    assert_eq!(st["sealed"], false, "{st}");
    assert_eq!(reveal(&anon.with_token(&root), "M").await, "moved");
}
