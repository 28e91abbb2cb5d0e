//! Tampering with stored rows: a flipped byte in a ciphertext or a wrapped
//! DEK, or one secret's blobs copied onto another's row, must fail loudly
//! with the secret and version named, never return garbage.

use serde_json::json;
use sqlx::Row;

use crate::util::{self, ENV, Http, Server};

async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.expect("connect to the test storage")
}

/// (version row id, ciphertext, wrapped DEK) of the current version of `key`.
async fn blobs(db: &sqlx::AnyPool, key: &str) -> (String, Vec<u8>, Vec<u8>) {
    let row = sqlx::query(
        "SELECT v.id, v.ciphertext, v.wrapped_dek FROM secrets s \
         JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version WHERE s.key = $1",
    )
    .bind(key.to_owned())
    .fetch_one(db)
    .await
    .expect("version row");
    (row.get("id"), row.get("ciphertext"), row.get("wrapped_dek"))
}

async fn set_blobs(db: &sqlx::AnyPool, id: &str, ciphertext: &[u8], wrapped_dek: &[u8]) {
    sqlx::query("UPDATE secret_versions SET ciphertext = $1, wrapped_dek = $2 WHERE id = $3")
        .bind(ciphertext.to_vec())
        .bind(wrapped_dek.to_vec())
        .bind(id.to_owned())
        .execute(db)
        .await
        .expect("tamper");
}

async fn assert_decryption_fails(http: &Http, key: &str, version: i64) {
    let (st, body) = http.get(&format!("{ENV}/secrets/{key}?reveal=true")).await;
    assert_eq!(
        (st.as_u16(), body["code"].as_str()),
        (500, Some("decryption_failed")),
        "{key}: {body}"
    );
    assert_eq!(
        body["message"].as_str(),
        Some(format!("decryption failed for secret {key} version {version}").as_str())
    );
    assert!(body["data"].is_null(), "no value may come back: {body}");
    // Inject of the environment fails the same way rather than skipping the value.
    let (st, body) = http.post(&format!("{ENV}/inject"), json!({})).await;
    assert_eq!(st, 500, "{body}");
}

#[tokio::test]
async fn tampered_rows_fail_to_decrypt_and_name_the_secret() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start(dir.path(), &url);
    let anon = server.client(None);
    let (hex, _, root) = util::init(&anon, 1, 1).await;
    util::unseal(&anon, &[&hex[0]]).await;
    let http = anon.with_token(&root);
    util::tenant(&http).await;
    for (key, value) in [("A", "value of a"), ("B", "value of b"), ("C", "value of c")] {
        assert_eq!(
            http.post(&format!("{ENV}/secrets/{key}"), json!({ "value": value }))
                .await
                .0,
            200
        );
    }
    let db = pool(&url).await;

    // One flipped byte in a value ciphertext.
    let (a_id, a_ct, a_dek) = blobs(&db, "A").await;
    let mut bad = a_ct.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    set_blobs(&db, &a_id, &bad, &a_dek).await;
    assert_decryption_fails(&http, "A", 1).await;
    set_blobs(&db, &a_id, &a_ct, &a_dek).await;
    let (_, ok) = http.get(&format!("{ENV}/secrets/A?reveal=true")).await;
    assert_eq!(ok["data"]["value"], "value of a", "restored bytes decrypt again");

    // One flipped byte in a wrapped DEK.
    let (b_id, b_ct, b_dek) = blobs(&db, "B").await;
    let mut bad = b_dek.clone();
    bad[20] ^= 0x80;
    set_blobs(&db, &b_id, &b_ct, &bad).await;
    assert_decryption_fails(&http, "B", 1).await;
    set_blobs(&db, &b_id, &b_ct, &b_dek).await;

    // A's ciphertext and wrapped DEK copied onto C's row: both are intact
    // blobs, but bound to A's row, so C does not decrypt (to A's value or any).
    let (c_id, _, _) = blobs(&db, "C").await;
    set_blobs(&db, &c_id, &a_ct, &a_dek).await;
    assert_decryption_fails(&http, "C", 1).await;
    // A itself is untouched.
    let (_, ok) = http.get(&format!("{ENV}/secrets/A?reveal=true")).await;
    assert_eq!(ok["data"]["value"], "value of a");
}
