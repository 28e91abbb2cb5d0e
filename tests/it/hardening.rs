//! Process hardening at start: core dumps off, and key memory locked or a
//! refusal to start (unless `disable_mlock = true`, which warns loudly).
//!
//! Locking is made to fail by dropping CAP_IPC_LOCK from the bounding set
//! (`setpriv`) and setting RLIMIT_MEMLOCK to 0 (`prlimit`), both util-linux.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::util;

fn config(dir: &Path, storage: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("coffer.toml");
    std::fs::write(
        &path,
        format!("{extra}\n[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n[storage]\nurl = \"{storage}\"\n"),
    )
    .unwrap();
    path
}

/// `coffer server --config CONFIG` without CAP_IPC_LOCK and with a 0 memlock limit.
fn unlockable(config: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--bounding-set=-ipc_lock",
        "--inh-caps=-ipc_lock",
        "prlimit",
        "--memlock=0:0",
        "--",
    ])
    .arg(env!("CARGO_BIN_EXE_coffer"))
    .args(["server", "--config"])
    .arg(config)
    .env("COFFER_LOG_FORMAT", "text");
    c
}

/// Block until the server prints its listening line.
fn wait_listening(child: &mut Child) {
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    assert!(line.starts_with("coffer: listening on"), "{line}");
}

#[tokio::test]
async fn refuses_to_start_when_key_memory_cannot_be_locked() {
    let dir = util::tempdir();
    let cfg = config(dir.path(), &util::fresh_storage_url(dir.path()).await, "");
    let out = unlockable(&cfg).output().expect("run setpriv");
    assert!(!out.status.success(), "must not start without locked memory");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot lock key memory") && err.contains("disable_mlock"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}

#[tokio::test]
async fn disable_mlock_starts_with_a_loud_warning() {
    let dir = util::tempdir();
    let cfg = config(
        dir.path(),
        &util::fresh_storage_url(dir.path()).await,
        "disable_mlock = true",
    );
    let log = dir.path().join("stderr.log");
    let mut child = unlockable(&cfg)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_listening(&mut child);
    let _ = child.kill();
    let _ = child.wait();
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(
        err.contains("WARN") && err.contains("keys may be written to swap"),
        "{err}"
    );
}

#[tokio::test]
async fn core_dumps_are_off() {
    let dir = util::tempdir();
    let cfg = config(dir.path(), &util::fresh_storage_url(dir.path()).await, "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["server", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(&mut child);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], &["0", "0"], "{core}");
    let _ = child.kill();
    let _ = child.wait();
}
