//! Abuse limits behind shared addresses and load balancers (docs/access.md
//! "Abuse limits", `listener.trusted_proxies`): junk tokens do not lock out
//! valid ones, and a trusted proxy's `X-Forwarded-For` names the source of
//! the limiter, the service-account `cidrs` check and the audit record.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::util::{self, Http, Server};

/// GET `path` with an optional token and `X-Forwarded-For`.
async fn get_as(base: &str, path: &str, token: Option<&str>, forwarded_for: Option<&str>) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        r = r.header("X-Vault-Token", t);
    }
    if let Some(f) = forwarded_for {
        r = r.header("X-Forwarded-For", f);
    }
    let res = r.send().await.expect("request");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn junk() -> String {
    format!("cfr_{}", uuid::Uuid::new_v4().simple())
}

/// Spend the unknown-token allowance (20) of the source `forwarded_for`
/// names (or of the peer), then check the source is blocked.
async fn exhaust_token_failures(base: &str, forwarded_for: Option<&str>) {
    for i in 0..20 {
        util::expect_error(
            &format!("unknown token {} from {forwarded_for:?}", i + 1),
            get_as(base, "/api/v1/auth/whoami", Some(&junk()), forwarded_for).await,
            401,
            "unauthenticated",
        );
    }
    util::expect_error(
        &format!("21st unknown token from {forwarded_for:?}"),
        get_as(base, "/api/v1/auth/whoami", Some(&junk()), forwarded_for).await,
        429,
        "rate_limited",
    );
}

/// The `source` of the newest audit record of `resource`.
async fn audit_source(root: &Http, resource: &str) -> String {
    let records = util::ok_data(
        "audit search",
        root.get(&format!("/api/v1/audit/records?resource={resource}&limit=1000"))
            .await,
    );
    let last = records
        .as_array()
        .and_then(|r| r.iter().max_by_key(|r| r["seq"].as_i64()))
        .unwrap_or_else(|| panic!("no audit record of {resource}: {records}"));
    last["source"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn junk_tokens_from_one_source_do_not_block_its_valid_tokens() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let (root, _) = util::boot(&server.client(None)).await;
    exhaust_token_failures(&server.base, None).await;
    // Same address (a NAT, a proxy), a valid token: served.
    let me = util::ok_data(
        "a valid token from the blocked address",
        root.get("/api/v1/auth/whoami").await,
    );
    assert_eq!(me["kind"], "root", "{me}");
    util::ok_data("and again", root.get("/api/v1/orgs").await);
    // Junk from that address is still refused with 429.
    util::expect_error(
        "junk after the valid token",
        get_as(&server.base, "/api/v1/auth/whoami", Some(&junk()), None).await,
        429,
        "rate_limited",
    );
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_is_the_source() {
    let dir = util::tempdir();
    let storage = util::fresh_storage_url(dir.path()).await;
    // The test client connects from 127.0.0.1: it plays the load balancer.
    let server = Server::start_with(
        dir.path(),
        &storage,
        "tls_disable = true\ntrusted_proxies = [\"127.0.0.0/8\", \"10.9.0.0/16\"]",
    );
    let (root, _) = util::boot(&server.client(None)).await;
    let root_token = util::ok_data(
        "root token",
        root.post("/api/v1/tokens", json!({"name": "probe"})).await,
    )["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let base = server.base.as_str();

    // Audit source: the client the balancer names, past a second trusted hop
    // and ignoring what the client itself prepended.
    let (st, body) = get_as(
        base,
        "/api/v1/auth/whoami",
        Some(&root_token),
        Some("6.6.6.6, 198.51.100.7, 10.9.0.4"),
    )
    .await;
    assert!(st.is_success(), "{st} {body}");
    assert_eq!(audit_source(&root, "/api/v1/auth/whoami").await, "198.51.100.7");

    // Limiter key: the forwarded client, not the balancer.
    exhaust_token_failures(base, Some("198.51.100.7")).await;
    util::expect_error(
        "another client behind the same balancer",
        get_as(base, "/api/v1/auth/whoami", Some(&junk()), Some("198.51.100.8")).await,
        401,
        "unauthenticated",
    );
    util::expect_error(
        "the balancer itself",
        get_as(base, "/api/v1/auth/whoami", Some(&junk()), None).await,
        401,
        "unauthenticated",
    );

    // Service-account cidrs are checked against the forwarded client.
    util::org_tree(&root, "acme", &[("api", &["prod"])]).await;
    util::service_account(&root, "acme", "ci", json!({"cidrs": ["198.51.100.0/24"]})).await;
    let sa = util::sa_token(&root, "acme", "ci", json!({})).await;
    let sa = sa["token"].as_str().expect("sa token");
    util::ok_data(
        "service account from an allowed forwarded client",
        get_as(base, "/api/v1/auth/whoami", Some(sa), Some("198.51.100.20")).await,
    );
    util::expect_error(
        "service account from a forwarded client outside its cidrs",
        get_as(base, "/api/v1/auth/whoami", Some(sa), Some("203.0.113.20")).await,
        403,
        "source_not_allowed",
    );
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let dir = util::tempdir();
    let storage = util::fresh_storage_url(dir.path()).await;
    let server = Server::start_with(
        dir.path(),
        &storage,
        "tls_disable = true\ntrusted_proxies = [\"10.0.0.0/8\"]",
    );
    let (root, _) = util::boot(&server.client(None)).await;
    let base = server.base.as_str();
    util::expect_error(
        "junk token claiming another source",
        get_as(base, "/api/v1/orgs", Some(&junk()), Some("198.51.100.7")).await,
        401,
        "unauthenticated",
    );
    assert_eq!(audit_source(&root, "/api/v1/orgs").await, "127.0.0.1");

    // A different claimed address per request does not escape the limit.
    for i in 0..19 {
        util::expect_error(
            &format!("unknown token {} with a forged X-Forwarded-For", i + 2),
            get_as(
                base,
                "/api/v1/auth/whoami",
                Some(&junk()),
                Some(&format!("198.51.100.{i}")),
            )
            .await,
            401,
            "unauthenticated",
        );
    }
    util::expect_error(
        "21st unknown token from the same peer",
        get_as(base, "/api/v1/auth/whoami", Some(&junk()), Some("203.0.113.1")).await,
        429,
        "rate_limited",
    );
    // A service account limited to the forged network is refused.
    util::org_tree(&root, "acme", &[("api", &["prod"])]).await;
    util::service_account(&root, "acme", "ci", json!({"cidrs": ["198.51.100.0/24"]})).await;
    let sa = util::sa_token(&root, "acme", "ci", json!({})).await;
    util::expect_error(
        "service account claiming an allowed address through an untrusted peer",
        get_as(base, "/api/v1/auth/whoami", sa["token"].as_str(), Some("198.51.100.20")).await,
        403,
        "source_not_allowed",
    );
}

const PASSWORD: &str = "correct horse battery staple";

/// `VmHWM` / `VmRSS` of a process, in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// POST a login with `X-Forwarded-For` (trusted proxies only).
async fn login_from(
    base: &str,
    email: &str,
    password: &str,
    forwarded_for: &str,
) -> (StatusCode, Option<String>, Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .header("X-Forwarded-For", forwarded_for)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login request");
    let status = res.status();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, retry, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn five_parallel_wrong_guesses_lock_the_account() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let (root, _) = util::boot(&server.client(None)).await;
    util::create_user(&root, "target@acme.test", PASSWORD).await;
    let anon = server.client(None);
    let guesses = (0..5).map(|i| {
        let anon = anon.clone();
        async move {
            anon.post(
                "/api/v1/auth/login",
                json!({"email": "target@acme.test", "password": format!("wrong guess number {i}")}),
            )
            .await
        }
    });
    let mut set = tokio::task::JoinSet::new();
    for g in guesses {
        set.spawn(g);
    }
    while let Some(r) = set.join_next().await {
        let (st, body) = r.expect("guess task");
        assert!(
            st == 401 || (st == 429 && body["code"] == "rate_limited"),
            "a wrong guess: {st} {body}"
        );
    }
    // Five failures, however they interleaved: the account is locked, and
    // the right password is refused.
    util::expect_error(
        "right password after 5 parallel wrong guesses",
        anon.post(
            "/api/v1/auth/login",
            json!({"email": "target@acme.test", "password": PASSWORD}),
        )
        .await,
        429,
        "rate_limited",
    );
}

/// The bound this test states for the server's peak RSS during a burst of
/// 200 parallel logins: its RSS before the burst, plus 19 MiB per hashing
/// slot (min(cores, 8)) and 64 MiB for everything else (200 connections,
/// blocking threads, allocator slack). Without the gate every login hashes
/// at once: 200 × 19 MiB ≈ 3.7 GiB.
fn rss_bound_kib(before_kib: u64) -> u64 {
    let slots = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) as u64;
    before_kib + slots * 19 * 1024 + 64 * 1024
}

#[tokio::test]
async fn two_hundred_parallel_wrong_logins_keep_memory_bounded() {
    let dir = util::tempdir();
    let storage = util::fresh_storage_url(dir.path()).await;
    // Each login from its own (forwarded) address, so the per-address
    // limit does not stop them before the hash.
    let server = Server::start_with(
        dir.path(),
        &storage,
        "tls_disable = true\ntrusted_proxies = [\"127.0.0.1\"]",
    );
    let (root, _) = util::boot(&server.client(None)).await;
    util::create_user(&root, "known@acme.test", PASSWORD).await;
    util::create_user(&root, "after@acme.test", PASSWORD).await;
    // One login first, so the steady state (dummy hash, pools) is in the baseline.
    util::login(&server.client(None), "known@acme.test", PASSWORD).await;
    let pid = server.pid();
    let before = memory_kib(pid, "VmRSS");
    let base = server.base.clone();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let base = base.clone();
        // Known and unknown emails: both cost a hash.
        let email = if i % 2 == 0 {
            "known@acme.test".to_owned()
        } else {
            format!("nobody{i}@acme.test")
        };
        let from = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        set.spawn(async move { login_from(&base, &email, "not the password at all", &from).await });
    }
    let mut answers = Vec::new();
    while let Some(r) = set.join_next().await {
        answers.push(r.expect("login task"));
    }
    let peak = memory_kib(pid, "VmHWM");
    let bound = rss_bound_kib(before);
    let count = |code: u16| answers.iter().filter(|(st, _, _)| st.as_u16() == code).count();
    eprintln!(
        "200 parallel wrong logins: {} answered 401, {} 429, {} refused 503; \
         RSS before {} MiB, peak {} MiB, bound {} MiB",
        count(401),
        count(429),
        count(503),
        before / 1024,
        peak / 1024,
        bound / 1024
    );
    assert!(
        peak <= bound,
        "peak RSS {} MiB exceeds the bound {} MiB (RSS before {} MiB)",
        peak / 1024,
        bound / 1024,
        before / 1024
    );
    let mut answered = 0;
    for (st, retry, body) in &answers {
        match st.as_u16() {
            401 | 429 => answered += 1,
            503 => {
                assert_eq!(body["code"], "busy", "{body}");
                assert!(
                    retry
                        .as_deref()
                        .and_then(|r| r.parse::<u64>().ok())
                        .is_some_and(|s| s >= 1),
                    "503 busy carries Retry-After: {retry:?}"
                );
            }
            _ => panic!("parallel wrong login: {st} {body}"),
        }
    }
    assert!(answered > 0, "some logins were checked");
    // Once the burst is over, logins work again ("known" is locked by now).
    util::login(&server.client(None), "after@acme.test", PASSWORD).await;
}
