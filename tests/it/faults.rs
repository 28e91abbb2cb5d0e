//! Fault injection on the real binary (issue 22, docs/reliability.md): the
//! disk under SQLite fills up; the PostgreSQL server restarts under load.
//! Either way requests fail cleanly while the fault lasts (a 503 that names
//! the cause, never a crash, never a partial write), succeed again once it
//! is gone without restarting coffer, lose no acknowledged write, and the
//! audit chain verifies.
//!
//! Both tests bring their own storage whatever `COFFER_TEST_STORAGE` says: a
//! size-limited tmpfs for SQLite, a private PostgreSQL cluster (initdb in a
//! temp dir, its own port) so that restarting it disturbs no other test.
//! Both need root (mount, and running PostgreSQL as its `postgres` user),
//! as CI has.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::util::*;

/// Run a command; panic with its output if it fails.
fn run(what: &str, cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}; needs root, as CI has): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tmpfs of `size` mounted at `dir`, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).expect("mount point");
        run(
            "mount a size-limited tmpfs",
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "coffer-fault"])
                .arg(dir),
        );
        SmallDisk(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the file system holding `path` by writing `path` until it is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0x5a_u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    // The last partial chunk too, byte by byte at the end.
    while f.write_all(&[0]).is_ok() {}
    let _ = f.sync_all();
}

/// The SQL of the record the server keeps: every acknowledged write, read
/// back, has the value it was acknowledged with.
async fn assert_reads_back(root: &Http, env: &str, acked: &[(String, String)]) {
    for (key, value) in acked {
        let data = ok_data(
            &format!("read back {key}"),
            root.get(&format!("{env}/secrets/{key}?reveal=true")).await,
        );
        assert_eq!(data["value"].as_str(), Some(value.as_str()), "{key}: {data}");
    }
}

async fn assert_audit_verifies(root: &Http) {
    let report = ok_data("audit verify", root.get("/api/v1/audit/verify").await);
    assert_eq!(report["ok"], true, "the audit chain does not verify: {report}");
}

/// A refusal while a fault lasts: 503 with a code that names the cause.
fn assert_clean_refusal(what: &str, st: reqwest::StatusCode, body: &Value, codes: &[&str]) {
    assert_eq!(st.as_u16(), 503, "{what}: expected 503, got {st}: {body}");
    let code = body["code"].as_str().unwrap_or_default();
    assert!(
        codes.contains(&code),
        "{what}: code {code:?} not one of {codes:?}: {body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_refuses_cleanly_and_recovers_when_space_returns() {
    let dir = tempdir();
    let disk = SmallDisk::mount(&dir.path().join("disk"), "16m");
    let db = disk.0.join("coffer.db");
    // The config and the log stay on the big disk: only the store fills up.
    let server = Server::start(dir.path(), &format!("sqlite://{}", db.display()));
    let (root, _) = boot(&server.client(None)).await;
    org_tree(&root, "acme", &[("api", &["production"])]).await;
    write_secret(&root, ENV, "BEFORE", "written-before-the-disk-filled").await;
    let mut acked = vec![("BEFORE".to_owned(), "written-before-the-disk-filled".to_owned())];

    fill(&disk.0.join("filler"));
    // Writes of 16 KiB values until the store runs out of room: SQLite may
    // still have free pages and WAL frames to reuse for a while.
    let mut refused = 0;
    for i in 0..400 {
        let (key, value) = (format!("K{i}"), format!("{i:04}-{}", "v".repeat(16 * 1024)));
        let (st, body) = root
            .post(&format!("{ENV}/secrets/{key}"), json!({ "value": value }))
            .await;
        if st.is_success() {
            acked.push((key, value));
            continue;
        }
        assert_clean_refusal(
            &format!("write {key} on a full disk"),
            st,
            &body,
            &["storage_full", "audit_unavailable"],
        );
        assert!(
            body["message"].as_str().unwrap_or_default().contains("disk is full"),
            "the refusal names the full disk: {body}"
        );
        refused += 1;
        if refused == 5 {
            break;
        }
    }
    assert_eq!(refused, 5, "400 writes of 16 KiB never filled a 16 MiB disk");
    // The server is up and says so while the disk is full.
    let (st, health) = server.client(None).get("/v1/sys/health").await;
    assert_eq!(st, 200, "health on a full disk: {health}");

    std::fs::remove_file(disk.0.join("filler")).expect("free the space");
    // Space is back: the same server writes again, at once.
    write_secret(&root, ENV, "AFTER", "written-after-space-returned").await;
    acked.push(("AFTER".to_owned(), "written-after-space-returned".to_owned()));
    assert_reads_back(&root, ENV, &acked).await;
    assert_audit_verifies(&root).await;
    drop(server);

    // The file itself is sound.
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the store");
    let check: (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .expect("integrity_check");
    assert_eq!(check.0, "ok");
    drop(disk);
}

/// A PostgreSQL cluster of its own: initdb in a temp dir, started on a free
/// port, stopped and removed on drop.
struct PrivatePostgres {
    data: PathBuf,
    port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let data = std::env::temp_dir().join(format!("coffer-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&data).expect("pg data dir");
        run(
            "chown the pg data dir",
            Command::new("chown").args(["postgres:postgres"]).arg(&data),
        );
        run(
            "initdb",
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{PG_BIN}/initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(&data),
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let pg = PrivatePostgres { data, port };
        pg.ctl(&["start", "-w"]);
        pg
    }

    fn ctl(&self, args: &[&str]) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        run(
            &format!("pg_ctl {args:?}"),
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{PG_BIN}/pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-l"])
                .arg(self.data.join("server.log"))
                .args(["-o", &opts])
                .args(args),
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "immediate"])
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_load_fails_cleanly_then_serves_without_a_coffer_restart() {
    let pg = PrivatePostgres::start();
    let dir = tempdir();
    let server = Server::start(dir.path(), &pg.url());
    let (root, _) = boot(&server.client(None)).await;
    org_tree(&root, "acme", &[("api", &["production"])]).await;

    // Four writers, each on its own keys, and a reader, until told to stop.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let refusals: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for w in 0..4 {
        let (root, acked, refusals, stop) = (root.clone(), acked.clone(), refusals.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (key, value) = (format!("W{w}_{}", i % 8), format!("writer-{w}-write-{i}"));
                let (st, body) = root
                    .post(&format!("{ENV}/secrets/{key}"), json!({ "value": value }))
                    .await;
                if st.is_success() {
                    acked.lock().await.push((key, value));
                } else {
                    refusals.lock().await.push((st.as_u16(), body));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_restart = acked.lock().await.len();
    assert!(before_restart > 0, "no write succeeded before the restart");

    pg.ctl(&["restart", "-m", "fast", "-w"]);
    let restarted = Instant::now();
    // Load goes on; writes must succeed again within 15 s of the restart.
    let mut recovered = None;
    while restarted.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (st, _) = root
            .post(&format!("{ENV}/secrets/PROBE"), json!({ "value": "after-the-restart" }))
            .await;
        if st.is_success() {
            recovered = Some(restarted.elapsed());
            break;
        }
    }
    let recovered = recovered.unwrap_or_else(|| {
        panic!(
            "coffer did not serve writes again within 15 s of PostgreSQL's restart; log:\n{}",
            server.log_text()
        )
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        t.await.expect("writer task");
    }

    // Every refusal during the gap was a clean 503 naming the cause.
    for (st, body) in refusals.lock().await.iter() {
        assert_clean_refusal(
            "a write while PostgreSQL restarted",
            reqwest::StatusCode::from_u16(*st).expect("status"),
            body,
            &["storage_unavailable", "audit_unavailable"],
        );
    }
    let acked = acked.lock().await.clone();
    assert!(acked.len() > before_restart, "no write succeeded after the restart");
    // The last acknowledged value of each key is what it holds: a write
    // acknowledged is kept, and one refused left nothing half-written
    // behind (a refused write may have committed before its connection
    // dropped: then it is a newer version, and the history shows it whole).
    let mut last: std::collections::BTreeMap<String, String> = Default::default();
    for (k, v) in &acked {
        last.insert(k.clone(), v.clone());
    }
    for (key, value) in &last {
        let data = ok_data(
            &format!("read {key}"),
            root.get(&format!("{ENV}/secrets/{key}?reveal=true")).await,
        );
        let now = data["value"].as_str().unwrap_or_default().to_owned();
        let (w, i) = key[1..].split_once('_').expect("key shape");
        let writes_of = |v: &str| {
            v.strip_prefix(&format!("writer-{w}-write-"))
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| n % 8 == i.parse::<u64>().unwrap_or(99))
        };
        let (held, acked_n) = (writes_of(&now), writes_of(value));
        assert!(
            held.is_some() && held >= acked_n,
            "{key} holds {now:?}, the last acknowledged write was {value:?}"
        );
    }
    assert_audit_verifies(&root).await;
    eprintln!(
        "postgres restart: {} writes acknowledged, {} refused (503), writes served again {:?} after the restart",
        acked.len(),
        refusals.lock().await.len(),
        recovered
    );
}

mod clock;
mod kill;
