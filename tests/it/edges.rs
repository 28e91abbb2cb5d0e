//! Protocol edges (issue 24): methods a route does not serve, refusals of
//! malformed or oversized requests, slow and idle connections.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::util::{Server, fresh_storage_url, tempdir};

/// A template with every `{param}` (and `{*rest}`) segment filled.
fn fill(template: &str) -> String {
    template
        .split('/')
        .map(|seg| {
            if seg.starts_with("{*") {
                "a/b"
            } else if seg.starts_with('{') {
                "x"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The server log's ERROR lines.
fn error_lines(server: &Server) -> Vec<String> {
    server
        .log_text()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(str::to_owned)
        .collect()
}

/// Every route template with the methods the tables give it.
fn templates() -> Vec<(String, BTreeSet<&'static str>)> {
    use coffer::access::ENV_ROUTES;
    use coffer::http::audit::{ENV_PREFIX, ROUTE_ACTIONS};
    let mut out: Vec<(String, BTreeSet<&'static str>)> = Vec::new();
    let rows = ROUTE_ACTIONS
        .iter()
        .map(|(m, p, _)| (*m, (*p).to_owned()))
        .chain(ENV_ROUTES.iter().map(|r| (r.method, format!("{ENV_PREFIX}{}", r.path))));
    for (m, p) in rows {
        match out.iter_mut().find(|(q, _)| *q == p) {
            Some((_, set)) => {
                set.insert(m);
            }
            None => out.push((p, BTreeSet::from([m]))),
        }
    }
    // A `*` route serves every method itself (the KV mount, sys/mounts).
    out.retain(|(_, set)| !set.contains("*"));
    out
}

#[tokio::test]
async fn a_wrong_method_answers_405_with_allow_in_the_routes_format() {
    let dir = tempdir();
    let url = fresh_storage_url(dir.path()).await;
    let server = Server::start(dir.path(), &url);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let mut checked = 0;
    for (template, methods) in templates() {
        let path = fill(&template);
        let vault = template.starts_with("/v1/");
        let mut expected: BTreeSet<&str> = methods.clone();
        if methods.contains("GET") {
            expected.insert("HEAD");
        }
        expected.insert("OPTIONS");
        let wrong = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW",
        ]
        .into_iter()
        .filter(|m| !(methods.contains(m) || (*m == "HEAD" && methods.contains("GET"))));
        for m in wrong {
            let res = client
                .request(
                    Method::from_bytes(m.as_bytes()).unwrap(),
                    format!("{}{path}", server.base),
                )
                .send()
                .await
                .expect("request");
            let status = res.status().as_u16();
            let allow: BTreeSet<String> = res
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            let body = res.bytes().await.expect("body");
            let want: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(allow, want, "{m} {template}: Allow");
            if m == "OPTIONS" {
                assert_eq!(status, 204, "OPTIONS {template}");
                continue;
            }
            assert_eq!(status, 405, "{m} {template}");
            if m == "HEAD" {
                assert!(body.is_empty(), "HEAD {template} has a body");
                continue;
            }
            let v: Value =
                serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{m} {template}: not JSON: {body:?}"));
            if vault {
                let errors = v["errors"].as_array().unwrap_or_else(|| panic!("{m} {template}: {v}"));
                assert!(
                    errors.len() == 1 && errors[0].as_str().is_some_and(|e| e.contains("not allowed")),
                    "{m} {template}: {v}"
                );
            } else {
                assert_eq!(v["error"], true, "{m} {template}: {v}");
                assert_eq!(v["code"], "method_not_allowed", "{m} {template}: {v}");
                assert!(
                    v["message"].as_str().is_some_and(|e| e.contains(m)),
                    "{m} {template}: {v}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 300, "only {checked} requests checked");
    assert_eq!(
        error_lines(&server),
        Vec::<String>::new(),
        "ERROR lines in the server log"
    );
}

/// A booted server with acme/api/production and the root token.
async fn booted(dir: &std::path::Path) -> (Server, String) {
    let url = fresh_storage_url(dir).await;
    let server = Server::start(dir, &url);
    let anon = server.client(None);
    let (keys, _, root) = crate::util::init(&anon, 3, 2).await;
    crate::util::unseal(&anon, &[&keys[0], &keys[1]]).await;
    crate::util::tenant(&anon.with_token(&root)).await;
    (server, root)
}

/// Send raw bytes; status and JSON body.
async fn send(server: &Server, token: &str, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let res = reqwest::Client::new()
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", server.base),
        )
        .header("X-Vault-Token", token)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let bytes = res.bytes().await.expect("body");
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{method} {path}: {status} not JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, v)
}

fn native_refusal(what: &str, (status, v): (u16, Value), want: u16, code: &str) {
    assert_eq!(status, want, "{what}: {v}");
    assert_eq!(v["error"], true, "{what}: {v}");
    assert_eq!(v["code"], code, "{what}: {v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {v}");
}

fn vault_refusal(what: &str, (status, v): (u16, Value), want: u16) {
    assert_eq!(status, want, "{what}: {v}");
    let errors = v["errors"].as_array().unwrap_or_else(|| panic!("{what}: {v}"));
    assert!(
        errors.len() == 1 && errors[0].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {v}"
    );
}

#[tokio::test]
async fn refusals_have_the_right_status_in_each_apis_json_format() {
    use crate::util::ENV;
    let dir = tempdir();
    let (server, root) = booted(dir.path()).await;
    let big = {
        let mut b = br#"{"value":""#.to_vec();
        b.extend(std::iter::repeat_n(b'a', 3 * 1024 * 1024));
        b.extend(br#"","type":"text"}"#);
        b
    };
    let kv = "/v1/secret/data/acme/api/production/K";
    let kv_big = {
        let mut b = br#"{"data":{"K":""#.to_vec();
        b.extend(std::iter::repeat_n(b'a', 3 * 1024 * 1024));
        b.extend(br#""}}"#);
        b
    };
    let s = &server;
    let r = &root;
    // too large: 413
    native_refusal(
        "native body over the limit",
        send(s, r, "PUT", &format!("{ENV}/secrets/K"), big).await,
        413,
        "too_large",
    );
    vault_refusal("KV body over the limit", send(s, r, "PUT", kv, kv_big).await, 413);
    // a body that is not JSON: 400
    native_refusal(
        "native bad JSON",
        send(s, r, "PUT", &format!("{ENV}/secrets/K"), b"{nope".to_vec()).await,
        400,
        "invalid",
    );
    vault_refusal("KV bad JSON", send(s, r, "PUT", kv, b"{nope".to_vec()).await, 400);
    vault_refusal(
        "sys bad JSON",
        send(s, r, "PUT", "/v1/sys/unseal", b"{nope".to_vec()).await,
        400,
    );
    // query errors: 400
    native_refusal(
        "native duplicate reveal",
        send(s, r, "GET", &format!("{ENV}/secrets/K?reveal=true&reveal=true"), vec![]).await,
        400,
        "invalid",
    );
    native_refusal(
        "native query not UTF-8",
        send(s, r, "GET", &format!("{ENV}/secrets/K?reveal=%FF"), vec![]).await,
        400,
        "invalid",
    );
    vault_refusal(
        "KV query not UTF-8",
        send(s, r, "GET", &format!("{kv}?version=%FF"), vec![]).await,
        400,
    );
    // path not UTF-8 once decoded: 400
    native_refusal(
        "native path not UTF-8",
        send(s, r, "GET", &format!("{ENV}/secrets/%FF"), vec![]).await,
        400,
        "invalid",
    );
    vault_refusal(
        "KV path not UTF-8",
        send(s, r, "GET", "/v1/secret/data/acme/api/production/%FF", vec![]).await,
        400,
    );
    assert_eq!(
        error_lines(&server),
        Vec::<String>::new(),
        "ERROR lines in the server log"
    );
}
