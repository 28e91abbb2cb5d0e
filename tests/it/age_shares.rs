//! Shares encrypted to custodians' age X25519 recipients (Vault's
//! `pgp_keys` field): each custodian opens only their own share, the CLI
//! decrypts locally, and no plaintext share is logged or stored.

use std::io::Write;
use std::process::{Command, Stdio};

use age::secrecy::ExposeSecret;
use base64::Engine;
use serde_json::{Value, json};
use sqlx::Row;

use crate::util::{self, Http, Server};

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn open(id: &age::x25519::Identity, b64: &str) -> Option<String> {
    let ct = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    age::decrypt(id, &ct).ok().map(|p| String::from_utf8(p).unwrap())
}

/// `coffer operator unseal --identity FILE` with the encrypted share on stdin.
fn cli_unseal(server: &Server, identity: &std::path::Path, encrypted: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["operator", "unseal", "--identity"])
        .arg(identity)
        .env("COFFER_ADDR", &server.base)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{encrypted}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Every byte the storage holds (SQLite files, or the PostgreSQL rows of
/// the tables init writes).
async fn stored_bytes(url: &str, dir: &std::path::Path) -> Vec<u8> {
    if util::storage_kind() == "sqlite" {
        let mut all = Vec::new();
        for f in ["coffer.db", "coffer.db-wal"] {
            all.extend(std::fs::read(dir.join(f)).unwrap_or_default());
        }
        return all;
    }
    let db = crate::keys::pool(url).await;
    let mut all = Vec::new();
    for r in sqlx::query("SELECT encrypted_root, verify_tag FROM keyring")
        .fetch_all(&db)
        .await
        .unwrap()
    {
        all.extend(r.get::<Vec<u8>, _>("encrypted_root"));
        all.extend(r.get::<Vec<u8>, _>("verify_tag"));
    }
    for r in sqlx::query("SELECT token_hash, accessor FROM tokens")
        .fetch_all(&db)
        .await
        .unwrap()
    {
        all.extend(r.get::<Vec<u8>, _>("token_hash"));
        all.extend(r.get::<String, _>("accessor").into_bytes());
    }
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn age_encrypted_init_each_custodian_opens_only_their_share() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start(dir.path(), &url);
    let anon = server.client(None);
    let ids: Vec<age::x25519::Identity> = (0..3).map(|_| age::x25519::Identity::generate()).collect();
    let mut keys: Vec<String> = ids.iter().map(|i| i.to_public().to_string()).collect();
    // What the Vault/OpenBao CLI sends for `-pgp-keys=FILE`: the file, base64.
    keys[1] = base64::engine::general_purpose::STANDARD.encode(format!("# custodian 2\n{}\n", keys[1]));

    // Wrong count or a non-age key: refused, and nothing was initialized.
    let (st, b) = anon
        .put(
            "/v1/sys/init",
            json!({"secret_shares": 3, "secret_threshold": 2, "pgp_keys": keys[..2]}),
        )
        .await;
    assert_eq!(st, 400, "{b}");
    let (st, b) = anon
        .put(
            "/v1/sys/init",
            json!({"secret_shares": 3, "secret_threshold": 2, "pgp_keys": [keys[0], "mQENBGPGP", keys[2]]}),
        )
        .await;
    assert_eq!(st, 400);
    assert!(b["errors"][0].as_str().unwrap().contains("pgp_keys[1]"), "{b}");
    assert_eq!(anon.get("/v1/sys/init").await.1["initialized"], false);

    let (st, b) = anon
        .put(
            "/v1/sys/init",
            json!({"secret_shares": 3, "secret_threshold": 2, "pgp_keys": keys}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let enc_b64 = strings(&b["keys_base64"]);
    let enc_hex = strings(&b["keys"]);
    let root = b["root_token"].as_str().unwrap().to_owned();
    let mut plain = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let share = open(id, &enc_b64[i]).unwrap_or_else(|| panic!("custodian {i} opens share {i}"));
        for (j, other) in enc_b64.iter().enumerate() {
            if j != i {
                assert!(open(id, other).is_none(), "custodian {i} must not open share {j}");
            }
        }
        assert!(!enc_hex[i].contains(&share), "the answer carries no plaintext share");
        plain.push(share);
    }

    // Custodians unseal with the CLI, decrypting locally.
    let id_files: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let p = dir.path().join(format!("custodian{i}.age"));
            std::fs::write(&p, format!("# created: test\n{}\n", id.to_string().expose_secret())).unwrap();
            p
        })
        .collect();
    let out = cli_unseal(&server, &id_files[0], &enc_b64[2]);
    assert!(!out.status.success(), "someone else's share does not open");
    let out = cli_unseal(&server, &id_files[0], &enc_hex[0]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli_unseal(&server, &id_files[2], &enc_b64[2]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Sealed        false"));
    let http: Http = anon.with_token(&root);
    util::tenant(&http).await;

    // Rekey with recipients: the new shares come back encrypted too.
    let (_, b) = http
        .put(
            "/v1/sys/rekey/init",
            json!({"secret_shares": 3, "secret_threshold": 2, "pgp_keys": keys}),
        )
        .await;
    let nonce = b["nonce"].as_str().unwrap().to_owned();
    http.put("/v1/sys/rekey/update", json!({"key": plain[0], "nonce": nonce}))
        .await;
    let (st, b) = http
        .put("/v1/sys/rekey/update", json!({"key": plain[1], "nonce": nonce}))
        .await;
    assert_eq!((st.as_u16(), &b["complete"]), (200, &json!(true)), "{b}");
    let rekeyed = strings(&b["keys_base64"]);
    let new1 = open(&ids[1], &rekeyed[1]).expect("custodian 1 opens the new share 1");
    assert!(open(&ids[0], &rekeyed[1]).is_none());

    // Nothing in the log or the storage holds a plaintext share.
    let log = server.log_text();
    let stored = stored_bytes(&url, dir.path()).await;
    for share in plain.iter().chain([&new1]) {
        assert!(!log.contains(share.as_str()), "share in the log");
        let raw = hex::decode(share).unwrap();
        assert!(
            !contains(&stored, share.as_bytes()) && !contains(&stored, &raw),
            "share in storage"
        );
    }
}
