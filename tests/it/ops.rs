//! Operations: systemd notifications against a fake `NOTIFY_SOCKET`, TLS
//! reload on SIGHUP, `/metrics`, request ids, config errors and
//! environment overrides — on the real binary.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::tls::{make_pki, openssl};
use crate::util::{self, ENV, Server};

/// Datagrams received until one contains `want` (or the deadline).
fn wait_for(sock: &UnixDatagram, seen: &mut Vec<String>, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.contains(want)) {
        assert!(Instant::now() < deadline, "no {want:?} from the server; got {seen:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[tokio::test]
async fn notify_socket_gets_ready_and_seal_status_lines() {
    let dir = util::tempdir();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start_full(
        dir.path(),
        &url,
        "tls_disable = true",
        "",
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let mut seen = Vec::new();
    wait_for(&sock, &mut seen, "READY=1");
    assert!(seen[0].contains("STATUS=uninitialized"), "{seen:?}");
    let anon = server.client(None);
    let (keys, _, _) = util::init(&anon, 3, 2).await;
    wait_for(&sock, &mut seen, "STATUS=sealed, 0/2 shares");
    util::unseal(&anon, &[&keys[0]]).await;
    wait_for(&sock, &mut seen, "STATUS=sealed, 1/2 shares");
    util::unseal(&anon, &[&keys[1]]).await;
    wait_for(&sock, &mut seen, "STATUS=unsealed");
    // READY came once, before any share: sealed counts as ready.
    assert_eq!(seen.iter().filter(|m| m.contains("READY=1")).count(), 1, "{seen:?}");
}

fn sighup(server: &Server) {
    let st = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn tls_connector(dir: &Path) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(dir: &Path, base: &str) -> Tls {
    let addr = base.trim_start_matches("https://");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tls_connector(dir).connect(name, tcp).await.unwrap()
}

fn leaf(conn: &Tls) -> Vec<u8> {
    conn.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec()
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// One HTTP/1.1 keep-alive request on an open connection; the status.
async fn get(conn: &mut Tls, path: &str) -> u16 {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text[9..12].parse().unwrap();
            }
        }
    }
}

fn new_server_cert(dir: &Path, cn: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "next.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "next.key",
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            "next.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "next.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "next.pem",
        ],
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_open_connections() {
    let dir = util::tempdir();
    let d = dir.path();
    make_pki(d);
    let listener = format!(
        "tls_cert = \"{0}/server.pem\"\ntls_key = \"{0}/server.key\"",
        d.display()
    );
    let server = Server::start_with(d, &util::fresh_storage_url(d).await, &listener);
    let old = pem_der(&d.join("server.pem"));
    let mut open = connect(d, &server.base).await;
    assert_eq!(leaf(&open), old);
    assert_eq!(get(&mut open, "/v1/sys/seal-status").await, 200);

    new_server_cert(d, "reloaded");
    std::fs::rename(d.join("next.key"), d.join("server.key")).unwrap();
    std::fs::rename(d.join("next.pem"), d.join("server.pem")).unwrap();
    let new = pem_der(&d.join("server.pem"));
    assert_ne!(old, new);
    sighup(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let conn = connect(d, &server.base).await;
        if leaf(&conn) == new {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new connections still get the old certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection opened before the reload still answers.
    assert_eq!(get(&mut open, "/v1/sys/seal-status").await, 200);
    assert_eq!(leaf(&open), old);

    // A broken certificate is refused: the reloaded one stays, the log says why.
    std::fs::write(d.join("server.pem"), "not a certificate\n").unwrap();
    sighup(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("keeping the old TLS certificate") {
        assert!(Instant::now() < deadline, "no log line; log:\n{}", server.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.log_text().contains("server.pem"), "the log names the file");
    assert_eq!(leaf(&connect(d, &server.base).await), new);
    assert_eq!(get(&mut open, "/v1/sys/seal-status").await, 200);
}

fn plain_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn scrape(server: &Server, token: Option<&str>) -> (u16, String) {
    let mut req = plain_client().get(format!("{}/metrics", server.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn metrics_need_the_token_show_the_series_and_no_secret() {
    let dir = util::tempdir();
    let token = "scrape-token-0123456789abcdef";
    std::fs::write(dir.path().join("metrics-token"), format!("{token}\n")).unwrap();
    let extra = format!("[metrics]\ntoken_file = \"{}/metrics-token\"\n", dir.path().display());
    let server = Server::start_full(
        dir.path(),
        &util::fresh_storage_url(dir.path()).await,
        "tls_disable = true",
        &extra,
        &[],
    );
    assert_eq!(scrape(&server, None).await.0, 401);
    assert_eq!(scrape(&server, Some("scrape-token-0123456789abcdeX")).await.0, 401);

    let anon = server.client(None);
    let (keys, _, root_token) = util::init(&anon, 3, 2).await;
    util::unseal(&anon, &[&keys[0], &keys[1]]).await;
    let root = anon.with_token(&root_token);
    util::tenant(&root).await;
    let value = "s3cr3t-value-that-must-not-leak";
    util::write_secret(&root, ENV, "DATABASE_PASSWORD", value).await;
    let (st, _) = root.get(&format!("{ENV}/secrets/DATABASE_PASSWORD")).await;
    assert_eq!(st, 200);
    let (st, _) = root.get(&format!("{ENV}/secrets/DATABASE_PASSWORD")).await;
    assert_eq!(st, 200);
    let bad = server.client(Some("not-a-token"));
    let (st, _) = bad.get("/api/v1/auth/whoami").await;
    assert_eq!(st, 401);

    let (st, text) = scrape(&server, Some(token)).await;
    assert_eq!(st, 200, "{text}");
    for series in [
        "coffer_http_requests_total{",
        "coffer_http_request_duration_seconds_bucket{",
        "coffer_sealed 0",
        "coffer_initialized 1",
        "coffer_unseal_progress 0",
        "coffer_unseal_threshold 2",
        "coffer_kek_cache_hits_total",
        "coffer_kek_cache_misses_total",
        "coffer_auth_failures_total{reason=\"unauthenticated\"} 1",
        "coffer_decryption_failures_total",
    ] {
        assert!(text.contains(series), "missing {series}:\n{text}");
    }
    assert!(
        text.contains("route=\"/api/v1/orgs/{org}/projects/{project}/environments/{env}/secrets/{key}\""),
        "route templates as labels:\n{text}"
    );
    for leak in [
        value,
        token,
        root_token.as_str(),
        keys[0].as_str(),
        "DATABASE_PASSWORD",
        "/orgs/acme",
        "not-a-token",
    ] {
        assert!(!text.contains(leak), "/metrics leaks {leak:?}");
    }
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let url = format!("{}/v1/sys/health", server.base);
    let res = plain_client()
        .get(&url)
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = plain_client()
        .get(&url)
        .header("X-Request-Id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    let made = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    // `<12 hex digits of this process>-<hex counter>`
    let (prefix, counter) = made.split_once('-').unwrap_or_else(|| panic!("{made}"));
    assert!(
        prefix.len() == 12 && prefix.bytes().all(|b| b.is_ascii_hexdigit()),
        "{made}"
    );
    assert!(u64::from_str_radix(counter, 16).is_ok(), "{made}");
    let again = plain_client().get(&url).send().await.unwrap();
    assert_ne!(
        again.headers()["x-request-id"].to_str().unwrap(),
        made,
        "ids are unique"
    );
    // Metrics are off without a token file.
    assert_eq!(scrape(&server, Some("anything")).await.0, 404);
}

#[tokio::test]
async fn health_codes_follow_the_query_parameters() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let code = |q: &'static str| {
        let url = format!("{}/v1/sys/health{q}", server.base);
        async move { plain_client().get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(code("").await, 501);
    assert_eq!(code("?uninitcode=200").await, 200);
    util::init(&anon, 1, 1).await;
    assert_eq!(code("").await, 503);
    assert_eq!(code("?sealedcode=299").await, 299);
    // Sealed wins over standbyok, as in Vault.
    assert_eq!(code("?standbyok=true").await, 503);
}

fn run_server(config: &Path, envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.args(["server", "--config"])
        .arg(config)
        .env("COFFER_LOG_FORMAT", "text");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn config_errors_name_the_key_and_line_and_env_overrides_apply() {
    let dir = util::tempdir();
    let config = dir.path().join("coffer.toml");
    std::fs::write(
        &config,
        "# comment\n[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n\n[storage]\nurl = \"sqlite://x.db\"\nuser = \"x\"\n",
    )
    .unwrap();
    let out = run_server(&config, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("line 8") && err.contains("user"), "{err}");

    std::fs::write(
        &config,
        "[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n[storage]\nurl = \"mysql://nope\"\n",
    )
    .unwrap();
    let out = run_server(&config, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 5") && err.contains("storage.url"), "{err}");
    // A bad value from the environment names the variable.
    let out = run_server(&config, &[("COFFER_LISTENER_ADDRESS", "localhost")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("COFFER_LISTENER_ADDRESS") && err.contains("listener.address"),
        "{err}"
    );

    // The environment overrides the file's bad storage URL, and the
    // address: the server starts where the variables say.
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start_full(
        dir.path(),
        "mysql://nope",
        "tls_disable = true",
        "",
        &[("COFFER_STORAGE_URL", &url), ("COFFER_LISTENER_ADDRESS", "127.0.0.2:0")],
    );
    assert!(server.base.starts_with("http://127.0.0.2:"), "{}", server.base);
    let (st, _) = server.client(None).get("/v1/sys/seal-status").await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn sighup_reloads_the_log_level_and_json_lines_carry_the_request_id() {
    let dir = util::tempdir();
    let server = Server::start_full(
        dir.path(),
        &util::fresh_storage_url(dir.path()).await,
        "tls_disable = true",
        "",
        &[("COFFER_LOG_FORMAT", "json")],
    );
    let anon = server.client(None);
    let (keys, _, root_token) = util::init(&anon, 1, 1).await;
    util::unseal(&anon, &[&keys[0]]).await;
    let root = anon.with_token(&root_token);
    util::tenant(&root).await;
    let value = "json-log-secret-value-never-logged";
    let traced = |id: &'static str| {
        plain_client()
            .get(format!("{}{ENV}/secrets/API_KEY", server.base))
            .bearer_auth(&root_token)
            .header("X-Request-Id", id)
            .send()
    };
    util::write_secret(&root, ENV, "API_KEY", value).await;
    assert_eq!(traced("before-reload-1").await.unwrap().status(), 200);
    // info: request lines (debug) are not logged.
    assert!(!server.log_text().contains("before-reload-1"));

    // Raise the level in the file and reload.
    let config = std::fs::read_to_string(server.config_path()).unwrap();
    std::fs::write(server.config_path(), format!("log_level = \"debug\"\n{config}")).unwrap();
    sighup(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("reloaded") {
        assert!(Instant::now() < deadline, "no reload; log:\n{}", server.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(traced("after-reload-2").await.unwrap().status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let log = server.log_text();
        if let Some(l) = log
            .lines()
            .find(|l| l.contains("after-reload-2") && l.contains("\"route\""))
        {
            break l.to_owned();
        }
        assert!(Instant::now() < deadline, "no request line at debug; log:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
    assert_eq!(json["span"]["request_id"], "after-reload-2", "{line}");
    assert_eq!(
        json["fields"]["route"], "/api/v1/orgs/{org}/projects/{project}/environments/{env}/secrets/{key}",
        "{line}"
    );
    let log = server.log_text();
    for leak in [value, root_token.as_str(), keys[0].as_str()] {
        assert!(!log.contains(leak), "the log leaks a secret");
    }
}
