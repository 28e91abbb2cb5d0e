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
    use coffer::http::routes::{ENV_PREFIX, ROUTE_ACTIONS};
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

/// Send a 3 MiB chunked body (the response is read meanwhile: the server
/// may answer and close before the body is all sent); status and JSON.
async fn chunked_3_mib(addr: std::net::SocketAddr, token: &str, method_path: &str) -> (u16, Value) {
    use tokio::io::AsyncWriteExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (rd, mut w) = tcp.into_split();
    let head = format!(
        "{method_path} HTTP/1.1\r\nHost: x\r\nX-Vault-Token: {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        let chunk = [b'a'; 65536];
        let _ = w.write_all(head.as_bytes()).await;
        for _ in 0..48 {
            if w.write_all(b"10000\r\n").await.is_err()
                || w.write_all(&chunk).await.is_err()
                || w.write_all(b"\r\n").await.is_err()
            {
                return w;
            }
        }
        let _ = w.write_all(b"0\r\n\r\n").await;
        w
    });
    let (text, _) = read_to_close(rd, std::time::Duration::from_secs(10)).await;
    drop(writer.await);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method_path}: no status: {text}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v = serde_json::from_str(body).unwrap_or_else(|_| panic!("{method_path}: not JSON: {text}"));
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
    // Over the limit without a declared length (chunked): the extractor's
    // limit answers. A declared length is refused earlier (item 2's test).
    let addr: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().expect("address");
    let kv = "/v1/secret/data/acme/api/production/K";
    let s = &server;
    let r = &root;
    native_refusal(
        "native body over the limit",
        chunked_3_mib(addr, r, &format!("PUT {ENV}/secrets/K")).await,
        413,
        "too_large",
    );
    vault_refusal(
        "KV body over the limit",
        chunked_3_mib(addr, r, &format!("PUT {kv}")).await,
        413,
    );
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

/// A plain-HTTP server with these extra `[listener]` keys.
async fn limited(dir: &std::path::Path, keys: &str) -> (Server, std::net::SocketAddr) {
    let url = fresh_storage_url(dir).await;
    let server = Server::start_with(dir, &url, &format!("tls_disable = true\n{keys}"));
    let addr = server.base.trim_start_matches("http://").parse().expect("address");
    (server, addr)
}

/// Read until the server closes the connection (or `limit` passes);
/// what was read and when the connection closed.
async fn read_to_close(
    mut r: tokio::net::tcp::OwnedReadHalf,
    limit: std::time::Duration,
) -> (String, Option<std::time::Instant>) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), None),
            Ok(Ok(0) | Err(_)) => {
                return (
                    String::from_utf8_lossy(&got).into_owned(),
                    Some(std::time::Instant::now()),
                );
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_at_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let dir = tempdir();
    let (_server, addr) = limited(dir.path(), "header_timeout_ms = 1000").await;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (r, mut w) = tcp.into_split();
    let start = std::time::Instant::now();
    let reader = tokio::spawn(read_to_close(r, std::time::Duration::from_secs(10)));
    // One header line every 500 ms, for up to 8 s: never a complete head.
    let _ = w.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n").await;
    for i in 0..16 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if w.write_all(format!("X-Slow-{i}: y\r\n").as_bytes()).await.is_err() || reader.is_finished() {
            break;
        }
    }
    let (_, closed) = reader.await.expect("reader");
    let closed = closed.expect("the connection stayed open").duration_since(start);
    assert!(
        closed < std::time::Duration::from_millis(2500),
        "closed after {closed:?} (header timeout 1 s)"
    );
}

#[tokio::test]
async fn a_stalled_body_is_cut_off_at_the_body_timeout() {
    use tokio::io::AsyncWriteExt;
    let dir = tempdir();
    let (_server, addr) = limited(dir.path(), "body_timeout_ms = 1000").await;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (r, mut w) = tcp.into_split();
    let start = std::time::Instant::now();
    let reader = tokio::spawn(read_to_close(r, std::time::Duration::from_secs(10)));
    w.write_all(
        b"PUT /v1/sys/init HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"secret_",
    )
    .await
    .expect("write");
    let (text, closed) = reader.await.expect("reader");
    drop(w);
    let closed = closed.expect("the connection stayed open").duration_since(start);
    assert!(
        closed > std::time::Duration::from_millis(800) && closed < std::time::Duration::from_millis(2500),
        "closed after {closed:?} (body timeout 1 s): {text}"
    );
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains(r#"{"errors":["#), "{text}");
}

/// Send a head declaring a 10 GB body and nothing else; the answer.
async fn declared_10_gb(addr: std::net::SocketAddr, method_path: &str) -> (String, std::time::Duration) {
    use tokio::io::AsyncWriteExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (r, mut w) = tcp.into_split();
    let start = std::time::Instant::now();
    w.write_all(
        format!(
            "{method_path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let (text, closed) = read_to_close(r, std::time::Duration::from_secs(5)).await;
    drop(w);
    (
        text,
        closed.map_or(std::time::Duration::MAX, |c| c.duration_since(start)),
    )
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_at_once() {
    let dir = tempdir();
    let (_server, addr) = limited(dir.path(), "").await;
    let (text, took) = declared_10_gb(addr, "PUT /v1/sys/init").await;
    assert!(took < std::time::Duration::from_secs(1), "{took:?}: {text}");
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains(r#"{"errors":["#), "{text}");
    let (text, took) = declared_10_gb(addr, "POST /api/v1/auth/login").await;
    assert!(took < std::time::Duration::from_secs(1), "{took:?}: {text}");
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains(r#""code":"too_large""#), "{text}");
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    use tokio::io::AsyncWriteExt;
    let dir = tempdir();
    let (_server, addr) = limited(dir.path(), "max_connections = 2").await;
    let first = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let second = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // Both are accepted and wait for headers; the third waits in the backlog.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let third = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (r, mut w) = third.into_split();
    w.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let reader = tokio::spawn(read_to_close(r, std::time::Duration::from_secs(5)));
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert!(
        !reader.is_finished(),
        "the third connection was served while two were open"
    );
    drop(first);
    let start = std::time::Instant::now();
    let (text, closed) = reader.await.expect("reader");
    assert!(text.starts_with("HTTP/1.1 "), "{text}");
    assert!(
        closed.is_some_and(|c| c.duration_since(start) < std::time::Duration::from_secs(2)),
        "{text}"
    );
    drop(second);
}

/// A body the parser refuses is answered without the values it carried:
/// serde quotes what it could not read, and the answer ends up in client
/// and CI logs.
#[tokio::test]
async fn a_refused_body_is_not_echoed_in_the_error() {
    use crate::util::ENV;
    let dir = tempdir();
    let (server, root) = booted(dir.path()).await;
    let kv = "/v1/secret/data/acme/api/production/K";
    for (what, method, path, body, needle) in [
        (
            "native value of the wrong type",
            "PUT",
            format!("{ENV}/secrets/K"),
            r#"{"value": 4111111111111111, "type": "text"}"#,
            "4111111111111111",
        ),
        (
            "unseal share of the wrong type",
            "PUT",
            "/v1/sys/unseal".to_owned(),
            r#"{"key": 98765432123456789, "reset": "s3cret-reset"}"#,
            "98765432123456789",
        ),
        (
            "KV data of the wrong type",
            "PUT",
            kv.to_owned(),
            r#"{"data": "s3cret-not-a-map", "options": {"cas": "s3cret-cas"}}"#,
            "s3cret",
        ),
    ] {
        let (st, v) = send(&server, &root, method, &path, body.as_bytes().to_vec()).await;
        assert_eq!(st, 400, "{what}: {v}");
        assert!(
            !v.to_string().contains(needle),
            "{what}: the answer echoes the body: {v}"
        );
    }
    assert!(
        !server.log_text().contains("4111111111111111"),
        "the server log must not hold a refused body's value"
    );
}
