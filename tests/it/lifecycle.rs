//! The whole life of a server, on the real binary: boot sealed, init,
//! a ceremony with mistakes, secrets of every type with history, rollback,
//! soft delete and restore, seal, unseal with other shares, kill -9, restart.

use serde_json::{Value, json};

use crate::util::{self, ENV, Http, Server};

/// One value per type; each must come back byte for byte.
const TYPED: &[(&str, &str, &str)] = &[
    ("TEXT_VALUE", "text", "héllo wörld\nline two\t\"quoted\""),
    ("JSON_VALUE", "json", r#"{"a":[1,2,{"b":null}],"c":"d"}"#),
    ("YAML_VALUE", "yaml", "a: 1\nlist:\n  - x\n  - y\n"),
    ("BOOL_VALUE", "boolean", "true"),
    ("INT_VALUE", "integer", "-9007199254740993"),
    ("PASSWORD_VALUE", "password", "p@ss w0rd!$%^&*()"),
];

async fn reveal(http: &Http, key: &str) -> Value {
    let (st, body) = http.get(&format!("{ENV}/secrets/{key}?reveal=true")).await;
    assert_eq!(st, 200, "reveal {key}: {body}");
    body["data"].clone()
}

async fn listed_keys(http: &Http) -> Vec<String> {
    let (st, body) = http.get(&format!("{ENV}/secrets")).await;
    assert_eq!(st, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_owned())
        .collect()
}

/// Shares of a different init, made on a second server with its own storage.
async fn foreign_shares() -> Vec<String> {
    let dir = util::tempdir();
    let other = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let (keys, _, _) = util::init(&other.client(None), 5, 3).await;
    keys
}

#[tokio::test]
async fn full_lifecycle_survives_mistakes_seal_and_kill_9() {
    let dir = util::tempdir();
    let mut server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);

    // Boots uninitialized: health 501, seal-status says so.
    let (st, health) = anon.get("/v1/sys/health").await;
    assert_eq!(st, 501, "{health}");
    assert_eq!(health["initialized"], false);

    let (hex, b64, root) = util::init(&anon, 5, 3).await;
    assert_eq!((hex.len(), b64.len()), (5, 5));
    let (st, again) = anon
        .put("/v1/sys/init", json!({"secret_shares": 5, "secret_threshold": 3}))
        .await;
    assert_eq!(
        (st.as_u16(), again["errors"][0].as_str()),
        (400, Some("Vault is already initialized"))
    );

    // Sealed after init: health 503, secret routes 503 with the native code.
    assert_eq!(anon.get("/v1/sys/health").await.0, 503);
    let http = anon.with_token(&root);
    let (st, body) = http.get("/api/v1/orgs").await;
    assert_eq!((st.as_u16(), body["code"].as_str()), (503, Some("sealed")), "{body}");

    // A mistyped share is rejected at submission and costs no progress.
    util::unseal(&anon, &[&hex[0]]).await;
    let mut typo = hex[2].clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let (st, body) = anon
        .put("/v1/sys/unseal", json!({"key": String::from_utf8(typo).unwrap()}))
        .await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("mistyped or altered"),
        "{body}"
    );
    // The same share twice is refused too, progress unchanged.
    let (st, body) = anon.put("/v1/sys/unseal", json!({"key": b64[0]})).await;
    assert_eq!(st, 400, "{body}");
    let (_, status) = anon.get("/v1/sys/seal-status").await;
    assert_eq!(
        (status["progress"].as_u64(), status["t"].as_u64(), status["n"].as_u64()),
        (Some(1), Some(3), Some(5))
    );
    let (_, status) = anon.put("/v1/sys/unseal", json!({"reset": true})).await;
    assert_eq!(status["progress"], 0);

    // Three well-formed shares of another init: refused after the third, progress reset.
    let foreign = foreign_shares().await;
    util::unseal(&anon, &[&foreign[0], &foreign[1]]).await;
    let (st, body) = anon.put("/v1/sys/unseal", json!({"key": foreign[2]})).await;
    assert_eq!(st, 400, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("do not match"), "{body}");
    let (_, status) = anon.get("/v1/sys/seal-status").await;
    assert_eq!(
        (status["sealed"].as_bool(), status["progress"].as_u64()),
        (Some(true), Some(0))
    );

    // Shares 1, 3, 5 (mixing hex and base64) unseal.
    let status = util::unseal(&anon, &[&hex[0], &b64[2], &hex[4]]).await;
    assert_eq!(status["sealed"], false, "{status}");
    assert_eq!(anon.get("/v1/sys/health").await.0, 200);

    util::tenant(&http).await;
    for (key, ty, value) in TYPED {
        let (st, body) = http
            .post(&format!("{ENV}/secrets/{key}"), json!({"value": value, "type": ty}))
            .await;
        assert_eq!(st, 200, "{key}: {body}");
        assert_eq!(body["data"]["version"], 1);
        assert!(body["data"].get("value").is_none(), "a write must not echo the value");
    }
    for (key, ty, value) in TYPED {
        let got = reveal(&http, key).await;
        assert_eq!(
            (got["value"].as_str(), got["type"].as_str()),
            (Some(*value), Some(*ty)),
            "{key}"
        );
    }
    // A value that does not parse as its type: 400 naming the key and type, nothing written.
    let (st, body) = http
        .post(
            &format!("{ENV}/secrets/BAD_INT"),
            json!({"value": "12abc", "type": "integer"}),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("BAD_INT") && msg.contains("integer") && !msg.contains("12abc"),
        "{msg}"
    );
    assert!(!listed_keys(&http).await.contains(&"BAD_INT".to_owned()));
    // Metadata read never carries the value.
    let (_, meta) = http.get(&format!("{ENV}/secrets/TEXT_VALUE")).await;
    assert!(meta["data"].get("value").is_none(), "{meta}");

    // Update → 2 versions → rollback to 1 → v3 holds v1's value.
    let (st, _) = http
        .post(&format!("{ENV}/secrets/TEXT_VALUE"), json!({"value": "second"}))
        .await;
    assert_eq!(st, 200);
    assert_eq!(reveal(&http, "TEXT_VALUE").await["value"], "second");
    let (_, hist) = http.get(&format!("{ENV}/secrets/TEXT_VALUE/history")).await;
    assert_eq!(hist["data"].as_array().unwrap().len(), 2, "{hist}");
    let (st, rb) = http
        .post(&format!("{ENV}/secrets/TEXT_VALUE/rollback"), json!({"version": 1}))
        .await;
    assert_eq!((st.as_u16(), rb["data"]["version"].as_i64()), (200, Some(3)), "{rb}");
    let v3 = reveal(&http, "TEXT_VALUE").await;
    assert_eq!(
        (v3["version"].as_i64(), v3["value"].as_str()),
        (Some(3), Some(TYPED[0].2))
    );

    // Soft delete → not listed, not readable → restore → back.
    assert_eq!(http.delete(&format!("{ENV}/secrets/JSON_VALUE")).await.0, 200);
    assert!(!listed_keys(&http).await.contains(&"JSON_VALUE".to_owned()));
    assert_eq!(http.get(&format!("{ENV}/secrets/JSON_VALUE?reveal=true")).await.0, 404);
    assert_eq!(
        http.post(&format!("{ENV}/secrets/JSON_VALUE/restore"), json!({}))
            .await
            .0,
        200
    );
    assert!(listed_keys(&http).await.contains(&"JSON_VALUE".to_owned()));
    assert_eq!(reveal(&http, "JSON_VALUE").await["value"], TYPED[1].2);

    // Seal: every secret route answers 503 sealed, Vault routes with Vault's text.
    assert_eq!(http.put("/v1/sys/seal", json!({})).await.0, 204);
    for (method, path) in [
        ("GET", format!("{ENV}/secrets")),
        ("GET", format!("{ENV}/secrets/TEXT_VALUE?reveal=true")),
        ("POST", format!("{ENV}/secrets/NEW")),
        ("DELETE", format!("{ENV}/secrets/TEXT_VALUE")),
        ("GET", format!("{ENV}/secrets/TEXT_VALUE/history")),
        ("POST", format!("{ENV}/secrets/TEXT_VALUE/rollback")),
        ("POST", format!("{ENV}/inject")),
        ("GET", "/api/v1/orgs".to_owned()),
    ] {
        let (st, body) = http.req(method, &path, Some(json!({"value": "x", "version": 1}))).await;
        assert_eq!(
            (st.as_u16(), body["code"].as_str()),
            (503, Some("sealed")),
            "{method} {path}: {body}"
        );
    }
    let (st, body) = http.get("/v1/secret/data/anything").await;
    assert_eq!(
        (st.as_u16(), body["errors"][0].as_str()),
        (503, Some("Vault is sealed"))
    );

    // Another quorum (2, 4, 5) unseals the same data.
    util::unseal(&anon, &[&b64[1], &hex[3], &b64[4]]).await;
    assert_eq!(reveal(&http, "BOOL_VALUE").await["value"], "true");

    // kill -9 and restart: sealed again, same shares, all data intact.
    server.restart_hard();
    let anon = server.client(None);
    let http = anon.with_token(&root);
    let (_, status) = anon.get("/v1/sys/seal-status").await;
    assert_eq!(
        (status["initialized"].as_bool(), status["sealed"].as_bool()),
        (Some(true), Some(true))
    );
    util::unseal(&anon, &[&hex[4], &hex[0], &hex[2]]).await;
    for (key, _, value) in TYPED {
        let want = if *key == "TEXT_VALUE" { TYPED[0].2 } else { value };
        assert_eq!(reveal(&http, key).await["value"], *want, "{key} after restart");
    }
    let (_, inject) = http.post(&format!("{ENV}/inject"), json!({})).await;
    assert_eq!(inject["data"].as_object().unwrap().len(), TYPED.len(), "{inject}");
    assert_eq!(inject["data"]["INT_VALUE"], TYPED[4].2);
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (hex, _, root) = util::init(&anon, 1, 1).await;
    util::unseal(&anon, &[&hex[0]]).await;
    let (st, body) = anon.get("/api/v1/orgs").await;
    assert_eq!((st.as_u16(), body["code"].as_str()), (401, Some("unauthenticated")));
    let (st, _) = anon.with_token("cfr_not-a-real-token").get("/api/v1/orgs").await;
    assert_eq!(st, 401);
    // Vault routes answer a missing token with 403, as Vault does.
    let (st, body) = anon.put("/v1/sys/seal", json!({})).await;
    assert_eq!(
        (st.as_u16(), body["errors"][0].as_str()),
        (403, Some("permission denied"))
    );
    // Authorization: Bearer works like X-Vault-Token.
    let res = reqwest::Client::new()
        .get(format!("{}/api/v1/orgs", server.base))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
