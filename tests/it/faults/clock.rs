//! The server's wall clock stepped forward and back while it runs (issue 22
//! §3, docs/reliability.md "Clock steps"): libfaketime is preloaded into the
//! real server process and reads its offset from a file on every call
//! (`FAKETIME_TIMESTAMP_FILE` + `FAKETIME_NO_CACHE=1`), so the test steps
//! the clock by rewriting that file. Only the wall clock moves
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`), as when NTP or an operator steps it.
//!
//! Needs the Debian package `faketime` (scripts/test installs it as root).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

const PASSWORD: &str = "correct-horse-battery-clock";

fn libfaketime() -> &'static str {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libfaketime is missing: `apt-get install faketime` (scripts/test installs it when run as root)")
}

/// The server's clock: an offset in seconds from the real time.
struct Clock(PathBuf);

impl Clock {
    /// Step the server's wall clock to real time + `secs`.
    fn set(&self, secs: i64) {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, format!("{secs:+}\n")).expect("write the faketime file");
        std::fs::rename(&tmp, &self.0).expect("replace the faketime file");
    }
}

/// A server on the backend under test whose wall clock the test steps.
async fn faked(dir: &Path, extra: &str) -> (Server, Clock, Http) {
    let clock = Clock(dir.join("faketime.rc"));
    clock.set(0);
    let url = fresh_storage_url(dir).await;
    let file = clock.0.to_str().expect("utf-8 path").to_owned();
    let server = Server::start_full(
        dir,
        &url,
        "tls_disable = true",
        extra,
        &[
            ("LD_PRELOAD", libfaketime()),
            ("FAKETIME_TIMESTAMP_FILE", &file),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let (root, _) = boot(&server.client(None)).await;
    org_tree(&root, "acme", &[("api", &["production"])]).await;
    (server, clock, root)
}

/// The server's idea of now (ms), from the `Date` it stamps on audit records.
async fn server_now_ms(root: &Http) -> i64 {
    write_secret(root, ENV, "CLOCK_PROBE", "probe-value").await;
    let r = ok_data("audit verify", root.get("/api/v1/audit/verify").await);
    let last = r["last_seq"].as_i64().expect("last_seq");
    let rec = ok_data(
        "last record",
        root.get(&format!("/api/v1/audit/records?after_seq={}&limit=1", last - 1))
            .await,
    );
    rec[0]["time_ms"].as_i64().expect("time_ms")
}

fn real_now_ms() -> i64 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_stepped_forward_expires_tokens_and_stepped_back_revives_none() {
    let dir = tempdir();
    let (server, clock, root) = faked(dir.path(), "").await;
    let anon = server.client(None);
    // The preload works: the server's clock follows the file.
    clock.set(86_400);
    let skew = server_now_ms(&root).await - real_now_ms();
    assert!(
        (86_300_000..86_500_000).contains(&skew),
        "the server's clock did not step a day ahead (off by {skew} ms): is libfaketime preloaded?"
    );
    clock.set(0);

    // A 2-minute token, a user's 1-hour login, a revoked token.
    let short = root
        .post("/v1/auth/token/create", json!({"ttl": "120s", "display_name": "short"}))
        .await;
    assert_eq!(short.0, 200, "{}", short.1);
    let short = short.1["auth"]["client_token"].as_str().expect("token").to_owned();
    remember_secret(&short);
    create_user(&root, "clock@acme.test", PASSWORD).await;
    let user = login(&anon, "clock@acme.test", PASSWORD).await["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let revoked = root
        .post(
            "/v1/auth/token/create",
            json!({"ttl": "24h", "display_name": "revoked"}),
        )
        .await;
    let revoked = revoked.1["auth"]["client_token"].as_str().expect("token").to_owned();
    remember_secret(&revoked);
    let (st, b) = anon
        .with_token(&revoked)
        .post("/v1/auth/token/revoke-self", json!({}))
        .await;
    assert!(st.is_success(), "revoke-self: {b}");

    let works = |token: String| {
        let http = anon.with_token(&token);
        async move { http.get("/api/v1/auth/whoami").await.0.as_u16() }
    };
    assert_eq!(works(short.clone()).await, 200);
    assert_eq!(works(user.clone()).await, 200);
    assert_eq!(works(revoked.clone()).await, 401);

    // Forward 2 hours: both past their expiry, refused; root (no expiry) works.
    clock.set(7_200);
    assert_eq!(works(short.clone()).await, 401, "the 2-minute token after +2 h");
    assert_eq!(works(user.clone()).await, 401, "the 1-hour login after +2 h");
    assert_eq!(works(root.token().to_owned()).await, 200);

    // Back to the real time, then an hour before it: nothing comes back.
    for back in [0, -3_600] {
        clock.set(back);
        // Past the 1-s token cache.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert_eq!(
            works(short.clone()).await,
            401,
            "the expired 2-minute token at {back:+} s"
        );
        assert_eq!(works(user.clone()).await, 401, "the expired login at {back:+} s");
        assert_eq!(works(revoked.clone()).await, 401, "the revoked token at {back:+} s");
    }
    // A token made while the clock is behind lives its TTL from that clock.
    let late = root
        .post("/v1/auth/token/create", json!({"ttl": "60s", "display_name": "late"}))
        .await;
    let late = late.1["auth"]["client_token"].as_str().expect("token").to_owned();
    remember_secret(&late);
    assert_eq!(works(late.clone()).await, 200);
    clock.set(0);
    assert_eq!(
        works(late).await,
        401,
        "made at -1 h with 60 s to live, refused at the real time"
    );
    super::assert_audit_verifies(&root).await;
}

/// Login with a TOTP code.
async fn totp_login(anon: &Http, code: &str) -> (u16, Value) {
    let (st, b) = anon
        .post(
            "/api/v1/auth/login",
            json!({"email": "totp@acme.test", "password": PASSWORD, "totp": code}),
        )
        .await;
    (st.as_u16(), b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_follows_the_stepped_clock_and_a_code_never_replays_after_a_step_back() {
    let dir = tempdir();
    let (server, clock, root) = faked(dir.path(), "").await;
    let anon = server.client(None);
    create_user(&root, "totp@acme.test", PASSWORD).await;
    let user = user_client(&anon, "totp@acme.test", PASSWORD).await;
    let e = ok_data(
        "totp enroll",
        user.post("/api/v1/auth/totp/enroll", json!({"password": PASSWORD}))
            .await,
    );
    let secret = base32_decode(e["secret"].as_str().expect("secret"));
    // Away from a step boundary so that "the current step" stays one step.
    let into = unix_now() % 30;
    if into > 20 {
        tokio::time::sleep(Duration::from_secs(31 - into)).await;
    }
    let step = unix_now() / 30;
    ok_data(
        "totp verify",
        user.post("/api/v1/auth/totp/verify", json!({"code": totp_at(&secret, step - 1)}))
            .await,
    );

    // At the real time the current code logs in, once.
    let now_code = totp_at(&secret, step);
    assert_eq!(totp_login(&anon, &now_code).await.0, 200);
    assert_eq!(totp_login(&anon, &now_code).await.0, 401, "a code works once");

    // An hour ahead: only the codes of the stepped clock's window work.
    clock.set(3_600);
    let ahead = step + 120;
    assert_eq!(
        totp_login(&anon, &totp_at(&secret, step + 1)).await.0,
        401,
        "a code of the real time, an hour behind the server's clock"
    );
    let ahead_code = totp_at(&secret, ahead);
    assert_eq!(totp_login(&anon, &ahead_code).await.0, 200, "the stepped clock's code");

    // Back to the real time: the codes of the steps spent ahead are out of
    // the window, and the real time's codes are older than the last step
    // spent: refused until the clock passes that step (or a recovery code).
    clock.set(0);
    let (st, b) = totp_login(&anon, &ahead_code).await;
    assert_eq!(
        st, 401,
        "the code spent an hour ahead, replayed after the step back: {b}"
    );
    assert_eq!(b["code"], "invalid_totp", "{b}");
    for s in [step, step + 1] {
        let (st, b) = totp_login(&anon, &totp_at(&secret, s)).await;
        assert_eq!(st, 401, "a code of step {s}, behind the last step spent: {b}");
    }
    // Forward again past the spent step: the next step's code works once.
    clock.set(3_630);
    let next = totp_at(&secret, ahead + 1);
    assert_eq!(totp_login(&anon, &next).await.0, 200);
    assert_eq!(totp_login(&anon, &next).await.0, 401);
    super::assert_audit_verifies(&root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_chain_verifies_across_a_step_back_and_prune_goes_by_sequence() {
    let dir = tempdir();
    let (server, clock, root) = faked(dir.path(), "[audit]\nretention_days = 1\n").await;
    // Records stamped two days ahead, then the clock steps back to the
    // real time and more records follow, stamped earlier than the first.
    clock.set(2 * 86_400);
    for i in 0..5 {
        write_secret(&root, ENV, &format!("AHEAD{i}"), &format!("written-two-days-ahead-{i}")).await;
    }
    clock.set(0);
    for i in 0..5 {
        write_secret(&root, ENV, &format!("NOW{i}"), &format!("written-at-the-real-time-{i}")).await;
    }
    let report = ok_data("audit verify", root.get("/api/v1/audit/verify").await);
    assert_eq!(report["ok"], true, "the chain verifies across the step back: {report}");
    // Listed by sequence, whatever the times say.
    let recs = ok_data("records", root.get("/api/v1/audit/records?limit=1000").await);
    let recs = recs.as_array().expect("records");
    let seqs: Vec<i64> = recs.iter().filter_map(|r| r["seq"].as_i64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "by sequence: {seqs:?}");
    let times: Vec<i64> = recs.iter().filter_map(|r| r["time_ms"].as_i64()).collect();
    assert!(
        times.windows(2).any(|w| w[1] < w[0] - 86_400_000),
        "the step back shows in the times: {times:?}"
    );

    // Two days later (clock at real + 2 d + 1 h): records stamped at the
    // real time are older than the 1-day retention, those stamped ahead are
    // not. Pruning goes by sequence: nothing at or after the first record
    // younger than the cutoff may go, and the export holds every record
    // pruned.
    clock.set(2 * 86_400 + 3_600);
    let last = report["last_seq"].as_i64().expect("last_seq");
    let (st, b) = root.post("/api/v1/audit/prune", json!({"through_seq": last})).await;
    assert_eq!(
        st, 400,
        "the last record is old enough but records before it are younger than the retention: {b}"
    );
    let export = dir.path().join("audit-export.jsonl");
    let before = time_rfc3339(real_now_ms() + 86_400_000 + 1_800_000);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["audit", "prune", "--before", &before, "--yes", "--export"])
        .arg(&export)
        .env("COFFER_ADDR", &server.base)
        .env("COFFER_TOKEN", root.token())
        // The CLI signs its requests with a timestamp the server checks
        // (60 s of skew): it runs on the same (stepped) clock, as on one host.
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME_TIMESTAMP_FILE", &clock.0)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .output()
        .expect("coffer audit prune");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: Vec<Value> = std::fs::read_to_string(&export)
        .expect("export")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let after = ok_data("audit verify", root.get("/api/v1/audit/verify").await);
    assert_eq!(after["ok"], true, "{after}");
    let pruned_through = after["pruned_through"].as_i64().unwrap_or(0);
    let exported_seqs: Vec<i64> = exported.iter().filter_map(|r| r["seq"].as_i64()).collect();
    assert_eq!(
        exported_seqs,
        (1..=pruned_through).collect::<Vec<_>>(),
        "every pruned record was exported first, in sequence: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let first_ahead = recs
        .iter()
        .find(|r| r["time_ms"].as_i64().unwrap_or(0) > real_now_ms() + 86_400_000)
        .and_then(|r| r["seq"].as_i64())
        .expect("a record stamped ahead");
    assert!(
        pruned_through < first_ahead,
        "pruned through {pruned_through}, past the first record stamped ahead ({first_ahead})"
    );
    drop(server);
}

fn time_rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}
