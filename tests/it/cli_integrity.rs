//! Request integrity (src/http/integrity.rs) against the real server: a
//! signed request whose body was altered, or whose timestamp is stale, is
//! refused before any handler runs; an intact one passes; an unsigned one
//! (Vault clients) is still accepted.

use serde_json::{Value, json};

use crate::util::{self, ENV, Server};

async fn send_signed(
    base: &str,
    token: &str,
    path: &str,
    signed_body: &[u8],
    sent_body: &[u8],
    ts: i64,
) -> (u16, Value) {
    let ts = ts.to_string();
    let sig = coffer::http::integrity::sign(token, "PUT", path, &ts, signed_body);
    let res = reqwest::Client::new()
        .put(format!("{base}{path}"))
        .header("X-Vault-Token", token)
        .header("Content-Type", "application/json")
        .header("X-Coffer-Timestamp", &ts)
        .header("X-Coffer-Signature", sig)
        .body(sent_body.to_vec())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn value(http: &util::Http, path: &str) -> String {
    let data = util::ok_data("read", http.get(&format!("{path}?reveal=true")).await);
    data["value"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn tampered_or_stale_signed_requests_change_nothing() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (keys, _, root) = util::init(&anon, 3, 2).await;
    util::unseal(&anon, &[&keys[0], &keys[1]]).await;
    let http = server.client(Some(&root));
    util::tenant(&http).await;
    util::write_secret(&http, ENV, "DB_PASSWORD", "original").await;
    let path = format!("{ENV}/secrets/DB_PASSWORD");
    let now = i64::try_from(util::unix_now()).unwrap();

    // Signed over one body, another sent: refused, secret unchanged.
    let good = serde_json::to_vec(&json!({ "value": "intended" })).unwrap();
    let evil = serde_json::to_vec(&json!({ "value": "attacker" })).unwrap();
    let (st, body) = send_signed(&server.base, &root, &path, &good, &evil, now).await;
    assert_eq!(st, 401, "{body}");
    assert_eq!(body["code"], "request_signature_invalid", "{body}");
    assert_eq!(value(&http, &path).await, "original");

    // Correct signature, timestamp two minutes old: refused as stale.
    let (st, body) = send_signed(&server.base, &root, &path, &good, &good, now - 120).await;
    assert_eq!(st, 401, "{body}");
    assert_eq!(body["code"], "request_timestamp_stale", "{body}");
    assert_eq!(value(&http, &path).await, "original");

    // A signature keyed by another token does not pass either.
    let ts = now.to_string();
    let other = coffer::http::integrity::sign("cfr_not_the_token", "PUT", &path, &ts, &good);
    let res = reqwest::Client::new()
        .put(format!("{}{path}", server.base))
        .header("X-Vault-Token", &root)
        .header("Content-Type", "application/json")
        .header("X-Coffer-Timestamp", &ts)
        .header("X-Coffer-Signature", other)
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(value(&http, &path).await, "original");

    // Intact and fresh: accepted.
    let (st, body) = send_signed(&server.base, &root, &path, &good, &good, now).await;
    assert!(st < 300, "{st} {body}");
    assert_eq!(value(&http, &path).await, "intended");

    // Unsigned (what Vault clients send): accepted as before.
    util::write_secret(&http, ENV, "DB_PASSWORD", "unsigned").await;
    assert_eq!(value(&http, &path).await, "unsigned");

    // Each refusal is in the audit log, with its reason.
    let (st, records) = http.get("/api/v1/audit/records?outcome=denied&action=secret.").await;
    assert_eq!(st, 200, "{records}");
    let reasons: Vec<&str> = records["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "request_signature_invalid").count(),
        2,
        "{reasons:?}"
    );
    assert!(reasons.contains(&"request_timestamp_stale"), "{reasons:?}");
}
