//! Key material leaves the server's memory on seal.
//!
//! The real binary is initialized (5/3) and unsealed over HTTP, used (an org
//! whose KEK the root key wraps, a secret written and revealed), then sealed.
//! The test recomputes the unseal key from three shares and the root key from
//! the stored `encrypted_root`, and scans every readable mapping of the server
//! (`/proc/PID/maps` + `/proc/PID/mem`, the test runs as root) for both, whole
//! and by 16-byte halves (see [`scan`]).
//!
//! * While unsealed the key pages are locked (`VmLck` > 0) and the root key
//!   IS found: a positive control, so a broken scanner cannot pass vacuously.
//!   The unseal key, which exists only during a ceremony, is not.
//! * Whenever sealed, neither key may be found anywhere (heap, thread stacks,
//!   anonymous maps). The server process ran init too, so residues of init,
//!   of the ceremonies and of the crypto done while unsealed all count.
//!
//! Checked right after init (sealed), after the first unseal and use, after a
//! second unseal with another quorum whose reveal unwraps the KEK again under
//! the root key (the KEK cache died with the first keyring), and after a
//! third ceremony sealed at once (nothing in between to overwrite residues).
//! A failure names the mapping (path, `[heap]`, thread stack, `[anon]`) and
//! offset of every copy found.

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::FileExt;

use serde_json::json;
use sqlx::{Connection, Row};
use zeroize::Zeroizing;

use coffer::crypto::aead;
use coffer::keys::ROOT_AAD;
use coffer::secure_mem::KeyBytes;

use crate::util::{self, ENV, Http, Server};

/// The unseal key, from three shares of the init answer.
fn unseal_key(shares: &[&str]) -> Zeroizing<[u8; 32]> {
    let parsed: Vec<unseal::Share> = shares
        .iter()
        .map(|s| unseal::Share::parse(s).expect("share parses"))
        .collect();
    unseal::combine(&parsed).expect("shares combine")
}

/// The root key: `keyring.encrypted_root` (row 1) opened with the unseal key.
async fn root_key(storage_url: &str, unseal_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(storage_url).await.expect("open storage");
    let row = sqlx::query("SELECT encrypted_root FROM keyring WHERE id = 1")
        .fetch_one(&mut conn)
        .await
        .expect("keyring row");
    let blob: Vec<u8> = row.try_get("encrypted_root").expect("encrypted_root");
    conn.close().await.expect("close storage");
    let wrapping = KeyBytes::from_slice(unseal_key).expect("locked key page");
    let root = aead::unwrap_key(&wrapping, ROOT_AAD, &blob).expect("unseal key opens the root key");
    Zeroizing::new(*root.expose())
}

/// `VmLck` of /proc/PID/status, in kB.
fn vm_lck_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmLck:"))
        .unwrap_or_else(|| panic!("no VmLck in /proc/{pid}/status"));
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmLck value")
}

/// Where a key was found: mapping name (path, `[heap]`, `[stack]`, a thread
/// stack, or `[anon]`), its address range and permissions, and the offset in it.
struct Hit {
    key: String,
    mapping: String,
    start: u64,
    end: u64,
    perms: String,
    offset: u64,
}

/// Stack pointers of the threads of `pid` that sit in a system call (idle
/// tokio workers and blocking threads do), with the thread names, so a hit
/// in an anonymous mapping can be told to be a thread stack. Diagnostic only.
fn thread_stacks(pid: u32) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let syscall = std::fs::read_to_string(dir.join("syscall")).unwrap_or_default();
        // "nr arg1 … arg6 sp pc", or "running"
        let fields: Vec<&str> = syscall.split_whitespace().collect();
        let sp = fields
            .len()
            .checked_sub(2)
            .and_then(|i| u64::from_str_radix(fields[i].trim_start_matches("0x"), 16).ok());
        if let (Some(sp), true) = (sp, fields.len() == 9) {
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let tid = task.file_name().to_string_lossy().into_owned();
            out.push((sp, format!("stack of thread {tid} {}", comm.trim())));
        }
    }
    out
}

/// Every occurrence of each key in the readable memory of `pid`: the whole
/// 32 bytes, and also each 16-byte half, because glibc reuses the first 16
/// bytes of a freed small chunk for its free-list pointers, so a key left in
/// a freed heap buffer survives only as its second half. Regions that cannot
/// be read (`[vvar]`, `[vsyscall]`…) are skipped; the number of bytes
/// scanned is returned so the caller can check it is not 0.
fn scan(pid: u32, keys: &[(&str, &[u8; 32])]) -> (Vec<Hit>, u64) {
    const CHUNK: usize = 1 << 20;
    let mut needles: Vec<(String, &[u8])> = Vec::new();
    for (name, key) in keys {
        needles.push((format!("{name} key"), &key[..]));
        needles.push((format!("{name} key[0..16]"), &key[..16]));
        needles.push((format!("{name} key[16..32]"), &key[16..]));
    }
    // One pass per chunk: only positions whose byte starts some needle are compared.
    let mut starts = [false; 256];
    for (_, needle) in &needles {
        starts[usize::from(needle[0])] = true;
    }
    let stacks = thread_stacks(pid);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let mem = File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem (run as root)");
    let mut hits = Vec::new();
    let mut scanned = 0u64;
    let mut buf = vec![0u8; CHUNK + 31];
    for line in maps.lines() {
        // start-end perms offset dev inode [padding] [path]
        let fields: Vec<&str> = line.splitn(6, ' ').collect();
        let (Some(range), Some(perms)) = (fields.first(), fields.get(1)) else {
            continue;
        };
        if !perms.starts_with('r') {
            continue;
        }
        let (start, end) = range.split_once('-').expect("range");
        let start = u64::from_str_radix(start, 16).expect("start");
        let end = u64::from_str_radix(end, 16).expect("end");
        let mapping = match fields.get(5).map(|p| p.trim()) {
            Some(path) if !path.is_empty() => path.to_owned(),
            _ => match stacks.iter().find(|(sp, _)| (start..end).contains(sp)) {
                Some((_, stack)) => format!("[anon: {stack}]"),
                None => "[anon]".to_owned(),
            },
        };
        // Chunks overlap by 31 bytes so no key straddles two; a hit is
        // recorded by the chunk it starts in.
        let mut at = start;
        while at < end {
            let len = usize::try_from(end - at).unwrap_or(usize::MAX).min(CHUNK + 31);
            let last = at + len as u64 >= end;
            let chunk = &mut buf[..len];
            if mem.read_exact_at(chunk, at).is_err() {
                break; // unreadable region (e.g. [vvar]): skip the rest of it
            }
            scanned += len as u64;
            let chunk = &*chunk;
            for (pos, &byte) in chunk.iter().enumerate() {
                if !starts[usize::from(byte)] || (pos >= CHUNK && !last) {
                    continue;
                }
                for (name, needle) in &needles {
                    if chunk[pos..].starts_with(needle) {
                        hits.push(Hit {
                            key: name.clone(),
                            mapping: mapping.clone(),
                            start,
                            end,
                            perms: (*perms).to_owned(),
                            offset: at - start + pos as u64,
                        });
                    }
                }
            }
            if last {
                break;
            }
            at += CHUNK as u64;
        }
    }
    hits.sort_by(|a, b| (&a.key, a.start, a.offset).cmp(&(&b.key, b.start, b.offset)));
    (hits, scanned)
}

fn describe(hits: &[Hit]) -> String {
    let mut out = String::new();
    for h in hits {
        let _ = writeln!(
            out,
            "  {} in {} {:x}-{:x} {} at offset {:#x}",
            h.key, h.mapping, h.start, h.end, h.perms, h.offset
        );
    }
    out
}

/// Asserts, while unsealed, that key pages are locked, that the root key is
/// visible to the scanner (in its locked page) and the unseal key is not.
fn check_unsealed(pid: u32, root: &[u8; 32], unseal: &[u8; 32]) {
    let locked = vm_lck_kb(pid);
    assert!(locked > 0, "unsealed server has no locked memory (VmLck {locked} kB)");
    let (hits, scanned) = scan(pid, &[("root", root), ("unseal", unseal)]);
    assert!(scanned > 0, "nothing of the server's memory could be read");
    // Shown only if the test fails: where the keys are while unsealed.
    eprintln!("while unsealed ({scanned} bytes scanned):\n{}", describe(&hits));
    assert!(
        hits.iter().any(|h| h.key == "root key"),
        "positive control: the root key must be found while unsealed ({scanned} bytes scanned)"
    );
    assert!(
        !hits.iter().any(|h| h.key.starts_with("unseal")),
        "the unseal key must be gone once the ceremony is over:\n{}",
        describe(&hits)
    );
}

/// Seals over HTTP and asserts that neither key is left anywhere.
async fn seal_and_check(pid: u32, http: &Http, root: &[u8; 32], unseal: &[u8; 32], when: &str) {
    let (st, body) = http.put("/v1/sys/seal", json!({})).await;
    assert_eq!(st, 204, "seal: {body}");
    check_sealed(pid, root, unseal, when);
}

/// Asserts that neither key is anywhere in the (sealed) server's memory.
fn check_sealed(pid: u32, root: &[u8; 32], unseal: &[u8; 32], when: &str) {
    let (hits, scanned) = scan(pid, &[("root", root), ("unseal", unseal)]);
    assert!(scanned > 0, "nothing of the server's memory could be read");
    assert!(
        hits.is_empty(),
        "{when}: key material left in the sealed server's memory ({scanned} bytes scanned):\n{}",
        describe(&hits)
    );
}

#[tokio::test]
async fn keys_leave_memory_on_seal() {
    let dir = util::tempdir();
    let storage_url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start(dir.path(), &storage_url);
    let pid = server.pid();
    let anon = server.client(None);
    let (hex, b64, root_token) = util::init(&anon, 5, 3).await;
    let http = anon.with_token(&root_token);

    let unseal = unseal_key(&[&hex[0], &b64[1], &hex[2]]);
    let root = root_key(&storage_url, &unseal).await;
    assert_ne!(*root, *unseal);
    // Init leaves the server sealed: whatever init generated and used (both
    // keys, the Shamir polynomials, key schedules) must be gone already.
    check_sealed(pid, &root, &unseal, "right after init");

    // First ceremony, then real use: an org (a KEK wrapped by the root key),
    // a secret written (a DEK wrapped by the KEK) and revealed.
    let status = util::unseal(&anon, &[&hex[0], &b64[2], &hex[4]]).await;
    assert_eq!(status["sealed"], false, "{status}");
    util::tenant(&http).await;
    let (st, body) = http
        .post(
            &format!("{ENV}/secrets/DB_PASSWORD"),
            json!({"value": "correct horse battery staple", "type": "password"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = http.get(&format!("{ENV}/secrets/DB_PASSWORD?reveal=true")).await;
    assert_eq!(
        (st.as_u16(), body["data"]["value"].as_str()),
        (200, Some("correct horse battery staple"))
    );
    check_unsealed(pid, &root, &unseal);
    seal_and_check(pid, &http, &root, &unseal, "after init, first unseal and use").await;

    // Second ceremony with another quorum: the reveal unwraps the KEK again.
    let status = util::unseal(&anon, &[&b64[1], &hex[3], &b64[4]]).await;
    assert_eq!(status["sealed"], false, "{status}");
    let (st, body) = http.get(&format!("{ENV}/secrets/DB_PASSWORD?reveal=true")).await;
    assert_eq!(
        (st.as_u16(), body["data"]["value"].as_str()),
        (200, Some("correct horse battery staple"))
    );
    check_unsealed(pid, &root, &unseal);
    seal_and_check(pid, &http, &root, &unseal, "after the second unseal").await;

    // A ceremony straight followed by seal: nothing runs in between that
    // could overwrite what the ceremony left on a stack or in freed memory.
    let status = util::unseal(&anon, &[&hex[1], &b64[3], &hex[0]]).await;
    assert_eq!(status["sealed"], false, "{status}");
    check_unsealed(pid, &root, &unseal);
    seal_and_check(pid, &http, &root, &unseal, "right after a ceremony").await;
}
